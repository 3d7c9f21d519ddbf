package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// Compact moves every set, keeps every like, count and digest, also while
// writers go on, pauses every few MiB copied, and stops when its context
// ends.
func TestCompactKeepsEverythingWhileWritesGoOn(t *testing.T) {
	s := newStore(t)
	id := func(p, u int) (string, string) { // ~45-byte ids: hard to compress
		return fmt.Sprintf("p%d", p), fmt.Sprintf("user-%08d-%016x%016x", u, uint64(u)*0x9e3779b97f4a7c15, uint64(u)*0xbf58476d1ce4e5b9)
	}
	const posts, per = 2000, 150 // 300k likes, ~12 MiB of blocks: at least one pause
	for u := 0; u < per; u++ {
		for p := 0; p < posts; p++ {
			s.Like(id(p, u))
		}
	}
	before := s.BucketsSummary(0, Buckets)
	low := map[string]uintptr{}
	bytes := 0
	for i := range s.shards {
		for p, set := range s.shards[i].posts {
			low[p] = set.LowestBlock()
			bytes += set.Bytes()
		}
	}
	pauses := 0
	sets, copied := s.Compact(context.Background(), func() { pauses++ })
	require.Equal(t, posts, sets)
	require.Equal(t, uint64(bytes), copied)
	require.GreaterOrEqual(t, pauses, bytes/compactPause)
	for i := range s.shards {
		for p, set := range s.shards[i].posts {
			require.NotEqual(t, low[p], set.LowestBlock(), "every set moved")
		}
	}
	require.Equal(t, before, s.BucketsSummary(0, Buckets), "the digests do not change")
	for p := 0; p < posts; p++ {
		for u := 0; u < per; u++ {
			require.True(t, s.Has(id(p, u)))
		}
	}

	// Again, with a writer adding to the sets being rewritten.
	ctx, cancel := context.WithCancel(context.Background())
	var later []Like
	wrote, writing := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(wrote)
		for i := 0; ctx.Err() == nil || i < 1000; i++ {
			p, u := id(i%posts, per+i)
			s.Like(p, u)
			later = append(later, Like{p, u})
			if i == 0 {
				close(writing)
			}
		}
	}()
	<-writing
	sets, _ = s.Compact(context.Background(), nil)
	require.Equal(t, posts, sets)
	cancel()
	<-wrote
	for _, l := range later {
		require.True(t, s.Has(l.Post, l.User))
	}
	require.Equal(t, posts*per+len(later), s.Stats().Likes)

	ended, end := context.WithCancel(context.Background())
	end()
	sets, copied = s.Compact(ended, nil)
	require.Zero(t, sets, "an ended context stops it before the first set")
	require.Zero(t, copied)
}

// A set large enough to be copied with no lock held is swapped in only if
// no add came meanwhile, else copied again under the write lock: adds
// racing its compactions are all kept, and it is compacted all the same.
func TestCompactOfALargeSetKeepsAddsThatRaceIt(t *testing.T) {
	s := newStore(t)
	user := func(u int) string { return fmt.Sprintf("user-%08d-%016x", u, uint64(u)*0x9e3779b97f4a7c15) }
	for u := 0; u < 60_000; u++ { // ~500 KiB of blocks: over compactUnlocked
		s.Like("big", user(u))
	}
	sh := s.shardOf("big")
	require.GreaterOrEqual(t, sh.posts["big"].Bytes(), compactUnlocked)
	done := make(chan struct{})
	swapped := 0
	go func() {
		defer close(done)
		for i := 0; i < 20; i++ {
			if sh.compact("big") >= compactUnlocked {
				swapped++
			}
		}
	}()
	for u := 60_000; u < 62_000; u++ {
		s.Like("big", user(u))
	}
	<-done
	require.Equal(t, 20, swapped)
	require.Equal(t, 62_000, s.Count("big"))
	for u := 0; u < 62_000; u++ {
		require.True(t, s.Has("big", user(u)))
	}
}
