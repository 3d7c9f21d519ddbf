package cluster

import (
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/ids"
	"github.com/likesd/likesd/internal/stat"
	"github.com/likesd/likesd/internal/store"
)

// peerGuard checks every like peers send, on the fast path and by
// anti-entropy alike, by the rule the API checks clients' by (package ids):
// a peer is another likesd, but an older version, a bug or a forged frame
// must not put in the replica what no client could (an empty id, a NUL
// that makes two likes one key, a megabyte of id). Refused likes are
// counted and logged, at most once per guardLogEvery.
//
// It also refuses every like from peers while the node's memory is past
// its hard mark (Config.Memory): those are deferred, not lost, as the
// sender keeps them until acknowledged (Node.handle acknowledges no frame
// the guard deferred) and anti-entropy offers them again.
type peerGuard struct {
	Replica
	maxID   int
	memory  Memory // nil: no bound
	log     zerolog.Logger
	refused atomic.Uint64
	lastLog atomic.Int64 // unix nanoseconds of the last log line
	// deferred counts the likes not applied for memory; lastFullLog is
	// when that was last logged.
	deferred    atomic.Uint64
	lastFullLog atomic.Int64
}

// guardLogEvery bounds the guard's log lines: a peer that sends only bad
// likes would otherwise write one per frame.
const guardLogEvery = 10 * time.Second

var _ Replica = (*peerGuard)(nil)

func newPeerGuard(r Replica, maxID int, memory Memory, log zerolog.Logger) *peerGuard {
	return &peerGuard{Replica: r, maxID: maxID, memory: memory, log: log}
}

// Merge merges the valid likes of likes and returns those that were new;
// none while the node's memory is full.
func (g *peerGuard) Merge(likes []store.Like) []store.Like {
	if g.memory != nil && len(likes) > 0 && g.memory.Full() {
		g.deferLikes(len(likes))
		return nil
	}
	first := -1
	for i, l := range likes {
		if !g.valid(l) {
			first = i
			break
		}
	}
	if first < 0 {
		return g.Replica.Merge(likes) // the usual case: no copy
	}
	ok := make([]store.Like, first, len(likes)-1)
	copy(ok, likes[:first])
	bad, example := 0, likes[first]
	for _, l := range likes[first:] {
		if g.valid(l) {
			ok = append(ok, l)
		} else {
			bad++
		}
	}
	g.refuse(bad, example)
	return g.Replica.Merge(ok)
}

func (g *peerGuard) valid(l store.Like) bool {
	return ids.Check(l.Post, g.maxID) == ids.OK && ids.Check(l.User, g.maxID) == ids.OK
}

func (g *peerGuard) refuse(n int, example store.Like) {
	total := g.refused.Add(uint64(n))
	now := time.Now().UnixNano()
	last := g.lastLog.Load()
	if now-last < int64(guardLogEvery) || !g.lastLog.CompareAndSwap(last, now) {
		return
	}
	problem := ids.Check(example.Post, g.maxID)
	field, id := "post", example.Post
	if problem == ids.OK {
		problem, field, id = ids.Check(example.User, g.maxID), "user", example.User
	}
	const show = 64 // of a bad id, enough to find it
	if len(id) > show {
		id = id[:show]
	}
	g.log.Warn().Int("refused", n).Uint64("refused_total", total).Str("field", field).Str("problem", problem.String()).
		Str("example", id).Msg("likes from a peer refused: ids break the API's rule (more are counted in likesd_peer_likes_refused_total, logged at most every 10s)")
}

// deferLikes counts n likes not applied for memory, and logs it at most
// once per guardLogEvery.
func (g *peerGuard) deferLikes(n int) {
	total := g.deferred.Add(uint64(n))
	now := time.Now().UnixNano()
	last := g.lastFullLog.Load()
	if now-last < int64(guardLogEvery) || !g.lastFullLog.CompareAndSwap(last, now) {
		return
	}
	g.log.Warn().Int("deferred", n).Uint64("deferred_total", total).
		Msg("likes from peers not applied nor acknowledged: memory past its hard mark (--memory-peers-refuse-at); their senders keep them and anti-entropy brings them later (counted in likesd_peer_likes_deferred_total, logged at most every 10s)")
}

// guardMetrics describes the guard's counters, read from r at scrape time.
func guardMetrics(r Readings) []stat.Desc {
	return []stat.Desc{
		stat.NewCounter("likesd_peer_likes_refused_total",
			"Likes from peers (fast path or anti-entropy) refused, not merged: their ids break the rule the API checks clients' by.", r.PeerLikesRefused),
		stat.NewCounter("likesd_peer_likes_deferred_total",
			"Likes from peers (fast path or anti-entropy) not applied nor acknowledged: memory was past its hard mark (--memory-peers-refuse-at); their senders keep them for anti-entropy.", r.PeerLikesDeferred),
	}
}

// PeerLikesRefused counts the likes from peers refused since Start.
func (n *Node) PeerLikesRefused() uint64 {
	if n.guard == nil {
		return 0
	}
	return n.guard.refused.Load()
}

// PeerLikesDeferred counts the likes from peers not applied since Start
// because memory was past its hard mark (Config.Memory).
func (n *Node) PeerLikesDeferred() uint64 {
	if n.guard == nil {
		return 0
	}
	return n.guard.deferred.Load()
}
