package store

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/likesd/likesd/internal/benchcpu"
	"github.com/likesd/likesd/internal/gset"
)

// BenchmarkLikeNew: the hot path of a first like, spread over many posts.
func BenchmarkLikeNew(b *testing.B) {
	s, _ := New(DefaultConfig())
	likeNewUsers(b, benchPosts(), s.Like)
}

// benchPosts are the 10,000 posts the like benchmarks spread over.
func benchPosts() []string {
	posts := make([]string, 10000)
	for i := range posts {
		posts[i] = "post-" + strconv.Itoa(i)
	}
	return posts
}

// likeNewUsers has every goroutine like posts in turn as users never seen
// before, reporting allocations and CPU time per like.
func likeNewUsers(b *testing.B, posts []string, like func(post, user string) (bool, int)) {
	b.ReportAllocs()
	benchcpu.Report(b, func() {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			id := fmt.Sprintf("%p", &i)
			for pb.Next() {
				like(posts[i%len(posts)], id+strconv.Itoa(i))
				i++
			}
		})
	})
}

// likeBefore is Like as it was before WaitHas: the baseline of
// BenchmarkLikeWaiters, measured in the same run.
func (s *Store) likeBefore(post, user string) (added bool, count int) {
	sh := s.shardOf(post)
	sh.mu.Lock()
	added, count = sh.addLocked(post, user)
	sh.mu.Unlock()
	return added, count
}

// BenchmarkLikeWaiters: what WaitHas costs a first like. before is Like
// without the waiter check, none is Like with nobody waiting (the common
// case: it should match before), elsewhere is Like while 1024 reads wait on
// likes that never come, spread over every shard (one map lookup per add).
func BenchmarkLikeWaiters(b *testing.B) {
	posts := benchPosts()
	b.Run("before", func(b *testing.B) {
		s, _ := New(DefaultConfig())
		likeNewUsers(b, posts, s.likeBefore)
	})
	b.Run("none", func(b *testing.B) {
		s, _ := New(DefaultConfig())
		likeNewUsers(b, posts, s.Like)
	})
	b.Run("elsewhere", func(b *testing.B) {
		s, _ := New(DefaultConfig())
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i := 0; i < 1024; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.WaitHas(ctx, posts[i%len(posts)], "never")
			}()
		}
		for s.waitingCalls() < 1024 {
			runtime.Gosched()
		}
		likeNewUsers(b, posts, s.Like)
		b.StopTimer()
		cancel()
		wg.Wait()
	})
}

// BenchmarkLikeHotPost: every goroutine likes one post (a viral post): the
// worst case for the sharded lock.
func BenchmarkLikeHotPost(b *testing.B) {
	s, _ := New(DefaultConfig())
	b.ReportAllocs()
	benchcpu.Report(b, func() {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			id := fmt.Sprintf("%p", &i)
			for pb.Next() {
				s.Like("viral", id+strconv.Itoa(i))
				i++
			}
		})
	})
}

// BenchmarkLikeRepeat: a retried like (already there): a read of the set.
func BenchmarkLikeRepeat(b *testing.B) {
	s, _ := New(DefaultConfig())
	s.Like("p", "alice")
	b.ReportAllocs()
	benchcpu.Report(b, func() {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.Like("p", "alice")
			}
		})
	})
}

// BenchmarkMerge: applying a gossip frame's worth (110 likes) of new likes.
func BenchmarkMerge(b *testing.B) {
	s, _ := New(DefaultConfig())
	batch := make([]Like, 110)
	b.ReportAllocs()
	benchcpu.Report(b, func() {
		for i := 0; i < b.N; i++ {
			for j := range batch {
				batch[j] = Like{Post: "post-" + strconv.Itoa(j%50), User: strconv.Itoa(i*len(batch) + j)}
			}
			s.Merge(batch)
		}
	})
}

func BenchmarkCount(b *testing.B) {
	s, _ := New(DefaultConfig())
	for i := 0; i < 1000; i++ {
		s.Like("p", strconv.Itoa(i))
	}
	benchcpu.Report(b, func() {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = s.Count("p")
			}
		})
	})
}

// millionLikers builds a store with one post of 1M likers ("u0000000".."u0999999").
func millionLikers(b *testing.B) *Store {
	b.Helper()
	s, _ := New(DefaultConfig())
	batch := make([]Like, 0, 10000)
	for i := 0; i < 1_000_000; i++ {
		batch = append(batch, Like{Post: "big", User: fmt.Sprintf("u%07d", i)})
		if len(batch) == cap(batch) {
			s.Merge(batch)
			batch = batch[:0]
		}
	}
	return s
}

// BenchmarkHas1M: has on a post of 1M likers.
func BenchmarkHas1M(b *testing.B) {
	s := millionLikers(b)
	b.ReportAllocs()
	benchcpu.Report(b, func() {
		for i := 0; i < b.N; i++ {
			if !s.Has("big", fmt.Sprintf("u%07d", (i*7919)%1_000_000)) {
				b.Fatal("missing")
			}
		}
	})
}

// BenchmarkLikers1M: a page of 100 likers from a cursor on a post of 1M.
func BenchmarkLikers1M(b *testing.B) {
	s := millionLikers(b)
	b.ReportAllocs()
	benchcpu.Report(b, func() {
		for i := 0; i < b.N; i++ {
			s.Likers("big", fmt.Sprintf("u%07d", (i*7919)%1_000_000), 100)
		}
	})
}

// BenchmarkSnapshot1M: walking a snapshot of 100 posts × 10,000 likers and
// writing every set in block form, as the wal's snapshot does.
func BenchmarkSnapshot1M(b *testing.B) {
	s, _ := New(DefaultConfig())
	for p := 0; p < 100; p++ {
		batch := make([]Like, 0, 10000)
		for u := 0; u < 10000; u++ {
			batch = append(batch, Like{Post: "p" + strconv.Itoa(p), User: fmt.Sprintf("u%07d", (u*7919+p)%10_000_000)})
		}
		s.Merge(batch)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var buf []byte
	benchcpu.Report(b, func() {
		for i := 0; i < b.N; i++ {
			s.Snapshot(func(post string, users gset.Set) bool {
				buf = users.AppendBlocks(buf[:0])
				return true
			})
		}
	})
}

// BenchmarkRekey1M: recomputing every digest of 1M likes (10,000 posts ×
// 100 likers of 8-byte ids) under a new key, as a node does when the
// cluster's primary key rotates.
func BenchmarkRekey1M(b *testing.B) {
	s, _ := New(DefaultConfig())
	for p := 0; p < 10000; p++ {
		batch := make([]Like, 0, 100)
		for u := 0; u < 100; u++ {
			batch = append(batch, Like{Post: "post-" + strconv.Itoa(p), User: fmt.Sprintf("u%07d", (u*7919+p*31)%10_000_000)})
		}
		s.Merge(batch)
	}
	keys := []gset.Key{gset.DeriveKey([]byte("one")), gset.DeriveKey([]byte("two"))}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Rekey(keys[i%2])
	}
}
