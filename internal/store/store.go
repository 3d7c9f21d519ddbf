package store

import (
	"math/bits"
	"slices"
	"sync"

	"github.com/likesd/likesd/internal/gset"
)

// Like is one user's like of one post.
type Like struct {
	Post string
	User string
}

// Sink is told of every like that was new to this replica through Like.
// LikeAdded runs on the request path, after the shard lock is released: it
// must not block (queue and return).
type Sink interface {
	LikeAdded(Like)
}

type shard struct {
	// mu guards posts and buckets.
	mu    sync.RWMutex
	posts map[string]*gset.Set
	// buckets are the digests of this shard's run of Buckets: bucket b is
	// buckets[b-first]. See digest.go.
	buckets []gset.Summary
	first   int
	upper   *upperLevels // shared by every shard; see digest.go
}

// Store is the node's replica. The zero value is not usable: call New.
type Store struct {
	upper      *upperLevels
	shardShift uint // bucket >> shardShift is the shard
	shards     []shard
	sink       Sink
}

// New returns an empty store that reports local new likes to sink (nil for
// none).
func New(cfg Config, sink Sink) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	shardBits := bits.TrailingZeros(uint(cfg.Shards))
	s := &Store{
		upper:      newUpperLevels(),
		shardShift: uint(bucketBits - shardBits),
		shards:     make([]shard, cfg.Shards),
		sink:       sink,
	}
	perShard := Buckets / cfg.Shards
	for i := range s.shards {
		s.shards[i].posts = make(map[string]*gset.Set)
		s.shards[i].buckets = make([]gset.Summary, perShard)
		s.shards[i].first = i * perShard
		s.shards[i].upper = s.upper
	}
	return s, nil
}

// shardOf is the shard that owns post's bucket.
func (s *Store) shardOf(post string) *shard {
	return &s.shards[BucketOf(post)>>s.shardShift]
}

// Like records user's like of post. It reports whether the like was new to
// this replica and the post's count after it. A like that was new is handed
// to the Sink.
func (s *Store) Like(post, user string) (added bool, count int) {
	sh := s.shardOf(post)
	sh.mu.Lock()
	added, count = sh.addLocked(post, user)
	sh.mu.Unlock()
	if added && s.sink != nil {
		s.sink.LikeAdded(Like{Post: post, User: user})
	}
	return added, count
}

func (sh *shard) addLocked(post, user string) (added bool, count int) {
	set, ok := sh.posts[post]
	if !ok {
		set = &gset.Set{}
		sh.posts[post] = set
	}
	before := set.Summary()
	added = set.Add(user)
	if added {
		sh.rebucketLocked(post, before, set.Summary())
	}
	return added, set.Len()
}

// Count returns how many users liked post (0 for a post never liked).
func (s *Store) Count(post string) int {
	sh := s.shardOf(post)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if set, ok := sh.posts[post]; ok {
		return set.Len()
	}
	return 0
}

// Counts returns the count of each post in posts, one lock per shard touched.
func (s *Store) Counts(posts []string) map[string]int {
	out := make(map[string]int, len(posts))
	s.groupByShard(len(posts), func(i int) string { return posts[i] }, func(sh *shard, idx []int) {
		sh.mu.RLock()
		for _, i := range idx {
			n := 0
			if set, ok := sh.posts[posts[i]]; ok {
				n = set.Len()
			}
			out[posts[i]] = n
		}
		sh.mu.RUnlock()
	})
	return out
}

// Has reports whether user liked post.
func (s *Store) Has(post, user string) bool {
	sh := s.shardOf(post)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	set, ok := sh.posts[post]
	return ok && set.Has(user)
}

// Likers returns up to limit users who liked post strictly after the cursor
// after, in byte order, with the post's count and whether more users follow.
func (s *Store) Likers(post, after string, limit int) (users []string, count int, more bool) {
	sh := s.shardOf(post)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	set, ok := sh.posts[post]
	if !ok {
		return []string{}, 0, false
	}
	users, more = set.Page(after, limit)
	return users, set.Len(), more
}

// Merge applies likes that came from another replica and returns those that
// were new here, in the order given. It does not call the Sink: what to pass
// on is the caller's decision.
func (s *Store) Merge(likes []Like) []Like {
	var added []Like
	var addedIdx []int
	s.groupByShard(len(likes), func(i int) string { return likes[i].Post }, func(sh *shard, idx []int) {
		sh.mu.Lock()
		for _, i := range idx {
			if ok, _ := sh.addLocked(likes[i].Post, likes[i].User); ok {
				addedIdx = append(addedIdx, i)
			}
		}
		sh.mu.Unlock()
	})
	slices.Sort(addedIdx)
	for _, i := range addedIdx {
		added = append(added, likes[i])
	}
	return added
}

// MergeSet merges a whole remote set of post's likers and returns the users
// that were new here.
func (s *Store) MergeSet(post string, users gset.Set) []string {
	sh := s.shardOf(post)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	set, ok := sh.posts[post]
	if !ok {
		if users.Len() == 0 {
			return nil
		}
		set = &gset.Set{}
		sh.posts[post] = set
	}
	before := set.Summary()
	added := set.Merge(users)
	if len(added) > 0 {
		sh.rebucketLocked(post, before, set.Summary())
	}
	return added
}

// Snapshot calls fn with a copy of every post's set, one shard at a time.
// The copies are O(1) (copy-on-write) and taken under the shard lock, so fn
// runs without holding any lock and may be slow. It stops early when fn
// returns false.
func (s *Store) Snapshot(fn func(post string, users gset.Set) bool) {
	type entry struct {
		post  string
		users gset.Set
	}
	var batch []entry
	for i := range s.shards {
		sh := &s.shards[i]
		batch = batch[:0]
		// Clone updates the tree's copy-on-write bookkeeping: exclusive lock.
		sh.mu.Lock()
		for post, set := range sh.posts {
			batch = append(batch, entry{post, set.Clone()})
		}
		sh.mu.Unlock()
		for _, e := range batch {
			if !fn(e.post, e.users) {
				return
			}
		}
	}
}

// Stats summarises the replica.
type Stats struct {
	Posts int
	Likes int
}

// Stats counts posts and likes, one shard at a time (not an atomic view).
func (s *Store) Stats() Stats {
	var st Stats
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		st.Posts += len(sh.posts)
		for _, set := range sh.posts {
			st.Likes += set.Len()
		}
		sh.mu.RUnlock()
	}
	return st
}

// groupByShard calls fn once per shard touched by n keys, with the indexes
// of the keys in that shard, so a batch takes each shard lock once.
func (s *Store) groupByShard(n int, key func(int) string, fn func(sh *shard, idx []int)) {
	if n == 0 {
		return
	}
	byShard := make(map[int][]int)
	for i := 0; i < n; i++ {
		h := BucketOf(key(i)) >> s.shardShift
		byShard[h] = append(byShard[h], i)
	}
	for h, idx := range byShard {
		fn(&s.shards[h], idx)
	}
}
