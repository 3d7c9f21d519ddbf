package main

import (
	"io"
	"sync"
)

// maxPendingLog bounds the log lines waiting for the writer: past it a
// logging goroutine waits, as it would on a slow pipe without batching.
const maxPendingLog = 1 << 20

// batchWriter writes log lines to out from one goroutine, every line that
// arrived during the previous write in one write: under load, one syscall
// for many access-log lines instead of one each (a request's log line cost
// a write(2) of its own, ~7 % of a node's CPU serving fresh likes). A line
// waits only for the write in progress; lines are written whole and in the
// order they came. What a crash loses is what waited for that one write.
type batchWriter struct {
	out  io.Writer
	wake chan struct{} // one pending signal for the writer goroutine
	done chan struct{} // closed when the writer goroutine has drained and stopped

	mu      sync.Mutex
	room    *sync.Cond // signalled when pending shrinks
	pending []byte
	closed  bool
}

func newBatchWriter(out io.Writer) *batchWriter {
	w := &batchWriter{out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.room = sync.NewCond(&w.mu)
	go w.run()
	return w
}

// Write queues p (one zerolog line) for the writer goroutine; after Close it
// writes p itself.
func (w *batchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	for len(w.pending) > 0 && len(w.pending)+len(p) > maxPendingLog && !w.closed {
		w.room.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		<-w.done // after the last batch, in order
		return w.out.Write(p)
	}
	w.pending = append(w.pending, p...)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *batchWriter) run() {
	defer close(w.done)
	var spare []byte
	for {
		<-w.wake
		w.mu.Lock()
		batch := w.pending
		w.pending = spare[:0]
		closed := w.closed
		w.room.Broadcast()
		w.mu.Unlock()
		if len(batch) > 0 {
			_, _ = w.out.Write(batch) // zerolog reports a failed write to stderr; nothing better to do with it here
		}
		spare = batch
		if closed {
			return
		}
	}
}

// Close writes what is pending and stops the writer goroutine; later lines
// are written at once. Safe to call more than once.
func (w *batchWriter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return nil
	}
	w.closed = true
	w.room.Broadcast()
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // a signal is pending already: the writer sees closed when it takes it
	}
	<-w.done
	return nil
}
