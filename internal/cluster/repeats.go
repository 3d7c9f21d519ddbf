package cluster

import (
	"hash/maphash"

	"github.com/likesd/likesd/internal/store"
)

// heldLikes remembers, for likes this node's writes had acknowledged, how
// many replicas held them then, so that a repeat (a retried like, an import
// sent twice) that asks for no more is answered at once instead of being
// logged and sent to every peer again, to be merged and acknowledged for
// nothing. It forgets everything when a member that was there leaves (a
// replica that held a like may be gone with it) and when it is full. It
// is guarded by writes.mu.
//
// A member is one process: its name, when it started and its origin (its
// node meta), so a peer restarted under its name, which holds only what it
// recovered, is a member that left, though memberlist may never have shown
// the old one gone.
//
// Likes are keyed by a 64-bit hash of post, NUL, user (ids hold no NUL:
// package ids): 16 bytes an entry, not the ids'. The hash is seeded per
// table (hash/maphash), so ids chosen to collide cannot be: two likes with
// one hash, which would let a repeat of one be answered with the other's
// replicas, come only by chance, at maxHeldLikes entries about one in
// 10^10.
type heldLikes struct {
	seed    maphash.Seed
	m       map[uint64]int
	members map[memberID]bool // members when the entries were recorded
}

// memberID is one process of a member, as its node meta says.
type memberID struct {
	name    string
	started int64  // Unix ns; 0 when its meta does not say (an older version)
	origin  uint64 // random per process start
}

func idOf(p peer) memberID { return memberID{name: p.name, started: p.started, origin: p.origin} }

func newHeldLikes() heldLikes { return heldLikes{seed: maphash.MakeSeed()} }

// maxHeldLikes bounds heldLikes: about 1 MiB, and a bulk import of
// 10,000 likes sent a few times over.
const maxHeldLikes = 1 << 16

func (h *heldLikes) key(l store.Like) uint64 {
	var d maphash.Hash
	d.SetSeed(h.seed)
	_, _ = d.WriteString(l.Post)
	_ = d.WriteByte(0)
	_, _ = d.WriteString(l.User)
	return d.Sum64()
}

// heldBy returns how many replicas held all of likes when acknowledged,
// 0 when one of them is not known held (or was new here: added).
func (h *heldLikes) heldBy(likes []store.Like, added []bool) int {
	least := 0
	for i, l := range likes {
		if added[i] {
			return 0
		}
		r := h.m[h.key(l)]
		if r == 0 {
			return 0
		}
		if least == 0 || r < least {
			least = r
		}
	}
	return least
}

// record notes that replicas held likes.
func (h *heldLikes) record(likes []store.Like, replicas int) {
	if replicas < 2 || len(likes) > maxHeldLikes {
		return // nothing to save: this node alone, or an import too large to keep
	}
	if h.m == nil || len(h.m)+len(likes) > maxHeldLikes {
		h.m = make(map[uint64]int, min(len(likes), maxHeldLikes))
	}
	for _, l := range likes {
		if k := h.key(l); h.m[k] < replicas {
			h.m[k] = replicas
		}
	}
}

// setMembers forgets everything if a member process it knew is not in
// members.
func (h *heldLikes) setMembers(members []memberID) {
	now := make(map[memberID]bool, len(members))
	for _, m := range members {
		now[m] = true
	}
	for m := range h.members {
		if !now[m] {
			clear(h.m)
			break
		}
	}
	h.members = now
}
