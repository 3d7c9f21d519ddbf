package cluster

import (
	"github.com/cespare/xxhash/v2"

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
// Likes are keyed by a 64-bit hash of post, NUL, user (ids hold no NUL:
// package ids): 16 bytes an entry, not the ids'. Two likes with one hash
// would let a repeat of one be answered with the other's replicas: at
// maxHeldLikes entries, about one chance in 10^10.
type heldLikes struct {
	m       map[uint64]int
	members map[string]bool // members when the entries were recorded
}

// maxHeldLikes bounds heldLikes: about 1 MiB, and a bulk import of
// 10,000 likes sent a few times over.
const maxHeldLikes = 1 << 16

func likeKey(l store.Like) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(l.Post)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(l.User)
	return d.Sum64()
}

// heldBy returns how many replicas held all of likes when acknowledged,
// 0 when one of them is not known held (or was new here: added).
func (h *heldLikes) heldBy(likes []store.Like, added []bool) int {
	least := 0
	for i, l := range likes {
		r := h.m[likeKey(l)]
		if added[i] || r == 0 {
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
		if k := likeKey(l); h.m[k] < replicas {
			h.m[k] = replicas
		}
	}
}

// setMembers forgets everything if a member it knew is not in names.
func (h *heldLikes) setMembers(names []string) {
	now := make(map[string]bool, len(names))
	for _, n := range names {
		now[n] = true
	}
	for n := range h.members {
		if !now[n] {
			clear(h.m)
			break
		}
	}
	h.members = now
}
