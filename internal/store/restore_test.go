package store

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"testing/quick"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
)

// contents is every post's members, sorted.
func contents(s *Store) map[string][]string {
	out := map[string][]string{}
	s.Snapshot(func(post string, users gset.Set) bool {
		out[post] = users.Members()
		return true
	})
	return out
}

// RestoreLikes is RestoreLike one like at a time: the same members and the
// same digests at every level, whatever the batch (duplicates, likes
// already held, one shard or many, large enough to run in parallel or not).
func TestPropertyRestoreLikesEqualsRestoreLikeOneByOne(t *testing.T) {
	law := func(seed uint64, n uint16, posts uint8, shards uint8, held uint8) bool {
		likes := someLikes(int(n)%(2*restoreParallelMin+1000), 1+int(posts), seed)
		already := someLikes(int(held)*10, 1+int(posts), seed+1)
		nShards := 1 << (shards % 9)
		want, got := newTestStore(t, nShards), newTestStore(t, nShards)
		for _, st := range []*Store{want, got} {
			for _, l := range already {
				st.Like(l.Post, l.User)
			}
		}
		for _, l := range likes {
			want.RestoreLike(l.Post, l.User)
		}
		before := slices.Clone(likes)
		got.RestoreLikes(likes)
		if !slices.Equal(before, likes) {
			t.Log("the batch was changed")
			return false
		}
		ids := map[string]bool{}
		for _, l := range append(likes, already...) {
			ids[l.Post] = true
		}
		return sameDigests(t, want, got, slices.Collect(maps.Keys(ids))) && fmt.Sprint(contents(want)) == fmt.Sprint(contents(got)) &&
			want.Stats() == got.Stats()
	}
	require.NoError(t, quick.Check(law, &quick.Config{MaxCount: 40}))
}

// Chosen post ids in one bucket and one shard, interleaved, with every
// like repeated: each post still gets exactly its own likes.
func TestRestoreLikesKeepsPostsOfOneShardApart(t *testing.T) {
	var posts []string
	for i := 0; len(posts) < 5; i++ {
		if p := fmt.Sprintf("post-%d", i); BucketOf(p) == BucketOf("post-0") || len(posts) == 0 {
			posts = append(posts, p)
		}
	}
	var likes []Like
	for u := range 3 * restoreParallelMin {
		l := Like{Post: posts[u%len(posts)], User: fmt.Sprintf("user-%d", u/2)}
		likes = append(likes, l, l)
	}
	want, got := newTestStore(t, 256), newTestStore(t, 256)
	for _, l := range likes {
		want.RestoreLike(l.Post, l.User)
	}
	got.RestoreLikes(likes)
	require.Equal(t, contents(want), contents(got))
	require.True(t, sameDigests(t, want, got, posts))
}

// A batch restored while the store serves: the shard locks keep both
// exact (run with -race).
func TestRestoreLikesBesideLikes(t *testing.T) {
	s := newTestStore(t, 16)
	batch := someLikes(4*restoreParallelMin, 500, 9)
	live := someLikes(5000, 500, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, l := range live {
			s.Like(l.Post, "live-"+l.User)
		}
	}()
	s.RestoreLikes(batch)
	<-done
	for _, l := range batch {
		require.True(t, s.Has(l.Post, l.User))
	}
	for _, l := range live {
		require.True(t, s.Has(l.Post, "live-"+l.User))
	}
	want := newTestStore(t, 16)
	for _, l := range batch {
		want.RestoreLike(l.Post, l.User)
	}
	for _, l := range live {
		want.Like(l.Post, "live-"+l.User)
	}
	require.Equal(t, want.BucketsSummary(0, Buckets), s.BucketsSummary(0, Buckets))
}

// The batch's strings may share one buffer that is reused once the call
// returns (recovery's are substrings of a segment's bytes): the store keeps
// none of them.
func TestRestoreLikesKeepsNoStringOfTheBatch(t *testing.T) {
	buf := []byte("post-a" + "user-1" + "post-b" + "user-2" + "post-a" + "user-3")
	at := func(i int) string { return unsafe.String(&buf[6*i], 6) }
	s := newTestStore(t, 4)
	s.RestoreLikes([]Like{{at(0), at(1)}, {at(2), at(3)}, {at(4), at(5)}})
	for i := range buf {
		buf[i] = 'x'
	}
	require.Equal(t, map[string][]string{"post-a": {"user-1", "user-3"}, "post-b": {"user-2"}}, contents(s))
	require.Equal(t, 2, s.Count("post-a"))
	require.True(t, s.Has("post-b", "user-2"))
}
