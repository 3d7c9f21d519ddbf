package store

import (
	"cmp"
	"slices"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/wire"
)

// The replica's content is summarised for anti-entropy in Buckets digest
// buckets, chosen by the top bits of each post's hash. A bucket's summary
// sums, over its posts, a keyed hash of (post, the post's set digest, its
// count), and counts their likes; it is kept up to date in O(1) per like
// under the shard lock. Two replicas whose buckets agree under the same
// secret key hold the same likes there, but with probability about 2^-64.
const (
	bucketBits = 16
	// Buckets is the number of digest buckets: 65536, so that a bucket holds
	// a few posts at a million posts, and the array costs 1 MiB.
	Buckets = 1 << bucketBits
)

// PostHash is the hash every replica gives a post id to place it in a
// bucket and a shard. It is unkeyed on purpose: placement must not move
// when the key rotates, and it decides only where a post is summarised,
// never whether two contents look equal (postContribution is keyed).
// Chosen post ids can crowd one bucket, which costs listing pages, not
// correctness.
func PostHash(post string) uint64 { return mix(xxhash.Sum64String(post)) }

// mix is splitmix64's finalizer: a bijection that spreads every input bit
// over the whole output, so the bucket bits on top are well mixed.
func mix(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return z
}

// BucketOf is the digest bucket of post.
func BucketOf(post string) int { return int(PostHash(post) >> (64 - bucketBits)) }

// postContribution is what one post adds to its bucket's digest: a keyed
// PRF of the post's identity with its set's digest and size, so that likes
// of one post never cancel out likes of another, and two posts' different
// contents give independent values.
func postContribution(k gset.Key, post string, s gset.Summary) uint64 {
	if s.Count == 0 {
		return 0
	}
	return k.Tuple(k.Hash(post), s.Digest, uint64(s.Count))
}

// upperLevels are the sums of 16^(4-L) consecutive buckets for L = 1..3
// (16, 256 and 4096 of them), kept with atomic adds on every change so
// that summaries high in the tree cost one load instead of thousands. They
// span shards, so no shard lock guards them: a reader may see one shard's
// change before another's, as it would summing bucket by bucket.
type upperLevels [3][]atomicSummary

type atomicSummary struct {
	digest atomic.Uint64
	count  atomic.Int64
}

func newUpperLevels() *upperLevels {
	var u upperLevels
	for l := range u {
		u[l] = make([]atomicSummary, 1<<(4*(l+1)))
	}
	return &u
}

// span is the number of buckets one node of level l+1 sums.
func span(l int) int { return Buckets >> (4 * (l + 1)) }

func (u *upperLevels) add(bucket int, digest uint64, count int) {
	for l := range u {
		n := &u[l][bucket/span(l)]
		n.digest.Add(digest)
		n.count.Add(int64(count))
	}
}

// lookup returns the summary of buckets [lo, hi) when they are exactly one
// node of an upper level.
func (u *upperLevels) lookup(lo, hi int) (gset.Summary, bool) {
	for l := range u {
		if sp := span(l); hi-lo == sp && lo%sp == 0 {
			n := &u[l][lo/sp]
			return gset.Summary{Digest: n.digest.Load(), Count: int(n.count.Load())}, true
		}
	}
	return gset.Summary{}, false
}

// rebucketLocked moves post's contribution to its bucket from before to
// after. The caller holds sh.mu.
func (sh *shard) rebucketLocked(post string, before, after gset.Summary) {
	bucket := BucketOf(post)
	digest := postContribution(sh.key, post, after) - postContribution(sh.key, post, before)
	count := after.Count - before.Count
	b := &sh.buckets[bucket-sh.first]
	b.Digest += digest
	b.Count += count
	sh.upper.add(bucket, digest, count)
}

// BucketsSummary sums the summaries of buckets [lo, hi).
func (s *Store) BucketsSummary(lo, hi int) gset.Summary {
	lo, hi = max(lo, 0), min(hi, Buckets)
	if lo == 0 && hi == Buckets {
		var out gset.Summary
		for i := range 16 {
			out = out.Add(s.BucketsSummary(i*span(0), (i+1)*span(0)))
		}
		return out
	}
	if sum, ok := s.upper.lookup(lo, hi); ok {
		return sum
	}
	var out gset.Summary
	for lo < hi {
		sh := &s.shards[lo>>s.shardShift]
		end := min(hi, sh.first+len(sh.buckets))
		sh.mu.RLock()
		for _, b := range sh.buckets[lo-sh.first : end-sh.first] {
			out = out.Add(b)
		}
		sh.mu.RUnlock()
		lo = end
	}
	return out
}

// PostSummary is one post's summary in a bucket listing.
type PostSummary struct {
	Post string
	gset.Summary
}

// BucketPosts lists the posts of bucket in byte order with their summaries:
// from the first when fromStart is set, else strictly after the post after;
// at most limit, and whether more follow.
func (s *Store) BucketPosts(bucket int, fromStart bool, after string, limit int) (posts []PostSummary, more bool) {
	if bucket < 0 || bucket >= Buckets || limit <= 0 {
		return nil, false
	}
	sh := &s.shards[bucket>>s.shardShift]
	sh.mu.RLock()
	for post, set := range sh.posts {
		if BucketOf(post) == bucket && (fromStart || post > after) {
			posts = append(posts, PostSummary{Post: post, Summary: set.summary()})
		}
	}
	sh.mu.RUnlock()
	slices.SortFunc(posts, func(a, b PostSummary) int { return cmp.Compare(a.Post, b.Post) })
	if len(posts) > limit {
		return posts[:limit], true
	}
	return posts, false
}

// PostRangeSummary summarises post's members whose hash lies in the range
// (bits, prefix); see gset.InRange.
func (s *Store) PostRangeSummary(post string, bits uint8, prefix uint64) gset.Summary {
	sh := s.shardOf(post)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if set, ok := sh.posts[post]; ok {
		if bits == 0 {
			return set.summary()
		}
		return set.RangeSummary(sh.key, bits, prefix)
	}
	return gset.Summary{}
}

// PostRangeDigests splits post's members in the range (bits, prefix) by the
// next four bits of their hash and summarises each part.
func (s *Store) PostRangeDigests(post string, bits uint8, prefix uint64) [gset.Fanout]gset.Summary {
	sh := s.shardOf(post)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if set, ok := sh.posts[post]; ok {
		return set.RangeDigests(sh.key, bits, prefix)
	}
	return [gset.Fanout]gset.Summary{}
}

// Range names part of the key space: buckets [Lo, Hi), or, when HasPost is
// set, the members of Post whose hash lies in the range (Bits, Prefix).
type Range struct {
	Lo, Hi  int
	HasPost bool
	Post    string
	Bits    uint8
	Prefix  uint64
}

// Cursor is a position in a scan: before everything when Started is unset,
// else just after the like (Post, User).
type Cursor struct {
	Started    bool
	Post, User string
}

// Scan returns likes of r in (bucket, post, user) order after cur, stopping
// once about maxBytes of ids are collected (at least one like), with the
// cursor to continue from and whether the scan reached the end. Likes added
// behind the cursor meanwhile are not seen; every like present when the scan
// began and still ahead of the cursor is.
func (s *Store) Scan(r Range, cur Cursor, maxBytes int) (likes []Like, next Cursor, done bool) {
	next = cur
	budget := maxBytes
	take := func(k gset.Key, post string, set *postSet, fromStart bool, after string) bool {
		for {
			users, more := set.RangeMembers(k, r.Bits, r.Prefix, fromStart, after, 256)
			for _, u := range users {
				likes = append(likes, Like{Post: post, User: u})
				budget -= wire.StringLen(post) + wire.StringLen(u)
			}
			if len(users) > 0 {
				next = Cursor{Started: true, Post: post, User: users[len(users)-1]}
				fromStart, after = false, users[len(users)-1]
			}
			if !more {
				return true // post finished
			}
			if budget <= 0 {
				return false
			}
		}
	}
	if r.HasPost {
		sh := s.shardOf(r.Post)
		sh.mu.RLock()
		defer sh.mu.RUnlock()
		set, ok := sh.posts[r.Post]
		if !ok {
			return nil, cur, true
		}
		finished := take(sh.key, r.Post, set, !cur.Started, cur.User)
		return likes, next, finished
	}

	lo, hi := max(r.Lo, 0), min(r.Hi, Buckets)
	if cur.Started {
		lo = max(lo, BucketOf(cur.Post))
	}
	type entry struct {
		bucket int
		post   string
		set    *postSet
	}
	var posts []entry
	for lo < hi {
		sh := &s.shards[lo>>s.shardShift]
		end := min(hi, sh.first+len(sh.buckets))
		sh.mu.RLock()
		posts = posts[:0]
		for post, set := range sh.posts {
			if b := BucketOf(post); b >= lo && b < end {
				posts = append(posts, entry{b, post, set})
			}
		}
		slices.SortFunc(posts, func(a, b entry) int {
			return cmp.Or(cmp.Compare(a.bucket, b.bucket), cmp.Compare(a.post, b.post))
		})
		for _, e := range posts {
			var finished bool
			switch {
			case !cur.Started:
				finished = take(sh.key, e.post, e.set, true, "")
			case e.bucket < BucketOf(cur.Post) || (e.bucket == BucketOf(cur.Post) && e.post < cur.Post):
				continue // before the cursor
			case e.post == cur.Post:
				finished = take(sh.key, e.post, e.set, false, cur.User)
			default:
				finished = take(sh.key, e.post, e.set, true, "")
			}
			if !finished || budget <= 0 {
				sh.mu.RUnlock()
				return likes, next, false
			}
		}
		sh.mu.RUnlock()
		lo = end
	}
	return likes, next, true
}

// DigestKeyID is the ID of the key the replica's digests are under (see
// gset.Key.ID), 0 while Rekey runs: a reader compares digests only when it
// read the same nonzero ID before and after reading them.
func (s *Store) DigestKeyID() uint64 { return s.keyID.Load() }

// Rekey recomputes every digest under k, one shard at a time: each shard's
// lock is held only while its own sets are rehashed (a 256th of the
// replica at the default, or one huge post's set), so likes keep being
// taken. Meanwhile DigestKeyID is 0: the buckets and upper levels mix two
// keys, and nobody may compare them. Calls are serialised.
func (s *Store) Rekey(k gset.Key) {
	s.rekeyMu.Lock()
	defer s.rekeyMu.Unlock()
	if s.keyID.Load() == k.ID() && s.shards[0].keyIs(k) {
		return
	}
	s.keyID.Store(0)
	for i := range s.shards {
		s.shards[i].rekey(k)
	}
	s.keyID.Store(k.ID())
}

func (sh *shard) keyIs(k gset.Key) bool {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.key == k
}

// rekey rehashes the shard's sets under k and moves the upper levels by
// what each of its buckets changed.
func (sh *shard) rekey(k gset.Key) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.key == k {
		return
	}
	sh.key = k
	fresh := make([]uint64, len(sh.buckets))
	for post, set := range sh.posts {
		set.digest = set.Summary(k).Digest
		fresh[BucketOf(post)-sh.first] += postContribution(k, post, set.summary())
	}
	for i, d := range fresh {
		if delta := d - sh.buckets[i].Digest; delta != 0 {
			sh.buckets[i].Digest = d
			sh.upper.add(sh.first+i, delta, 0)
		}
	}
}
