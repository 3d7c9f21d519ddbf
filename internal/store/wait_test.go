package store

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitingFor is how many WaitHas calls wait for post's like by user.
func (s *Store) waitingFor(post, user string) int {
	sh := s.shardOf(post)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if w, ok := sh.waiting[Like{Post: post, User: user}]; ok {
		return w.n
	}
	return 0
}

// waiters is how many likes are waited for, over every shard.
func (s *Store) waiters() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.waiting)
		sh.mu.RUnlock()
	}
	return n
}

// waitingCalls is how many WaitHas calls wait, over every shard.
func (s *Store) waitingCalls() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for _, w := range sh.waiting {
			n += w.n
		}
		sh.mu.RUnlock()
	}
	return n
}

// waitAsync starts WaitHas in a goroutine and returns its answer's channel,
// once the call is registered (so what releases it is the add, not the
// first look).
func waitAsync(t *testing.T, s *Store, ctx context.Context, post, user string) <-chan bool {
	t.Helper()
	before := s.waitingFor(post, user)
	got := make(chan bool, 1)
	go func() { got <- s.WaitHas(ctx, post, user) }()
	require.Eventually(t, func() bool { return s.waitingFor(post, user) > before }, 5*time.Second, time.Millisecond)
	return got
}

func receive(t *testing.T, got <-chan bool) bool {
	t.Helper()
	select {
	case v := <-got:
		return v
	case <-time.After(10 * time.Second):
		require.FailNow(t, "WaitHas did not return")
		return false
	}
}

func TestWaitHasAtOnceWhenHeld(t *testing.T) {
	s := newStore(t)
	s.Like("p", "alice")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.True(t, s.WaitHas(ctx, "p", "alice"), "a like already held is true even with ctx over")
	assert.False(t, s.WaitHas(ctx, "p", "bob"), "a like not held with ctx over is false at once")
	assert.Zero(t, s.waiters())
}

func TestWaitHasReleasedByLike(t *testing.T) {
	s := newStore(t)
	got := waitAsync(t, s, context.Background(), "p", "alice")
	s.Like("p", "bob") // another user: still waiting
	s.Like("q", "alice")
	assert.Equal(t, 1, s.waitingFor("p", "alice"))
	s.Like("p", "alice")
	assert.True(t, receive(t, got))
	assert.Zero(t, s.waiters(), "nothing left behind")
}

func TestWaitHasReleasedByMerge(t *testing.T) {
	s := newStore(t)
	got := waitAsync(t, s, context.Background(), "p", "alice")
	go s.Merge([]Like{{Post: "q", User: "x"}, {Post: "p", User: "alice"}})
	assert.True(t, receive(t, got))
	assert.True(t, s.Has("p", "alice"))
	assert.Zero(t, s.waiters())
}

func TestWaitHasTimesOut(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	assert.False(t, s.WaitHas(ctx, "p", "alice"))
	assert.Zero(t, s.waiters(), "a wait that ends leaves nothing behind")

	// A cancelled wait among others on the same like leaves the others.
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := waitAsync(t, s, ctx1, "p", "alice")
	second := waitAsync(t, s, context.Background(), "p", "alice")
	cancel1()
	assert.False(t, receive(t, first))
	assert.Equal(t, 1, s.waitingFor("p", "alice"))
	s.Like("p", "alice")
	assert.True(t, receive(t, second))
	assert.Zero(t, s.waiters())
}

// Many waiters on many likes, some shared, released by concurrent merges
// and likes, while others give up: each answer is right and nothing is
// left.
func TestWaitHasManyConcurrent(t *testing.T) {
	s := newStore(t)
	const likes, perLike = 50, 8
	like := func(i int) Like { return Like{Post: "p" + strconv.Itoa(i%7), User: "u" + strconv.Itoa(i)} }

	var wg sync.WaitGroup
	results := make(chan bool, likes*perLike)
	short, cancelShort := context.WithCancel(context.Background())
	defer cancelShort()
	for i := 0; i < likes; i++ {
		for j := 0; j < perLike; j++ {
			ctx := context.Background()
			if j == 0 {
				ctx = short // gives up when cancelled, unless released first
			}
			wg.Add(1)
			go func(l Like, ctx context.Context) {
				defer wg.Done()
				ok := s.WaitHas(ctx, l.Post, l.User)
				if ok {
					assert.True(t, s.Has(l.Post, l.User), "true means held")
				} else {
					assert.Error(t, ctx.Err(), "false only when ctx ended")
				}
				results <- ok
			}(like(i), ctx)
		}
	}
	require.Eventually(t, func() bool { return s.waitingCalls() == likes*perLike }, 10*time.Second, time.Millisecond,
		"every call waits before any like arrives")
	assert.Equal(t, likes, s.waiters())
	// Release them both ways at once.
	var adders sync.WaitGroup
	for k := 0; k < 2; k++ {
		adders.Add(1)
		go func(k int) {
			defer adders.Done()
			for i := k; i < likes; i += 2 {
				l := like(i)
				if k == 0 {
					s.Like(l.Post, l.User)
				} else {
					s.Merge([]Like{l})
				}
				if i == likes/2 {
					cancelShort()
				}
			}
		}(k)
	}
	adders.Wait()
	wg.Wait()
	close(results)
	trues := 0
	for ok := range results {
		if ok {
			trues++
		}
	}
	assert.GreaterOrEqual(t, trues, likes*(perLike-1), "every waiter that did not give up was released")
	assert.Zero(t, s.waiters(), "nothing left behind")
}
