// Package dropq owns the one bounded queue likesd hands work through
// without blocking the side that fills it: memberlist's callbacks, the
// write path, a sync session's sends. When the queue is full, something is
// dropped and counted, never waited for; what is dropped is left to be
// repaired (anti-entropy) or to time out, as the owner documents.
//
// A Queue is a buffered channel with the drop decided in one place: Offer
// drops the new item (the receiver sees what came first), Push drops the
// oldest ones (the receiver sees what came last). The receiver reads C() in
// its own select, beside its other events.
package dropq

import "sync/atomic"

// Queue is a FIFO of at most its capacity, safe for any number of senders
// and receivers. The zero value is not usable: call New.
type Queue[T any] struct {
	ch      chan T
	dropped *atomic.Uint64
}

// New returns an empty queue of capacity items (at least 1) that counts
// what it drops in dropped; nil gives it a counter of its own. Queues may
// share a counter (one statistic for several queues).
func New[T any](capacity int, dropped *atomic.Uint64) *Queue[T] {
	if dropped == nil {
		dropped = new(atomic.Uint64)
	}
	return &Queue[T]{ch: make(chan T, max(capacity, 1)), dropped: dropped}
}

// Offer puts v at the back of the queue and reports true, or, when the
// queue is full, drops v, counts it and reports false. It never blocks.
func (q *Queue[T]) Offer(v T) bool {
	select {
	case q.ch <- v:
		return true
	default:
		q.dropped.Add(1)
		return false
	}
}

// Push puts v at the back of the queue, first dropping and counting the
// oldest items while the queue is full, and returns how many it dropped.
// It never blocks on the receiver. Push must not race with Close.
func (q *Queue[T]) Push(v T) (dropped int) {
	for {
		select {
		case q.ch <- v:
			return dropped
		default:
		}
		select {
		case <-q.ch:
			q.dropped.Add(1)
			dropped++
		default: // a receiver took one meanwhile: there is room now
		}
	}
}

// C is the receiving end.
func (q *Queue[T]) C() <-chan T { return q.ch }

// Len is how many items wait.
func (q *Queue[T]) Len() int { return len(q.ch) }

// Dropped is the count of the queue's counter (with any queue sharing it).
func (q *Queue[T]) Dropped() uint64 { return q.dropped.Load() }

// Close tells receivers no more items come, once they have the ones
// waiting. Offer and Push must not be called after it.
func (q *Queue[T]) Close() { close(q.ch) }
