package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
)

func reserve(t *testing.T) string {
	addr, err := testNet(t).Reserve()
	require.NoError(t, err)
	return addr
}

// stalledDisk is a journal whose syncs do not finish until release: a disk
// whose fsync takes seconds.
type stalledDisk struct {
	mu      sync.Mutex
	synced  bool
	done    chan struct{}
	waiting []func()
}

func newStalledDisk() *stalledDisk { return &stalledDisk{done: make(chan struct{})} }

func (d *stalledDisk) Append(string, string) {}
func (d *stalledDisk) Err() error            { return nil }

func (d *stalledDisk) WaitDurable(ctx context.Context) error {
	d.mu.Lock()
	synced := d.synced
	d.mu.Unlock()
	if synced {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *stalledDisk) AfterDurable(fn func()) {
	d.mu.Lock()
	if !d.synced {
		d.waiting = append(d.waiting, fn)
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	fn()
}

func (d *stalledDisk) release() {
	d.mu.Lock()
	d.synced = true
	fns := d.waiting
	d.waiting = nil
	close(d.done)
	d.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// A node whose own disk has not synced a like does not count itself: a
// slow fsync turns the write into a 202 by the write timeout, never a
// stuck request; once the disk syncs, writes are met again.
func TestANodeCountsItselfOnlyOnceItsDiskSyncedTheLike(t *testing.T) {
	disk := newStalledDisk()
	a := startNodeJournal(t, reserve(t), "a", nil, func(c *Config) { c.Writes.Timeout = 50 * time.Millisecond }, disk)
	waitReady(t, a)
	res := write(a, acks.One, "p", "u1")
	assert.Equal(t, acks.Result{Replicas: 0, Want: 1}, res, "not on disk within the write timeout: 202")
	assert.Equal(t, uint64(1), a.Stats().WritesUnsynced)
	disk.release()
	res = write(a, acks.One, "p", "u2")
	assert.True(t, res.Met(), "%+v", res)
}

// A peer acknowledges a frame only once its own disk holds the likes: with
// its disk stalled a w=2 write is not met; the ack follows the sync.
func TestAPeerAcknowledgesOnlyWhatItsDiskSynced(t *testing.T) {
	a := startNode(t, "a", nil, func(c *Config) { c.Writes.Timeout = 300 * time.Millisecond })
	disk := newStalledDisk()
	b := startNodeJournal(t, reserve(t), "b", []string{a.Addr()}, func(c *Config) { c.Writes.Timeout = 300 * time.Millisecond }, disk)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 }, waitLong, 10*time.Millisecond)

	res := write(a, acks.Level{}, "p", "held-back")
	assert.False(t, res.Met(), "b holds it in memory only: %+v", res)
	require.Eventually(t, func() bool { return b.store.Has("p", "held-back") }, waitLong, 5*time.Millisecond)
	assert.Zero(t, a.Stats().AcksReceived, "no ack before b's sync")

	disk.release()
	require.Eventually(t, func() bool { return a.Stats().AcksReceived > 0 }, waitLong, 5*time.Millisecond,
		"the ack goes once the sync covers the frame")
	require.Eventually(t, func() bool { return write(a, acks.Level{}, "p", "after").Met() }, waitLong, 10*time.Millisecond)
}
