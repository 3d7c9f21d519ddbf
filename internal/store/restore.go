package store

import (
	"cmp"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// restoreParallelMin is the batch below which RestoreLikes runs on the
// calling goroutine alone: starting workers costs more than it saves.
const restoreParallelMin = 1 << 14

// RestoreLikes adds a batch of recovered likes without journaling them, as
// RestoreLike would one by one (the result is the same: likes are a union),
// but several times faster on a long batch: the likes are grouped by shard
// and, within a shard, by post, so each post is looked up, summarised and
// re-bucketed once per batch rather than once per like, with its shard's
// posts still in the cache; shards are split among GOMAXPROCS goroutines,
// which the call waits for. Recovery calls it with a segment's records.
//
// The strings in likes may share one large buffer: the store keeps copies
// of what it keeps (a new post's id; members are copied into the sets), so
// the batch and its buffer can be dropped once the call returns. likes is
// not changed.
func (s *Store) RestoreLikes(likes []Like) {
	if len(likes) == 0 {
		return
	}
	// Route: a counting sort of the likes by bucket, which orders them by
	// shard too (a shard is a run of buckets) and keeps the batch's order
	// within a bucket.
	hashes := make([]uint64, len(likes))
	starts := make([]int32, Buckets+1) // bucket b's likes are items[starts[b]:starts[b+1]]
	for i, l := range likes {
		h := PostHash(l.Post)
		hashes[i] = h
		starts[h>>(64-bucketBits)+1]++
	}
	for b := 1; b < len(starts); b++ {
		starts[b] += starts[b-1]
	}
	items := make([]routed, len(likes))
	next := slices.Clone(starts[:Buckets])
	for i, h := range hashes {
		b := h >> (64 - bucketBits)
		items[next[b]] = routed{h, i}
		next[b]++
	}

	perShard := 1 << s.shardShift // buckets
	apply := func(from, to int) { // shards [from, to)
		for h := from; h < to; h++ {
			lo, hi := int(starts[h*perShard]), int(starts[(h+1)*perShard])
			if lo == hi {
				continue
			}
			sh := &s.shards[h]
			sh.mu.Lock()
			for b := h * perShard; b < (h+1)*perShard; b++ {
				part := items[starts[b]:starts[b+1]]
				// A bucket holds a few posts: by hash, the batch's order
				// kept within a post. Two ids of one hash (never seen, but
				// not impossible) may interleave: a run ends where the id
				// changes, so each gets only its own likes.
				slices.SortFunc(part, func(a, b routed) int {
					return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.i, b.i))
				})
				for j := 0; j < len(part); {
					post := likes[part[j].i].Post
					k := j + 1
					for k < len(part) && part[k].hash == part[j].hash && likes[part[k].i].Post == post {
						k++
					}
					sh.restoreLocked(post, likes, part[j:k])
					j = k
				}
			}
			sh.mu.Unlock()
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(s.shards))
	if workers <= 1 || len(likes) < restoreParallelMin {
		apply(0, len(s.shards))
		return
	}
	// Contiguous runs of shards holding about as many likes each.
	var wg sync.WaitGroup
	from := 0
	for w := 0; w < workers && from < len(s.shards); w++ {
		to := from + 1
		if w == workers-1 {
			to = len(s.shards)
		} else {
			goal := len(likes) * (w + 1) / workers
			for to < len(s.shards) && int(starts[to*perShard]) < goal {
				to++
			}
		}
		wg.Add(1)
		go func(from, to int) {
			defer wg.Done()
			apply(from, to)
		}(from, to)
		from = to
	}
	wg.Wait()
}

// routed is a like of a RestoreLikes batch: its post's hash, its index.
type routed struct {
	hash uint64
	i    int
}

// restoreLocked adds the likes of post that run names without journaling
// them, and re-buckets the post once.
func (sh *shard) restoreLocked(post string, likes []Like, run []routed) {
	set, ok := sh.posts[post]
	if !ok {
		set = &postSet{}
		sh.posts[strings.Clone(post)] = set
	}
	before := set.summary()
	for _, r := range run {
		if u := likes[r.i].User; set.Add(u) {
			set.digest += sh.key.Hash(u)
		}
	}
	if after := set.summary(); after != before {
		sh.rebucketLocked(post, before, after)
	}
}
