package antientropy

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

var t0 = time.Unix(1_700_000_000, 0)

func newSyncer(t *testing.T, name string, hasSeeds bool) (*Syncer, *store.Store) {
	t.Helper()
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	c := DefaultConfig()
	c.Name, c.HasSeeds = name, hasSeeds
	sy, err := New(c, st)
	require.NoError(t, err)
	return sy, st
}

func sends(actions []Action) []Send {
	var out []Send
	for _, a := range actions {
		if s, ok := a.(Send); ok {
			out = append(out, s)
		}
	}
	return out
}

// pump delivers sends between syncers until none are left.
func pump(t *testing.T, nodes map[string]*Syncer, actions []Action) []Action {
	t.Helper()
	var all []Action
	queue := actions
	for i := 0; len(queue) > 0; i++ {
		require.Less(t, i, 100000, "conversation does not end")
		a := queue[0]
		queue = queue[1:]
		all = append(all, a)
		if s, ok := a.(Send); ok {
			m, err := Decode(s.Msg.Append(nil))
			require.NoError(t, err)
			queue = append(queue, nodes[s.To].Step(t0, m)...)
		}
	}
	return all
}

func TestANodeWithNoOneToJoinIsSyncedAtOnce(t *testing.T) {
	sy, _ := newSyncer(t, "a", false)
	got := sy.Tick(t0)
	assert.Equal(t, []Action{BecameSynced{Reason: "alone"}}, got)
	assert.True(t, sy.Synced())
}

func TestANodeWhoseJoinsReachNobodyIsSyncedOnlyAfterJoinAttempts(t *testing.T) {
	sy, _ := newSyncer(t, "a", true)
	for i := range DefaultConfig().JoinAttempts {
		sy.Tick(t0)
		require.False(t, sy.Synced(), "after %d failed joins", i)
		sy.JoinAttempted(t0, false)
	}
	sy.Tick(t0)
	assert.True(t, sy.Synced())

	// One that has seen a member once is never alone again: its cluster is
	// out there.
	b, _ := newSyncer(t, "b", true)
	b.SetPeers(t0, []string{"a"})
	b.SetPeers(t0, nil)
	for range 2 * DefaultConfig().JoinAttempts {
		b.JoinAttempted(t0, false)
	}
	b.Tick(t0)
	assert.False(t, b.Synced())
}

func TestAJoiningNodeIsSyncedOnlyAfterAFullSyncFromASyncedPeer(t *testing.T) {
	a, sa := newSyncer(t, "a", false)
	a.Tick(t0)
	for i := range 3000 {
		sa.Like(fmt.Sprintf("p%d", i%50), fmt.Sprintf("u%d", i))
	}
	b, sb := newSyncer(t, "b", true)
	nodes := map[string]*Syncer{"a": a, "b": b}
	a.SetPeers(t0, []string{"b"})
	b.SetPeers(t0, []string{"a"})

	got := pump(t, nodes, b.Tick(t0))
	assert.Contains(t, got, BecameSynced{Reason: "full sync", From: "a"})
	assert.True(t, b.Synced())
	assert.Equal(t, sa.BucketsSummary(0, store.Buckets), sb.BucketsSummary(0, store.Buckets))
}

func TestAFullPullFromAnUnsyncedPeerDoesNotMakeANodeSynced(t *testing.T) {
	b, _ := newSyncer(t, "b", true)
	c, sc := newSyncer(t, "c", true) // joined, not synced yet
	sc.Like("p", "u")
	nodes := map[string]*Syncer{"b": b, "c": c}
	b.SetPeers(t0, []string{"c"})
	c.SetPeers(t0, []string{"b"})
	got := pump(t, nodes, b.Tick(t0))
	assert.False(t, b.Synced())
	var ended []SessionEnded
	for _, x := range got {
		if e, ok := x.(SessionEnded); ok {
			ended = append(ended, e)
		}
	}
	require.Len(t, ended, 1)
	assert.Equal(t, ModeFull, ended[0].Mode)
	assert.Equal(t, uint64(1), ended[0].Pulled, "it repaired all the same")
}

func TestAClusterThatRestartedEmptyIsFoundedByItsLowestName(t *testing.T) {
	nodes := map[string]*Syncer{}
	for _, n := range []string{"c", "a", "b"} {
		nodes[n], _ = newSyncer(t, n, true)
	}
	for n, sy := range nodes {
		var peers []string
		for p := range nodes {
			if p != n {
				peers = append(peers, p)
			}
		}
		sy.SetPeers(t0, peers)
	}
	now := t0
	for range 100 {
		now = now.Add(100 * time.Millisecond)
		for _, n := range []string{"a", "b", "c"} {
			pump(t, nodes, nodes[n].Tick(now))
		}
	}
	for n, sy := range nodes {
		assert.True(t, sy.Synced(), n)
	}
}

func TestHandOffEndsOnlyWhenASyncedPeerLearntNothingNew(t *testing.T) {
	a, sa := newSyncer(t, "a", false)
	a.Tick(t0)
	b, sb := newSyncer(t, "b", true)
	b.SetPeers(t0, []string{"a"})
	a.SetPeers(t0, []string{"b"})
	nodes := map[string]*Syncer{"a": a, "b": b}
	pump(t, nodes, b.Tick(t0))
	pump(t, nodes, b.Tick(t0.Add(time.Second)))
	require.True(t, b.Synced())

	for i := range 500 { // likes only b holds
		sb.Like("solo", fmt.Sprintf("u%d", i))
	}
	got := pump(t, nodes, b.Leave(t0.Add(2*time.Second)))
	require.False(t, b.HandedOff(), "the first session pushed likes: it must be confirmed by another")
	var ended []SessionEnded
	for _, x := range got {
		if e, ok := x.(SessionEnded); ok {
			ended = append(ended, e)
		}
	}
	require.Len(t, ended, 1)
	assert.Equal(t, uint64(500), ended[0].Pushed)
	assert.Equal(t, ModeHandoff, ended[0].Mode)

	got = pump(t, nodes, b.Tick(t0.Add(2*time.Second)))
	assert.Contains(t, got, HandedOff{Peer: "a"})
	assert.True(t, b.HandedOff())
	assert.Equal(t, 500, sa.Count("solo"))

	// A leaving node is no one's hand-off target.
	a.SetPeers(t0, []string{"b"})
	pump(t, nodes, a.Leave(t0.Add(3*time.Second)))
	assert.False(t, a.HandedOff())
}

func TestASilentPeerEndsTheSessionAfterTheTimeout(t *testing.T) {
	a, _ := newSyncer(t, "a", false)
	a.Tick(t0)
	a.SetPeers(t0, []string{"b"})
	out := a.Tick(t0.Add(time.Second))
	require.Len(t, sends(out), 1)
	assert.Empty(t, a.Tick(t0.Add(time.Second+DefaultConfig().SessionTimeout-time.Millisecond)))
	got := a.Tick(t0.Add(time.Second + DefaultConfig().SessionTimeout + time.Millisecond))
	require.NotEmpty(t, got)
	ended, ok := got[0].(SessionEnded)
	require.True(t, ok)
	assert.ErrorIs(t, ended.Err, ErrTimeout)
	assert.Equal(t, uint64(1), a.Stats().SessionsFailed)
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	with := func(f func(*Config)) Config { c := DefaultConfig(); c.Name = "a"; f(&c); return c }
	for _, tt := range []struct {
		name string
		cfg  Config
		want string // "" for valid; else the flag and bound named
	}{
		{"interval at lower bound", with(func(c *Config) { c.SyncInterval = MinSyncInterval }), ""},
		{"interval at upper bound", with(func(c *Config) { c.SyncInterval = MaxSyncInterval }), ""},
		{"interval below", with(func(c *Config) { c.SyncInterval = MinSyncInterval - 1 }), "--sync-interval must be between 10ms and 1m0s, got 9.999999ms"},
		{"interval above", with(func(c *Config) { c.SyncInterval = time.Hour }), "--sync-interval must be between 10ms and 1m0s, got 1h0m0s"},
		{"timeout at lower bound", with(func(c *Config) { c.SessionTimeout = MinSessionTimeout }), ""},
		{"timeout at upper bound", with(func(c *Config) { c.SessionTimeout = MaxSessionTimeout }), ""},
		{"timeout below", with(func(c *Config) { c.SessionTimeout = MinSessionTimeout - 1 }), "--sync-timeout must be between 100ms and 10m0s, got 99.999999ms"},
		{"timeout above", with(func(c *Config) { c.SessionTimeout = MaxSessionTimeout + 1 }), "--sync-timeout must be between 100ms and 10m0s, got 10m0.000000001s"},
		{"chunk at lower bound", with(func(c *Config) { c.ChunkBytes = MinChunkBytes }), ""},
		{"chunk at upper bound", with(func(c *Config) { c.ChunkBytes = DefaultMaxMessageBytes / 2 }), ""},
		{"chunk below", with(func(c *Config) { c.ChunkBytes = MinChunkBytes - 1 }), "--sync-chunk-bytes must be between 4096 and 2097152, got 4095"},
		{"chunk above", with(func(c *Config) { c.ChunkBytes = DefaultMaxMessageBytes }), "--sync-chunk-bytes must be between 4096 and 2097152, got 4194304"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, ErrConfig)
			assert.EqualError(t, err, "antientropy: invalid config: "+tt.want)
		})
	}
}

func TestUrgeStartsASessionAtOnceEvenAtTheLimit(t *testing.T) {
	a, _ := newSyncer(t, "a", false)
	a.Tick(t0)
	a.SetPeers(t0, []string{"b", "c", "d", "e"})
	started := 0
	for i := range 6 { // fill every session slot with silent peers, within their timeout
		started += len(sends(a.Tick(t0.Add(time.Duration(i) * 600 * time.Millisecond))))
	}
	require.Equal(t, DefaultConfig().MaxSessions, started)
	var idle string
	for _, p := range []string{"b", "c", "d", "e"} {
		if _, busy := a.sessions[p]; !busy {
			idle = p
		}
	}
	assert.Empty(t, a.Urge(t0.Add(4*time.Second), idle), "a peer not known synced (a joiner) pulls for itself")
	a.info[idle] = &peerInfo{heard: true, synced: true}
	got := sends(a.Urge(t0.Add(4*time.Second), idle))
	require.Len(t, got, 1)
	assert.Equal(t, idle, got[0].To)
	assert.Empty(t, a.Urge(t0.Add(4*time.Second), idle), "one session per peer")
}

// H1 of the review: a full sync served partly while the peer was not yet
// synced proves nothing, even if the peer is synced by its end.
func TestAFullSyncCountsOnlyIfEveryAnswerCameFromASyncedPeer(t *testing.T) {
	b, _ := newSyncer(t, "b", true)
	c, sc := newSyncer(t, "c", true)
	sc.Like("p", "u")
	b.SetPeers(t0, []string{"c"})
	c.SetPeers(t0, []string{"b"})
	nodes := map[string]*Syncer{"b": b, "c": c}
	out := b.Tick(t0) // a full sync from c, not synced yet
	var first, rest []Action
	for i, a := range out {
		if i == 0 {
			first = append(first, a)
		} else {
			rest = append(rest, a)
		}
	}
	pump(t, nodes, first) // one stream answered while c is unsynced
	c.synced = true       // c becomes synced before the rest are answered
	pump(t, nodes, rest)
	assert.False(t, b.Synced(), "an answer from an unsynced c was part of it")
}

// C1 of the review: a node that never saw a peer but holds likes does not
// count as handed off: it waits for a peer (its driver bounds the wait).
func TestALoneNodeHoldingLikesWaitsToHandOff(t *testing.T) {
	a, sa := newSyncer(t, "a", false)
	a.Tick(t0)
	sa.Like("p", "u")
	assert.Empty(t, a.Leave(t0))
	assert.False(t, a.HandedOff())

	empty, _ := newSyncer(t, "e", false)
	empty.Tick(t0)
	assert.Equal(t, []Action{HandedOff{}}, empty.Leave(t0))
}

// A leaving node whose last news of its peers is stale (heard while they
// were syncing) still hands off: it tries them, and their answers say they
// are synced now.
func TestHandOffTriesPeersLastHeardUnsynced(t *testing.T) {
	a, sa := newSyncer(t, "a", false)
	a.Tick(t0)
	sa.Like("p", "u")
	b, _ := newSyncer(t, "b", true)
	a.SetPeers(t0, []string{"b"})
	b.SetPeers(t0, []string{"a"})
	a.info["b"] = &peerInfo{heard: true, synced: false} // heard during b's own sync
	b.synced = true
	nodes := map[string]*Syncer{"a": a, "b": b}
	now := t0
	for range 5 {
		pump(t, nodes, a.Leave(now))
		pump(t, nodes, a.Tick(now))
		now = now.Add(time.Second)
	}
	assert.True(t, a.HandedOff())
}
