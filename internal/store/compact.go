package store

import (
	"cmp"
	"context"
	"slices"
)

// compactPause is the least Compact copies between two calls of pause; on
// a replica over 256 MiB it copies a 32nd of it between two, so a large
// replica is not collected hundreds of times. compactUnlocked is the set size
// (bytes of blocks) from which a set is copied with no lock held, from an
// O(1) Clone, so a huge post's copy does not stop its shard's writers.
const (
	compactPause    = 8 << 20
	compactUnlocked = 256 << 10
)

// Compact rewrites every set into memory of its own (gset.Set.Compacted)
// and returns how many sets it rewrote and the bytes of blocks it copied.
// After a burst of adds the heap holds the live blocks scattered over
// part-used spans of every size class they grew through; once the old
// copies are collected, the new ones fill few spans and the rest can go
// back to the OS.
//
// A span is freed only once every block in it has moved, so the sets are
// rewritten in the order of their lowest block's address: the spans empty
// from the bottom up, and pause (when not nil), called after every
// max(8 MiB, 1/32 of the replica) copied, lets the caller collect them for
// the copies that follow to reuse. In map order nearly the whole replica
// would be held twice before the first span emptied. A writer waits for at
// most one small set's copy (see compact). Compact stops early when ctx
// ends; posts added meanwhile are left as they are.
func (s *Store) Compact(ctx context.Context, pause func()) (sets int, copied uint64) {
	type entry struct {
		post  string
		shard int
		low   uintptr
	}
	var order []entry
	var total uint64
	for i := range s.shards {
		if ctx.Err() != nil {
			return 0, 0
		}
		sh := &s.shards[i]
		sh.mu.RLock()
		for p, set := range sh.posts {
			order = append(order, entry{p, i, set.LowestBlock()})
			total += uint64(set.Bytes())
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(order, func(a, b entry) int { return cmp.Compare(a.low, b.low) })
	every := max(compactPause, total/32)
	var sincePause uint64
	for _, e := range order {
		if ctx.Err() != nil {
			break
		}
		n := s.shards[e.shard].compact(e.post)
		if n == 0 { // not held: nothing copied
			continue
		}
		sets, copied, sincePause = sets+1, copied+uint64(n), sincePause+uint64(n)
		if pause != nil && sincePause >= every {
			pause()
			sincePause = 0
		}
	}
	return sets, copied
}

// compact rewrites post's set and returns the bytes of blocks it copied (0
// for a post it does not hold). A small set is copied under the write lock.
// A large one is cloned (O(1)) under it, copied with no lock held, and
// swapped in if no add came meanwhile (the copy then holds every member:
// the set only grows, and posts are never removed), else copied again
// under the write lock: a post always being written is still compacted.
func (sh *shard) compact(post string) int {
	sh.mu.Lock()
	set, ok := sh.posts[post]
	if !ok {
		sh.mu.Unlock()
		return 0
	}
	if size := set.Bytes(); size < compactUnlocked {
		set.Set = set.Compacted()
		sh.mu.Unlock()
		return size
	}
	snap := set.Clone()
	sh.mu.Unlock()
	c := snap.Compacted()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if set.Len() != c.Len() {
		c = set.Compacted()
	}
	set.Set = c
	return c.Bytes()
}
