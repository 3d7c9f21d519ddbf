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

func TestHeldLikes(t *testing.T) {
	var h heldLikes
	a, b := store.Like{Post: "p", User: "a"}, store.Like{Post: "p", User: "b"}
	h.setMembers([]string{"x", "y"})
	assert.Zero(t, h.heldBy([]store.Like{a}, []bool{false}), "nothing known")
	h.record([]store.Like{a, b}, 3)
	h.record([]store.Like{b}, 2)
	assert.Equal(t, 3, h.heldBy([]store.Like{a, b}, []bool{false, false}), "the most each was seen held by")
	assert.Zero(t, h.heldBy([]store.Like{a, b}, []bool{false, true}), "a like new here was never acknowledged")
	assert.Zero(t, h.heldBy([]store.Like{a, {Post: "q", User: "a"}}, []bool{false, false}), "every like must be known")
	h.record([]store.Like{{Post: "q", User: "c"}}, 1)
	assert.Zero(t, h.heldBy([]store.Like{{Post: "q", User: "c"}}, []bool{false}), "held by this node alone: nothing to save")

	h.setMembers([]string{"x", "y", "z"})
	assert.Equal(t, 3, h.heldBy([]store.Like{a}, []bool{false}), "a member joining forgets nothing")
	h.setMembers([]string{"x", "z"})
	assert.Zero(t, h.heldBy([]store.Like{a}, []bool{false}), "a member leaving forgets everything")

	for i := range 3 * maxHeldLikes {
		h.record([]store.Like{{Post: "p", User: fmt.Sprint(i)}}, 2)
	}
	assert.LessOrEqual(t, len(h.m), maxHeldLikes, "bounded")
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
		return !a.writes.held.members["c"]
	}, waitLong, 10*time.Millisecond, "a sees c gone")
	res := write(a, acks.Count(2), "p", "u")
	assert.True(t, res.Met(), "%+v", res)
	assert.Greater(t, a.logSeq(), seq, "with c gone, a repeat is sent again and acknowledged anew")
}
