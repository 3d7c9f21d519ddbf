package store

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
)

func newTestStore(t *testing.T, shards int) *Store {
	t.Helper()
	s, err := New(Config{Shards: shards})
	require.NoError(t, err)
	return s
}

func someLikes(n, posts int, seed uint64) []Like {
	r := rand.New(rand.NewPCG(seed, 2))
	out := make([]Like, n)
	for i := range out {
		out[i] = Like{Post: fmt.Sprintf("p%d", r.IntN(posts)), User: fmt.Sprintf("u%d", r.IntN(n))}
	}
	return out
}

func TestBucketsAgreeWhateverPathAndOrderLikesTook(t *testing.T) {
	likes := someLikes(5000, 300, 1)
	a := newTestStore(t, 256)
	for _, l := range likes {
		a.Like(l.Post, l.User)
	}
	b := newTestStore(t, 4) // shard count is local: digests must not depend on it
	for i := len(likes) - 1; i >= 0; i -= 2 {
		b.Merge([]Like{likes[i]})
	}
	require.NotEqual(t, a.BucketsSummary(0, Buckets), b.BucketsSummary(0, Buckets), "half the likes differ")
	for i := len(likes) - 2; i >= 0; i -= 2 {
		b.RestoreSet(likes[i].Post, gset.New(likes[i].User)) // as recovery adds them
	}
	assert.Equal(t, a.BucketsSummary(0, Buckets), b.BucketsSummary(0, Buckets))
	assert.Equal(t, a.Stats().Likes, a.BucketsSummary(0, Buckets).Count)
	for lo := 0; lo < Buckets; lo += 4096 {
		assert.Equal(t, a.BucketsSummary(lo, lo+4096), b.BucketsSummary(lo, lo+4096))
	}

	one := likes[0]
	b.Like(one.Post, "someone-new")
	assert.NotEqual(t, a.BucketsSummary(0, Buckets), b.BucketsSummary(0, Buckets))
	bucket := BucketOf(one.Post)
	assert.NotEqual(t, a.BucketsSummary(bucket, bucket+1), b.BucketsSummary(bucket, bucket+1))
	assert.Equal(t, a.BucketsSummary(0, bucket), b.BucketsSummary(0, bucket), "other buckets unchanged")
}

func TestBucketPostsListsOneBucketInOrder(t *testing.T) {
	s := newTestStore(t, 256)
	for _, l := range someLikes(20000, 200000, 3) {
		s.Like(l.Post, l.User)
	}
	seen := 0
	for b := 0; b < Buckets; b++ {
		all, more := s.BucketPosts(b, true, "", 1<<20)
		require.False(t, more)
		for i, p := range all {
			require.Equal(t, b, BucketOf(p.Post))
			require.Equal(t, s.Count(p.Post), p.Count)
			if i > 0 {
				require.Less(t, all[i-1].Post, p.Post)
			}
		}
		if len(all) > 1 {
			page, more := s.BucketPosts(b, false, all[0].Post, 1)
			require.Equal(t, all[1:2], page)
			require.Equal(t, len(all) > 2, more)
		}
		seen += len(all)
	}
	assert.Equal(t, s.Stats().Posts, seen)
}

// scanAll pages through r and returns every like it saw.
func scanAll(t *testing.T, s *Store, r Range, maxBytes int) []Like {
	t.Helper()
	var out []Like
	var cur Cursor
	for range 1 << 20 {
		page, next, done := s.Scan(r, cur, maxBytes)
		out = append(out, page...)
		if done {
			return out
		}
		require.NotEmpty(t, page, "a page that is not the last makes progress")
		cur = next
	}
	t.Fatal("scan did not finish")
	return nil
}

func TestScanVisitsEveryLikeOnceInOrder(t *testing.T) {
	s := newTestStore(t, 64)
	likes := someLikes(20000, 500, 4)
	for _, l := range likes {
		s.Like(l.Post, l.User)
	}
	s.Like("big", "")
	for i := range 3000 {
		s.Like("big", fmt.Sprintf("user-%04d", i))
	}
	for _, maxBytes := range []int{1, 100, 64 << 10, 1 << 30} {
		got := scanAll(t, s, Range{Lo: 0, Hi: Buckets}, maxBytes)
		require.Len(t, got, s.Stats().Likes, "maxBytes %d", maxBytes)
		seen := map[Like]bool{}
		for i, l := range got {
			require.False(t, seen[l], "twice: %v", l)
			seen[l] = true
			if i > 0 {
				p := got[i-1]
				require.True(t, BucketOf(p.Post) < BucketOf(l.Post) ||
					(BucketOf(p.Post) == BucketOf(l.Post) && (p.Post < l.Post || (p.Post == l.Post && p.User < l.User))),
					"order: %v then %v", p, l)
			}
		}
	}

	// One post's hash range, split across pages.
	r := Range{HasPost: true, Post: "big", Bits: 4, Prefix: 9}
	got := scanAll(t, s, r, 50)
	assert.Equal(t, s.PostRangeSummary("big", 4, 9).Count, len(got))
	for _, l := range got {
		assert.True(t, gset.InRange(gset.PublicKey().Hash(l.User), 4, 9))
	}
	assert.Empty(t, scanAll(t, s, Range{HasPost: true, Post: "nobody-liked-it"}, 50))

	// A run of buckets sees exactly the likes in those buckets.
	part := scanAll(t, s, Range{Lo: 1000, Hi: 30000}, 500)
	assert.Equal(t, s.BucketsSummary(1000, 30000).Count, len(part))
}

func TestScanSeesEverythingPresentAtItsStartDespiteConcurrentLikes(t *testing.T) {
	s := newTestStore(t, 8)
	before := someLikes(5000, 100, 5)
	for _, l := range before {
		s.Like(l.Post, l.User)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, l := range someLikes(5000, 100, 6) {
			s.Like(l.Post, l.User)
		}
	}()
	got := map[Like]bool{}
	for _, l := range scanAll(t, s, Range{Lo: 0, Hi: Buckets}, 200) {
		got[l] = true
	}
	<-done
	for _, l := range before {
		require.True(t, got[l], "missed %v", l)
	}
}

func TestUpperLevelsMatchTheBucketsBelow(t *testing.T) {
	s := newTestStore(t, 16)
	for _, l := range someLikes(20000, 3000, 7) {
		s.Like(l.Post, l.User)
	}
	sum := func(lo, hi int) gset.Summary { // the slow way, bucket by bucket
		var out gset.Summary
		for b := lo; b < hi; b++ {
			out = out.Add(s.BucketsSummary(b, b+1))
		}
		return out
	}
	for l := range 3 {
		sp := span(l)
		for lo := 0; lo < Buckets; lo += sp * 7 { // a sample of each level's nodes
			require.Equal(t, sum(lo, lo+sp), s.BucketsSummary(lo, lo+sp), "level %d node at %d", l+1, lo)
		}
	}
	require.Equal(t, sum(0, Buckets), s.BucketsSummary(0, Buckets))
	require.Equal(t, s.Stats().Likes, s.BucketsSummary(0, Buckets).Count)
}
