package cluster

import (
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/ids"
	"github.com/likesd/likesd/internal/store"
)

// peerGuard checks every like peers send, on the fast path and by
// anti-entropy alike, by the rule the API checks clients' by (package ids):
// a peer is another likesd, but an older version, a bug or a forged frame
// must not put in the replica what no client could (an empty id, a NUL
// that makes two likes one key, a megabyte of id). Refused likes are
// counted and logged, at most once per guardLogEvery.
type peerGuard struct {
	Replica
	maxID   int
	log     zerolog.Logger
	refused atomic.Uint64
	lastLog atomic.Int64 // unix nanoseconds of the last log line
}

// guardLogEvery bounds the guard's log lines: a peer that sends only bad
// likes would otherwise write one per frame.
const guardLogEvery = 10 * time.Second

var _ Replica = (*peerGuard)(nil)

func newPeerGuard(r Replica, maxID int, log zerolog.Logger) *peerGuard {
	return &peerGuard{Replica: r, maxID: maxID, log: log}
}

// Merge merges the valid likes of likes and returns those that were new.
func (g *peerGuard) Merge(likes []store.Like) []store.Like {
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

// PeerLikesRefused counts the likes from peers refused since Start.
func (n *Node) PeerLikesRefused() uint64 {
	if n.guard == nil {
		return 0
	}
	return n.guard.refused.Load()
}
