package store

import (
	"context"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/likesd/likesd/internal/gset"
)

// Like is one user's like of one post.
type Like struct {
	Post string
	User string
}

type shard struct {
	// mu guards key, posts, buckets and waiting.
	mu sync.RWMutex
	// key is what this shard's digests are computed under: every shard's
	// is the store's, but while Rekey runs (see there).
	key   gset.Key
	posts map[string]*postSet
	// buckets are the digests of this shard's run of Buckets: bucket b is
	// buckets[b-first]. See digest.go.
	buckets []gset.Summary
	first   int
	upper   *upperLevels // shared by every shard; see digest.go
	// waiting holds the likes WaitHas calls wait for, nil when none. See
	// WaitHas for why per like and under mu.
	waiting map[Like]*waiter
}

// postSet is one post's likers and their digest under the shard's key,
// kept in O(1) per add: gset.Set holds no digest (see its package doc).
type postSet struct {
	gset.Set
	digest uint64
}

func (p *postSet) summary() gset.Summary { return gset.Summary{Digest: p.digest, Count: p.Len()} }

// waiter is the WaitHas calls waiting for one like: they share ch, which
// the add of that like closes.
type waiter struct {
	ch chan struct{}
	n  int // calls still waiting; the entry goes when the last one gives up
}

// Journal logs every like that is new to the replica (internal/wal).
// Append is called under the like's shard lock, so a like anyone can see
// here is already in the journal: it must only buffer, never block.
type Journal interface {
	Append(post, user string)
	// WaitDurable waits until everything appended before the call is
	// durable, the journal fails, or ctx ends.
	WaitDurable(ctx context.Context) error
	// AfterDurable calls fn once everything appended before the call is
	// durable (fn must not block).
	AfterDurable(fn func())
	// Err is nil while the journal takes writes.
	Err() error
}

// Store is the node's replica. The zero value is not usable: call New.
type Store struct {
	// rekeyMu serialises Rekey calls.
	rekeyMu sync.Mutex
	// keyID is the ID of the key every shard's digests are under, 0 while
	// a Rekey runs: digests read then mix two keys and mean nothing.
	keyID atomic.Uint64

	upper      *upperLevels
	shardShift uint // bucket >> shardShift is the shard
	shards     []shard
	journal    Journal // nil: in memory only; set once, before use
}

// New returns an empty store. Its digests are under gset.PublicKey until
// Rekey.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	shardBits := bits.TrailingZeros(uint(cfg.Shards))
	s := &Store{
		upper:      newUpperLevels(),
		shardShift: uint(bucketBits - shardBits),
		shards:     make([]shard, cfg.Shards),
	}
	perShard := Buckets / cfg.Shards
	key := gset.PublicKey()
	s.keyID.Store(key.ID())
	for i := range s.shards {
		s.shards[i].key = key
		s.shards[i].posts = make(map[string]*postSet)
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
// this replica and the post's count after it: the caller hands that on to
// the cluster (internal/api calls cluster's Replicate with it).
func (s *Store) Like(post, user string) (added bool, count int) {
	sh := s.shardOf(post)
	sh.mu.Lock()
	added, count = sh.addLocked(post, user)
	if added {
		s.journalLocked(post, user)
		if len(sh.waiting) > 0 {
			sh.wakeLocked(post, user)
		}
	}
	sh.mu.Unlock()
	return added, count
}

func (sh *shard) addLocked(post, user string) (added bool, count int) {
	set, ok := sh.posts[post]
	if !ok {
		set = &postSet{}
		sh.posts[post] = set
	}
	before := set.summary()
	added = set.Add(user)
	if added {
		set.digest += sh.key.Hash(user)
		sh.rebucketLocked(post, before, set.summary())
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
// were new here, in the order given: what to pass on is the caller's
// decision.
func (s *Store) Merge(likes []Like) []Like {
	var added []Like
	var addedIdx []int
	s.groupByShard(len(likes), func(i int) string { return likes[i].Post }, func(sh *shard, idx []int) {
		sh.mu.Lock()
		for _, i := range idx {
			if ok, _ := sh.addLocked(likes[i].Post, likes[i].User); ok {
				s.journalLocked(likes[i].Post, likes[i].User)
				addedIdx = append(addedIdx, i)
				if len(sh.waiting) > 0 {
					sh.wakeLocked(likes[i].Post, likes[i].User)
				}
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

// SetJournal makes every like new to the replica from now on go to j.
// Call it once, after recovery and before the store is shared.
func (s *Store) SetJournal(j Journal) { s.journal = j }

// journalLocked logs a like just added; its shard's lock is held.
func (s *Store) journalLocked(post, user string) {
	if s.journal != nil {
		s.journal.Append(post, user)
	}
}

// WaitDurable waits until every like this replica held when it was called
// is durable (at once without a journal): see Journal.
func (s *Store) WaitDurable(ctx context.Context) error {
	if s.journal == nil {
		return nil
	}
	return s.journal.WaitDurable(ctx)
}

// AfterDurable calls fn once every like this replica holds now is durable
// (at once without a journal).
func (s *Store) AfterDurable(fn func()) {
	if s.journal == nil {
		fn()
		return
	}
	s.journal.AfterDurable(fn)
}

// Writable is nil while new likes can be made durable (always without a
// journal), else why not.
func (s *Store) Writable() error {
	if s.journal == nil {
		return nil
	}
	return s.journal.Err()
}

// RestoreSet merges a recovered set of post's likers without journaling
// it; the set is adopted as it is when the post is new here.
func (s *Store) RestoreSet(post string, users gset.Set) {
	if users.Len() == 0 {
		return
	}
	sh := s.shardOf(post)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	set, ok := sh.posts[post]
	if !ok {
		set = &postSet{Set: users, digest: users.Summary(sh.key).Digest}
		sh.posts[post] = set
		sh.rebucketLocked(post, gset.Summary{}, set.summary())
		return
	}
	before := set.summary()
	if added := set.Merge(users); len(added) > 0 {
		for _, u := range added {
			set.digest += sh.key.Hash(u)
		}
		sh.rebucketLocked(post, before, set.summary())
	}
}

// RestoreLike adds a recovered like without journaling it.
func (s *Store) RestoreLike(post, user string) {
	sh := s.shardOf(post)
	sh.mu.Lock()
	sh.addLocked(post, user)
	sh.mu.Unlock()
}

// WaitHas reports whether user liked post, waiting until this replica holds
// that like or ctx ends: true as soon as it is here (at once when it already
// is, even if ctx has ended), false when ctx ended first. The add that
// stores the like (Like or Merge) releases the wait: no polling,
// no goroutine, and nothing left behind when ctx ends.
//
// Waiters are kept per like, in the like's shard, under the lock the add
// already holds: with nobody waiting an add pays one len of a nil map (no
// atomic, no shared cache line), and a like wakes only its own waiters. A
// single broadcast channel would be simpler but wake every waiter on every
// like, and a busy node takes tens of thousands a second.
func (s *Store) WaitHas(ctx context.Context, post, user string) bool {
	if s.Has(post, user) {
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	sh := s.shardOf(post)
	key := Like{Post: post, User: user}
	sh.mu.Lock()
	if set, ok := sh.posts[post]; ok && set.Has(user) { // added since Has
		sh.mu.Unlock()
		return true
	}
	w := sh.waiting[key]
	if w == nil {
		if sh.waiting == nil {
			sh.waiting = make(map[Like]*waiter)
		}
		w = &waiter{ch: make(chan struct{})}
		sh.waiting[key] = w
	}
	w.n++
	sh.mu.Unlock()

	select {
	case <-w.ch:
		return true // wakeLocked removed the entry
	case <-ctx.Done():
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	select {
	case <-w.ch: // it arrived as ctx ended: the entry is gone already
		return true
	default:
	}
	if w.n--; w.n == 0 {
		sh.forgetLocked(key)
	}
	return false
}

// wakeLocked releases the waiters of a like just added. sh.mu is held for
// writing.
func (sh *shard) wakeLocked(post, user string) {
	key := Like{Post: post, User: user}
	if w, ok := sh.waiting[key]; ok {
		close(w.ch)
		sh.forgetLocked(key)
	}
}

// forgetLocked drops key's waiters; the map goes with the last of them, as
// Go maps never shrink and a burst of waiters would otherwise stay
// allocated.
func (sh *shard) forgetLocked(key Like) {
	delete(sh.waiting, key)
	if len(sh.waiting) == 0 {
		sh.waiting = nil
	}
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
