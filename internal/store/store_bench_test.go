package store

import (
	"fmt"
	"strconv"
	"testing"
)

type discard struct{}

func (discard) LikeAdded(Like) {}

// BenchmarkLikeNew: the hot path of a first like, spread over many posts,
// with a sink that returns at once (the cluster's appends to its log).
func BenchmarkLikeNew(b *testing.B) {
	s, _ := New(DefaultConfig(), discard{})
	posts := make([]string, 10000)
	for i := range posts {
		posts[i] = "post-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		id := fmt.Sprintf("%p", &i)
		for pb.Next() {
			s.Like(posts[i%len(posts)], id+strconv.Itoa(i))
			i++
		}
	})
}

// BenchmarkLikeHotPost: every goroutine likes one post (a viral post): the
// worst case for the sharded lock.
func BenchmarkLikeHotPost(b *testing.B) {
	s, _ := New(DefaultConfig(), discard{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		id := fmt.Sprintf("%p", &i)
		for pb.Next() {
			s.Like("viral", id+strconv.Itoa(i))
			i++
		}
	})
}

// BenchmarkLikeRepeat: a retried like (already there): a read of the set.
func BenchmarkLikeRepeat(b *testing.B) {
	s, _ := New(DefaultConfig(), discard{})
	s.Like("p", "alice")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Like("p", "alice")
		}
	})
}

// BenchmarkMerge: applying a gossip frame's worth (110 likes) of new likes.
func BenchmarkMerge(b *testing.B) {
	s, _ := New(DefaultConfig(), nil)
	batch := make([]Like, 110)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			batch[j] = Like{Post: "post-" + strconv.Itoa(j%50), User: strconv.Itoa(i*len(batch) + j)}
		}
		s.Merge(batch)
	}
}

func BenchmarkCount(b *testing.B) {
	s, _ := New(DefaultConfig(), nil)
	for i := 0; i < 1000; i++ {
		s.Like("p", strconv.Itoa(i))
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = s.Count("p")
		}
	})
}
