package antientropy

import (
	"fmt"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
)

// treeDepth is the level of the buckets: 16^4 = store.Buckets.
const treeDepth = 4

// maxPostBits is the deepest split of a post's members by hash.
const maxPostBits = 64

// Node names one node of the digest tree: a tree node (Level, Index) above
// the buckets, or, when IsPost, the members of Post whose hash lies in the
// range (Bits, Prefix) (Bits 0: the whole post).
type Node struct {
	IsPost bool
	Level  uint8
	Index  uint32
	Post   string
	Bits   uint8
	Prefix uint64
}

// root is the whole replica.
var root = Node{}

func treeNode(level uint8, index uint32) Node { return Node{Level: level, Index: index} }

func postNode(post string, bits uint8, prefix uint64) Node {
	return Node{IsPost: true, Post: post, Bits: bits, Prefix: prefix}
}

func (n Node) String() string {
	if n.IsPost {
		return fmt.Sprintf("post %q %d/%x", n.Post, n.Bits, n.Prefix)
	}
	return fmt.Sprintf("tree %d/%d", n.Level, n.Index)
}

// valid reports whether n is a node of the tree; decoders check it.
func (n Node) valid() bool {
	if n.IsPost {
		return n.Bits%4 == 0 && n.Bits <= maxPostBits && (n.Bits == 64 || n.Prefix < 1<<n.Bits)
	}
	return n.Level <= treeDepth && uint64(n.Index) < 1<<(4*uint(n.Level))
}

// isBucket reports whether n is a leaf of the bucket tree, whose children
// are posts.
func (n Node) isBucket() bool { return !n.IsPost && n.Level == treeDepth }

// expandable reports whether n has children to descend into.
func (n Node) expandable() bool { return !n.IsPost || n.Bits < maxPostBits }

// buckets is the run of buckets under a tree node.
func (n Node) buckets() (lo, hi int) {
	span := 1 << (4 * (treeDepth - uint(n.Level)))
	return int(n.Index) * span, (int(n.Index) + 1) * span
}

// child is the i-th child of a tree node above the buckets, or of a post
// range.
func (n Node) child(i int) Node {
	if n.IsPost {
		return postNode(n.Post, n.Bits+4, n.Prefix<<4|uint64(i))
	}
	return treeNode(n.Level+1, n.Index<<4|uint32(i))
}

// storeRange is the part of the replica n covers.
func (n Node) storeRange() store.Range {
	if n.IsPost {
		return store.Range{HasPost: true, Post: n.Post, Bits: n.Bits, Prefix: n.Prefix}
	}
	lo, hi := n.buckets()
	return store.Range{Lo: lo, Hi: hi}
}

// Replica is what anti-entropy reads and merges. *store.Store satisfies it;
// see there for each method's contract.
type Replica interface {
	BucketsSummary(lo, hi int) gset.Summary
	BucketPosts(bucket int, fromStart bool, after string, limit int) ([]store.PostSummary, bool)
	PostRangeSummary(post string, bits uint8, prefix uint64) gset.Summary
	PostRangeDigests(post string, bits uint8, prefix uint64) [gset.Fanout]gset.Summary
	Scan(r store.Range, cur store.Cursor, maxBytes int) ([]store.Like, store.Cursor, bool)
	// Merge adds likes from a peer and returns those that were new.
	Merge(likes []store.Like) []store.Like
	// DigestKeyID names the key every digest above is under, 0 while the
	// replica re-keys (see store.Rekey).
	DigestKeyID() uint64
}

var _ Replica = (*store.Store)(nil)

// summaryOf is this replica's summary of n.
func summaryOf(r Replica, n Node) gset.Summary {
	if n.IsPost {
		return r.PostRangeSummary(n.Post, n.Bits, n.Prefix)
	}
	return r.BucketsSummary(n.buckets())
}

// childrenOf is this replica's summaries of n's 16 children; n is not a
// bucket.
func childrenOf(r Replica, n Node) [gset.Fanout]gset.Summary {
	if n.IsPost {
		return r.PostRangeDigests(n.Post, n.Bits, n.Prefix)
	}
	var out [gset.Fanout]gset.Summary
	for i := range out {
		out[i] = r.BucketsSummary(n.child(i).buckets())
	}
	return out
}
