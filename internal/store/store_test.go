package store

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
)

// recordingSink counts what the store hands on.
type recordingSink struct {
	mu    sync.Mutex
	likes map[Like]int
}

func (r *recordingSink) LikeAdded(l Like) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.likes == nil {
		r.likes = map[Like]int{}
	}
	r.likes[l]++
}

func newStore(t *testing.T, sink Sink) *Store {
	t.Helper()
	s, err := New(DefaultConfig(), sink)
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
	_, err := New(Config{Shards: 3}, nil)
	assert.ErrorIs(t, err, ErrConfig)
}

func TestLikeCountsOncePerUser(t *testing.T) {
	sink := &recordingSink{}
	s := newStore(t, sink)
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
	assert.Equal(t, map[Like]int{{"p1", "alice"}: 1, {"p1", "bob"}: 1}, sink.likes)
}

func TestCountsBatch(t *testing.T) {
	s := newStore(t, nil)
	s.Like("a", "u1")
	s.Like("a", "u2")
	s.Like("b", "u1")
	assert.Equal(t, map[string]int{"a": 2, "b": 1, "c": 0}, s.Counts([]string{"a", "b", "c", "a"}))
	assert.Empty(t, s.Counts(nil))
}

func TestLikersPages(t *testing.T) {
	s := newStore(t, nil)
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

func TestMergeReturnsNewAndSkipsSink(t *testing.T) {
	sink := &recordingSink{}
	s := newStore(t, sink)
	s.Like("p1", "alice")
	got := s.Merge([]Like{{"p1", "alice"}, {"p1", "bob"}, {"p2", "alice"}, {"p1", "bob"}})
	assert.Equal(t, []Like{{"p1", "bob"}, {"p2", "alice"}}, got)
	assert.Equal(t, 2, s.Count("p1"))
	assert.Len(t, sink.likes, 1, "remote likes are not handed to the sink")
	assert.Empty(t, s.Merge(nil))
}

func TestSnapshotIsACopy(t *testing.T) {
	s := newStore(t, nil)
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
// retrying; every count must be exact and every like handed on exactly once.
func TestConcurrentLikesAreExact(t *testing.T) {
	sink := &recordingSink{}
	s := newStore(t, sink)
	const workers, users, posts = 8, 300, 50
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := 0; u < users; u++ {
				user := fmt.Sprintf("u%d", u)
				s.Like("hot", user) // every worker retries every user
				s.Like(fmt.Sprintf("cold%d", (u+w)%posts), fmt.Sprintf("w%d-%s", w, user))
				if u%10 == 0 {
					s.Merge([]Like{{"hot", user}, {"merged", user}})
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
	for l, n := range sink.likes {
		require.Equal(t, 1, n, "like %v handed on %d times", l, n)
	}
	// hot likes that arrived by Merge first are not local adds, so the sink
	// saw at most users of them.
	assert.LessOrEqual(t, len(sink.likes), users+workers*users)
}
