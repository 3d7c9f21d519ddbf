package cluster

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/store"
)

// Likes a client could never store: the API's rule, broken each way.
var badLikes = []store.Like{
	{Post: "p", User: ""},
	{Post: "", User: "u"},
	{Post: "a\x00b", User: "c"}, // keyed post\x00user, it would be ("a", "b\x00c")
	{Post: "p", User: "line\nbreak"},
	{Post: "p", User: strings.Repeat("x", 300)},
	{Post: "p", User: "\xff"},
}

func TestPeerGuardMergesOnlyValidLikes(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	logs := &logBuffer{}
	g := newPeerGuard(st, 256, nil, testLogger(t, logs))
	good := []store.Like{{Post: "p", User: "alice"}, {Post: "p", User: "bob"}}
	added := g.Merge(append([]store.Like{good[0]}, append(append([]store.Like{}, badLikes...), good[1])...))
	assert.ElementsMatch(t, good, added)
	assert.Equal(t, 2, st.Stats().Likes, "nothing else stored")
	assert.EqualValues(t, len(badLikes), g.refused.Load())
	for range 100 {
		g.Merge(badLikes)
	}
	assert.EqualValues(t, 101*len(badLikes), g.refused.Load())
	assert.Equal(t, 1, logs.count("likes from a peer refused"), "logged at most once per %v", guardLogEvery)
	assert.Equal(t, []store.Like{{Post: "q", User: "u"}}, g.Merge([]store.Like{{Post: "q", User: "u"}}), "valid likes pass unchanged")
}

// Finding 5 of issue #20: a frame on the fast path with likes no client
// could send stores only its valid ones.
func TestBadLikesInAFrameAreRefused(t *testing.T) {
	n := startNode(t, "n1", nil, nil)
	waitReady(t, n)
	fb := newFrameBuilder(1<<20, msgLikes, "forger", 99)
	likes := append([]store.Like{{Post: "p", User: "ok1"}}, append(append([]store.Like{}, badLikes...), store.Like{Post: "p", User: "ok2"})...)
	for i, l := range likes {
		fb.add(uint64(i+1), l)
	}
	frame, _ := fb.take()
	require.True(t, n.inbox.Offer(received{msg: frame}))
	require.Eventually(t, func() bool { return n.PeerLikesRefused() == uint64(len(badLikes)) }, waitLong, 10*time.Millisecond)
	require.Eventually(t, func() bool { return n.store.Has("p", "ok2") }, waitLong, 10*time.Millisecond)
	assert.True(t, n.store.Has("p", "ok1"))
	assert.Equal(t, 2, n.store.Stats().Likes)
}

// Anti-entropy brings a peer's likes through the same guard: a peer whose
// store holds bad likes (an older version's, or a bug's) gives only its
// valid ones.
func TestBadLikesByAntiEntropyAreRefused(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	waitReady(t, a)
	// a's store takes anything: the store does not check ids (the API and
	// the guard do).
	for _, l := range badLikes {
		a.store.Like(l.Post, l.User)
	}
	a.store.Like("p", "good")
	b := startNode(t, "b", []string{a.Addr()}, nil)
	waitReady(t, b)
	require.Eventually(t, func() bool { return b.store.Has("p", "good") }, waitLong, 10*time.Millisecond)
	require.Eventually(t, func() bool { return b.PeerLikesRefused() >= uint64(len(badLikes)) }, waitLong, 10*time.Millisecond)
	assert.Equal(t, 1, b.store.Stats().Likes, "only the valid like")
}

// A peer that refuses a like does not acknowledge it: a node whose id bound
// is larger than its peers' (a rolling change of --max-id-bytes) never
// counts them for a like they refused (review of #20).
func TestAPeerDoesNotAcknowledgeALikeItRefused(t *testing.T) {
	a := startNode(t, "a", nil, func(c *Config) { c.MaxIDBytes = 1024; c.Writes.Timeout = 300 * time.Millisecond })
	b := startNode(t, "b", []string{a.Addr()}, func(c *Config) { c.Writes.Timeout = 300 * time.Millisecond })
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 }, waitLong, 10*time.Millisecond)
	require.Eventually(t, func() bool { return write(a, acks.All, "p", "fits").Met() }, waitLong, 10*time.Millisecond)

	long := strings.Repeat("u", 300) // valid on a, over b's bound
	res := write(a, acks.All, "p", long)
	assert.False(t, res.Met(), "b refused it: %+v", res)
	require.Eventually(t, func() bool { return b.PeerLikesRefused() > 0 }, waitLong, 10*time.Millisecond)
	assert.False(t, b.store.Has("p", long))
	assert.False(t, write(a, acks.All, "p", long).Met(), "a repeat is not confirmed either")
}

// fullMemory is a memory budget a test fills and empties.
type fullMemory struct{ full atomic.Bool }

func (m *fullMemory) Full() bool { return m.full.Load() }

// A node whose memory is past its hard mark applies no like from its
// peers and acknowledges none: the writer's level is not met (202), and
// nothing is lost, as the writer keeps the like and anti-entropy brings
// it once memory falls (review of #20: peers' likes were applied past
// every mark).
func TestPeersLikesPastTheHardMarkAreDeferred(t *testing.T) {
	mem := &fullMemory{}
	quick := func(c *Config) { c.Writes.Timeout = 300 * time.Millisecond }
	a := startNode(t, "a", nil, quick)
	b := startNode(t, "b", []string{a.Addr()}, func(c *Config) { quick(c); c.Memory = mem })
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 }, waitLong, 10*time.Millisecond)
	require.Eventually(t, func() bool { return write(a, acks.All, "p", "before").Met() }, waitLong, 10*time.Millisecond)
	require.True(t, b.store.Has("p", "before"))

	mem.full.Store(true)
	res := write(a, acks.All, "p", "past")
	assert.False(t, res.Met(), "b holds it not, so it acknowledged it not: %+v", res)
	assert.Equal(t, 1, res.Replicas, "a alone holds it")
	require.Eventually(t, func() bool { return b.PeerLikesDeferred() > 0 }, waitLong, 10*time.Millisecond)
	assert.False(t, b.store.Has("p", "past"), "not applied, by the fast path nor by anti-entropy")
	assert.Equal(t, 1, b.store.Stats().Likes)

	mem.full.Store(false)
	require.Eventually(t, func() bool { return b.store.Has("p", "past") }, waitLong, 10*time.Millisecond, "anti-entropy brings it once memory falls")
	require.Eventually(t, func() bool { return write(a, acks.All, "p", "after").Met() }, waitLong, 10*time.Millisecond, "b acknowledges again")
}
