package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/store"
)

// processes names members as the held table knows them: each its own process.
func processes(names ...string) []memberID {
	out := make([]memberID, len(names))
	for i, n := range names {
		out[i] = memberID{name: n, started: 1, origin: uint64(i + 1)}
	}
	return out
}

func TestHeldLikes(t *testing.T) {
	h := newHeldLikes()
	a, b := store.Like{Post: "p", User: "a"}, store.Like{Post: "p", User: "b"}
	h.setMembers(processes("x", "y"))
	assert.Zero(t, h.heldBy([]store.Like{a}, []bool{false}), "nothing known")
	h.record([]store.Like{a, b}, 3)
	h.record([]store.Like{b}, 2)
	assert.Equal(t, 3, h.heldBy([]store.Like{a, b}, []bool{false, false}), "the most each was seen held by")
	assert.Zero(t, h.heldBy([]store.Like{a, b}, []bool{false, true}), "a like new here was never acknowledged")
	assert.Zero(t, h.heldBy([]store.Like{a, {Post: "q", User: "a"}}, []bool{false, false}), "every like must be known")
	h.record([]store.Like{{Post: "q", User: "c"}}, 1)
	assert.Zero(t, h.heldBy([]store.Like{{Post: "q", User: "c"}}, []bool{false}), "held by this node alone: nothing to save")

	h.setMembers(processes("x", "y", "z"))
	assert.Equal(t, 3, h.heldBy([]store.Like{a}, []bool{false}), "a member joining forgets nothing")
	h.setMembers(processes("x", "z"))
	assert.Zero(t, h.heldBy([]store.Like{a}, []bool{false}), "a member leaving forgets everything")

	for i := range 3 * maxHeldLikes {
		h.record([]store.Like{{Post: "p", User: fmt.Sprint(i)}}, 2)
	}
	assert.LessOrEqual(t, len(h.m), maxHeldLikes, "bounded")
}

// A member restarted under its name is another process, which holds only
// what it recovered: the likes the old one acknowledged are forgotten, as
// when a member leaves, though memberlist may never have shown it gone
// (review of #20: the table was keyed by name alone).
func TestHeldLikesForgetARestartedMember(t *testing.T) {
	a := store.Like{Post: "p", User: "a"}
	for name, restarted := range map[string]memberID{
		"new start time": {name: "y", started: 2, origin: 2},
		"new origin":     {name: "y", started: 1, origin: 3},
	} {
		h := newHeldLikes()
		h.setMembers(processes("x", "y"))
		h.record([]store.Like{a}, 3)
		h.setMembers(processes("x", "y"))
		require.Equal(t, 3, h.heldBy([]store.Like{a}, []bool{false}), "%s: the same members", name)
		h.setMembers([]memberID{processes("x")[0], restarted})
		assert.Zero(t, h.heldBy([]store.Like{a}, []bool{false}), "%s: y restarted", name)
	}
}

// Likes are keyed by a hash seeded per table: ids chosen to collide in one
// process do not collide in another, so a client cannot choose a like
// that is answered with another's replicas (review of #20: the hash was
// unseeded, the same in every process).
func TestHeldLikesKeysAreSeeded(t *testing.T) {
	h1, h2 := newHeldLikes(), newHeldLikes()
	differ := 0
	for i := range 64 {
		l := store.Like{Post: "p", User: fmt.Sprint(i)}
		require.Equal(t, h1.key(l), h1.key(l), "a table keys a like the same every time")
		if h1.key(l) != h2.key(l) {
			differ++
		}
	}
	assert.Greater(t, differ, 60, "two tables key likes apart")
}

func (n *Node) logSeq() uint64 {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	return n.seq
}

// Finding 3 of issue #20: a like this node holds and has seen acknowledged
// at the level asked is not logged and sent to every peer again; once a
// member that may have held it is gone, it is.
func TestRepeatsAreNotSentAgain(t *testing.T) {
	a, b, c := threeNodes(t, func(c *Config) { c.Writes.Timeout = 5 * time.Second })
	require.Equal(t, acks.Result{Replicas: 3, Want: 3}, write(a, acks.All, "p", "u"))
	require.True(t, b.store.Has("p", "u") && c.store.Has("p", "u"))
	seq := a.logSeq()
	for range 10 {
		assert.Equal(t, acks.Result{Replicas: 3, Want: 3}, write(a, acks.All, "p", "u"))
		assert.Equal(t, acks.Result{Replicas: 3, Want: 2}, write(a, acks.Count(2), "p", "u"))
	}
	assert.Equal(t, seq, a.logSeq(), "the repeats were not logged for the peers")

	crash(t, c)
	require.Eventually(t, func() bool {
		a.writes.mu.Lock()
		defer a.writes.mu.Unlock()
		for m := range a.writes.held.members {
			if m.name == "c" {
				return false
			}
		}
		return true
	}, waitLong, 10*time.Millisecond, "a sees c gone")
	res := write(a, acks.Count(2), "p", "u")
	assert.True(t, res.Met(), "%+v", res)
	assert.Greater(t, a.logSeq(), seq, "with c gone, a repeat is sent again and acknowledged anew")
}
