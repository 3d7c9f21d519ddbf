package cluster

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

// BenchmarkRepair10k is issue 21's anti-entropy benchmark: two nodes hold
// the same 100,000 likes (10 on each of 10,000 posts), then 10,000 more,
// one new liker on every post, are put in one node's store only, as a cut
// link would leave them, and anti-entropy repairs the difference. Over the
// sessions (this version), or through memberlist, one dial per message
// (the other node speaks stream version 1 only, as a node of the version
// before sessions: sendTo and syncThroughMemberlist then take memberlist
// both ways). Real memberlists on loopback, a cluster key as deployed.
//
// Reported per repair: the time from the likes landing in the store until
// the other node holds them all (it includes the wait for the next
// session, up to SyncInterval, 100ms), the anti-entropy bytes both nodes
// received until then, and the sessions of either that had ended by then
// (each node starts its own every interval: two may repair at once).
func BenchmarkRepair10k(b *testing.B) {
	b.Run("sessions", func(b *testing.B) { benchRepair(b, false) })
	b.Run("memberlist", func(b *testing.B) { benchRepair(b, true) })
}

const (
	repairPosts = 10_000
	repairBase  = 10 // likers per post both nodes hold
)

func benchRepair(b *testing.B, throughMemberlist bool) {
	start := func(name string, seeds []string, v1 bool) (*Node, *store.Store) {
		cfg := testConfig() // a failure detector that holds on a busy machine
		cfg.NodeName = name
		cfg.Seeds = seeds
		cfg.Logger = zerolog.Nop()
		cfg.SecretKey = key(1)
		cfg.SyncInterval = 100 * time.Millisecond
		cfg.SyncTimeout = 30 * time.Second // measures speed, not a peer's silence
		cfg.streamsV1Only = v1
		n, err := New(cfg)
		require.NoError(b, err)
		st, err := store.New(store.DefaultConfig())
		require.NoError(b, err)
		st.Merge(repairLikes(0, repairBase))
		require.NoError(b, n.Start(st))
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = n.Close(ctx)
		})
		return n, st
	}
	a, ast := start("a", nil, false)
	peer, pst := start("b", []string{a.Addr()}, throughMemberlist)
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				b.Fatalf("%s: not within 60s (a %+v, b %+v)", what, a.Stats(), peer.Stats())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("both ready and synced once", func() bool {
		return a.Ready() && peer.Ready() && a.Stats().SyncSessions > 0 && peer.Stats().SyncSessions > 0
	})
	if got := peer.Stats(); throughMemberlist != (got.StreamsDialed == 0 && a.Stats().StreamsDialed == 0) {
		b.Fatalf("through memberlist %v, but streams dialed: a %d, b %d", throughMemberlist, a.Stats().StreamsDialed, got.StreamsDialed)
	}

	var took time.Duration
	var bytes, sessions uint64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		diff := repairLikes(repairBase+i, 1)
		want := ast.Stats().Likes + len(diff)
		a0, b0 := a.Stats(), peer.Stats()
		b.StartTimer()
		t0 := time.Now()
		ast.Merge(diff) // a's alone: the fast path never sees them
		waitFor("repaired", func() bool { return pst.Stats().Likes == want })
		took += time.Since(t0)
		b.StopTimer()
		a1, b1 := a.Stats(), peer.Stats()
		bytes += a1.SyncBytesIn - a0.SyncBytesIn + b1.SyncBytesIn - b0.SyncBytesIn
		sessions += a1.SyncSessions - a0.SyncSessions + b1.SyncSessions - b0.SyncSessions
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(took.Seconds()/float64(b.N), "s/repair")
	b.ReportMetric(float64(bytes)/float64(b.N)/1024, "KiB/repair")
	b.ReportMetric(float64(sessions)/float64(b.N), "sessions/repair")
}

// repairLikes is rounds likers on every post, from round first on: user
// "r<round>-<post>".
func repairLikes(first, rounds int) []store.Like {
	likes := make([]store.Like, 0, rounds*repairPosts)
	for r := first; r < first+rounds; r++ {
		for p := range repairPosts {
			likes = append(likes, store.Like{Post: "post-" + strconv.Itoa(p), User: "r" + strconv.Itoa(r) + "-" + strconv.Itoa(p)})
		}
	}
	return likes
}
