package dropq

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func drain[T any](q *Queue[T]) []T {
	var got []T
	for q.Len() > 0 {
		got = append(got, <-q.C())
	}
	return got
}

func TestOfferDropsTheNewestAndCountsIt(t *testing.T) {
	q := New[int](3, nil)
	for i := 1; i <= 5; i++ {
		want := i <= 3
		require.Equal(t, want, q.Offer(i), "offer %d", i)
	}
	assert.Equal(t, uint64(2), q.Dropped())
	assert.Equal(t, []int{1, 2, 3}, drain(q), "the first ones stay, in order")
}

func TestPushDropsTheOldestAndCountsIt(t *testing.T) {
	q := New[int](3, nil)
	got := 0
	for i := 1; i <= 5; i++ {
		got += q.Push(i)
	}
	assert.Equal(t, 2, got)
	assert.Equal(t, uint64(2), q.Dropped())
	assert.Equal(t, []int{3, 4, 5}, drain(q), "the last ones stay, in order")
}

func TestQueuesShareACounter(t *testing.T) {
	var dropped atomic.Uint64
	a, b := New[string](1, &dropped), New[string](1, &dropped)
	a.Offer("x")
	a.Offer("y")
	b.Push("x")
	b.Push("y")
	assert.Equal(t, uint64(2), dropped.Load())
	assert.Equal(t, uint64(2), a.Dropped())
}

func TestZeroCapacityHoldsOne(t *testing.T) {
	q := New[int](0, nil)
	assert.True(t, q.Offer(1), "a capacity under 1 is 1: a queue that holds nothing drops everything")
	assert.False(t, q.Offer(2))
}

// Senders never block, whatever the receiver does, and every item is
// either received or counted dropped, once.
func TestEveryItemIsReceivedOrCountedDropped(t *testing.T) {
	for _, push := range []bool{false, true} {
		q := New[int](8, nil)
		const senders, each = 4, 2000
		var received atomic.Uint64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range q.C() {
				received.Add(1)
			}
		}()
		var wg sync.WaitGroup
		for s := 0; s < senders; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if push {
						q.Push(i)
					} else {
						q.Offer(i)
					}
				}
			}()
		}
		wg.Wait()
		q.Close()
		<-done
		assert.Equal(t, uint64(senders*each), received.Load()+q.Dropped(), "push=%v", push)
	}
}
