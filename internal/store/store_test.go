package store

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(DefaultConfig())
	require.NoError(t, err)
	return s
}

func TestConfigValidate(t *testing.T) {
	for _, n := range []int{0, -1, 3, 1 << 17} {
		assert.ErrorIs(t, Config{Shards: n}.Validate(), ErrConfig, "shards %d", n)
	}
	for _, n := range []int{1, 2, 256, 1 << 16} {
		assert.NoError(t, Config{Shards: n}.Validate(), "shards %d", n)
	}
	_, err := New(Config{Shards: 3})
	assert.ErrorIs(t, err, ErrConfig)
}

func TestLikeCountsOncePerUser(t *testing.T) {
	s := newStore(t)
	added, n := s.Like("p1", "alice")
	assert.True(t, added)
	assert.Equal(t, 1, n)
	added, n = s.Like("p1", "alice")
	assert.False(t, added, "a retried like is not new")
	assert.Equal(t, 1, n)
	added, n = s.Like("p1", "bob")
	assert.True(t, added)
	assert.Equal(t, 2, n)

	assert.Equal(t, 2, s.Count("p1"))
	assert.Equal(t, 0, s.Count("never"))
	assert.True(t, s.Has("p1", "alice"))
	assert.False(t, s.Has("p1", "carol"))
	assert.False(t, s.Has("never", "alice"))
}

func TestCountsBatch(t *testing.T) {
	s := newStore(t)
	s.Like("a", "u1")
	s.Like("a", "u2")
	s.Like("b", "u1")
	assert.Equal(t, map[string]int{"a": 2, "b": 1, "c": 0}, s.Counts([]string{"a", "b", "c", "a"}))
	assert.Empty(t, s.Counts(nil))
}

func TestLikersPages(t *testing.T) {
	s := newStore(t)
	for _, u := range []string{"dave", "alice", "carol", "bob"} {
		s.Like("p", u)
	}
	users, count, more := s.Likers("p", "", 2)
	assert.Equal(t, []string{"alice", "bob"}, users)
	assert.Equal(t, 4, count)
	assert.True(t, more)
	users, count, more = s.Likers("p", "bob", 2)
	assert.Equal(t, []string{"carol", "dave"}, users)
	assert.Equal(t, 4, count)
	assert.False(t, more)
	users, count, more = s.Likers("none", "", 10)
	assert.Equal(t, []string{}, users)
	assert.Zero(t, count)
	assert.False(t, more)
}

func TestMergeReturnsNew(t *testing.T) {
	s := newStore(t)
	s.Like("p1", "alice")
	got := s.Merge([]Like{{"p1", "alice"}, {"p1", "bob"}, {"p2", "alice"}, {"p1", "bob"}})
	assert.Equal(t, []Like{{"p1", "bob"}, {"p2", "alice"}}, got)
	assert.Equal(t, 2, s.Count("p1"))
	assert.Empty(t, s.Merge(nil))
}

func TestSnapshotIsACopy(t *testing.T) {
	s := newStore(t)
	s.Like("p1", "a")
	s.Like("p2", "b")
	got := map[string][]string{}
	s.Snapshot(func(post string, users gset.Set) bool {
		users.Add("mutated") // must not reach the store
		got[post] = users.Members()
		return true
	})
	assert.Equal(t, map[string][]string{"p1": {"a", "mutated"}, "p2": {"b", "mutated"}}, got)
	assert.Equal(t, 1, s.Count("p1"))

	visits := 0
	s.Snapshot(func(string, gset.Set) bool { visits++; return false })
	assert.Equal(t, 1, visits, "returning false stops the walk")
}

// Many goroutines like the same hot post and many cold posts at once, some
// retrying; every count must be exact and every like reported new (by Like
// or Merge) exactly once: what the caller hands on to the cluster.
func TestConcurrentLikesAreExact(t *testing.T) {
	s := newStore(t)
	const workers, users, posts = 8, 300, 50
	var mu sync.Mutex
	reported := map[Like]int{}
	report := func(l Like) { mu.Lock(); reported[l]++; mu.Unlock() }
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := 0; u < users; u++ {
				user := fmt.Sprintf("u%d", u)
				if added, _ := s.Like("hot", user); added { // every worker retries every user
					report(Like{"hot", user})
				}
				cold := Like{fmt.Sprintf("cold%d", (u+w)%posts), fmt.Sprintf("w%d-%s", w, user)}
				if added, _ := s.Like(cold.Post, cold.User); added {
					report(cold)
				}
				if u%10 == 0 {
					for _, l := range s.Merge([]Like{{"hot", user}, {"merged", user}}) {
						report(l)
					}
				}
				_ = s.Count("hot")
				_, _, _ = s.Likers("hot", "", 5)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, users, s.Count("hot"))
	assert.Equal(t, users/10, s.Count("merged"))
	total := 0
	for p := 0; p < posts; p++ {
		total += s.Count(fmt.Sprintf("cold%d", p))
	}
	assert.Equal(t, workers*users, total)
	for l, n := range reported {
		require.Equal(t, 1, n, "like %v reported new %d times", l, n)
	}
	assert.Len(t, reported, users+users/10+workers*users, "every like reported new once")
}
