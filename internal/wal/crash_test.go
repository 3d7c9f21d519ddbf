package wal

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/stretchr/testify/require"
)

var crashSchedules = flag.Int("crash.schedules", 600, "crash schedules TestCrashAtEveryBoundary runs (make crash runs thousands)")

var errCrash = errors.New("crashfs: the machine is down")

// crashFS is a strict in-memory file system that crashes at its at-th
// write, sync, create, rename or remove: from then on every operation
// fails and nothing more becomes durable, and ResetToSyncedState then
// forgets all that was not synced, as a power cut would. With torn, a
// crash during a write first makes a random prefix of it durable (pages
// that reached the disk), leaving a torn record behind.
type crashFS struct {
	*vfs.MemFS
	mu      sync.Mutex
	n, at   int
	torn    bool
	rng     *rand.Rand
	crashed string // the kind of boundary it crashed at
	// atKind, if set, crashes at the at-th boundary of that kind instead.
	atKind string
	kinds  map[string]int
}

func newCrashFS(mem *vfs.MemFS, at int, torn bool, seed uint64) *crashFS {
	return &crashFS{MemFS: mem, at: at, torn: torn, rng: rand.New(rand.NewPCG(seed, 7)), kinds: map[string]int{}}
}

// now counts a boundary of kind and reports whether to crash there.
func (c *crashFS) now(kind string) bool {
	c.n++
	c.kinds[kind]++
	if c.atKind != "" {
		return kind == c.atKind && c.kinds[kind] == c.at
	}
	return c.n == c.at
}

// do runs one boundary's operation, or crashes there. The lock is held
// through the operation, so a crash never lands between another
// goroutine's check and its sync (which a down machine would ignore while
// reporting success).
func (c *crashFS) do(kind string, fn func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed != "" {
		return errCrash
	}
	if c.now(kind) {
		c.crashed = kind
		c.MemFS.SetIgnoreSyncs(true)
		return errCrash
	}
	return fn()
}

func (c *crashFS) Create(name string) (vfs.File, error) {
	var f vfs.File
	err := c.do("create", func() (err error) { f, err = c.MemFS.Create(name); return err })
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, fs: c}, nil
}

func (c *crashFS) OpenDir(name string) (vfs.File, error) {
	f, err := c.MemFS.OpenDir(name)
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, fs: c}, nil
}

func (c *crashFS) Rename(from, to string) error {
	return c.do("rename", func() error { return c.MemFS.Rename(from, to) })
}

func (c *crashFS) Remove(name string) error {
	return c.do("remove", func() error { return c.MemFS.Remove(name) })
}

type crashFile struct {
	vfs.File
	fs *crashFS
}

func (f *crashFile) Write(b []byte) (n int, err error) {
	c := f.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed != "" {
		return 0, errCrash
	}
	if c.now("write") {
		c.crashed = "write"
		if c.torn && len(b) > 1 { // part of it reached the disk
			_, _ = f.File.Write(b[:1+c.rng.IntN(len(b)-1)])
			_ = f.File.Sync()
		}
		c.MemFS.SetIgnoreSyncs(true)
		return 0, errCrash
	}
	return f.File.Write(b)
}

func (f *crashFile) Sync() error {
	return f.fs.do("sync", f.File.Sync)
}

func (f *crashFile) SyncData() error { return f.Sync() }

// crashRun is one schedule: likes with a wait for durability every few,
// until the machine goes down or the workload ends.
type crashRun struct {
	acked, sent map[string]bool
	crashedAt   string
	ops         int
}

func runUntilCrash(t *testing.T, fs *crashFS, seed uint64, likes int) crashRun {
	cfg := testConfig(fs)
	cfg.SegmentBytes, cfg.SnapshotBytes = 4<<10, 4<<10
	r := crashRun{acked: map[string]bool{}, sent: map[string]bool{}}
	st, err := newStore()
	require.NoError(t, err)
	l, _, err := Open(cfg, st)
	if err != nil { // crashed while opening
		require.ErrorIs(t, err, errCrash)
		r.crashedAt, r.ops = fs.crashed, fs.n
		return r
	}
	st.SetJournal(l)
	rng := rand.New(rand.NewPCG(seed, 1))
	var pending []string
	var ackMu sync.Mutex
	for i := 0; i < likes; i++ {
		post, user := fmt.Sprintf("p%d", rng.IntN(10)), fmt.Sprintf("u%d-%d", seed, i)
		st.Like(post, user)
		r.sent[post+"/"+user] = true
		pending = append(pending, post+"/"+user)
		if rng.IntN(3) == 0 {
			// The peers' path: an ack sent from a callback once durable.
			batch := append([]string(nil), pending...)
			l.AfterDurable(func() {
				ackMu.Lock()
				for _, k := range batch {
					r.acked[k] = true
				}
				ackMu.Unlock()
			})
		}
		if rng.IntN(4) == 0 || i == likes-1 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := st.WaitDurable(ctx)
			cancel()
			if err != nil {
				require.NotErrorIs(t, err, context.DeadlineExceeded, "a wait must end with the crash, not hang")
				break
			}
			ackMu.Lock()
			for _, k := range pending {
				r.acked[k] = true
			}
			ackMu.Unlock()
			pending = pending[:0]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = l.Close(ctx) // may fail: the machine is down
	require.NoError(t, ctx.Err(), "Close must return")
	ackMu.Lock() // no callback runs after Close
	defer ackMu.Unlock()
	fs.mu.Lock()
	r.crashedAt, r.ops = fs.crashed, fs.n
	fs.mu.Unlock()
	return r
}

// TestCrashAtEveryBoundary crashes the log at every write, sync, create,
// rename and remove of a workload that rotates segments and writes
// snapshots, on a file system that forgets what was not synced (torn
// writes included), then crashes recovery itself at a random boundary, and
// recovers once more: recovery always succeeds, every acknowledged like is
// back, and nothing appears that was never written.
func TestCrashAtEveryBoundary(t *testing.T) {
	const likes = 500
	// How many boundaries a whole run has: crash points are drawn up to it.
	fullFS := newCrashFS(vfs.NewStrictMem(), -1, false, 0)
	full := runUntilCrash(t, fullFS, 0, likes)
	require.Len(t, full.acked, likes)
	total := full.ops
	require.Greater(t, total, 100)
	require.Positive(t, fullFS.kinds["rename"], "a whole run writes snapshots")
	kinds := map[string]int{}
	schedule := func(s int, fs *crashFS) {
		seed := uint64(s)
		mem := fs.MemFS
		r := runUntilCrash(t, fs, seed, likes)
		kinds[r.crashedAt]++
		where := fmt.Sprintf("schedule %d (crash at %s #%d, %s)", s, fs.atKind, fs.at, r.crashedAt)
		mem.ResetToSyncedState()
		mem.SetIgnoreSyncs(false)
		if s%3 == 0 { // recovery crashes too, sometimes
			rfs := newCrashFS(mem, 1+int(seed%40), false, seed)
			st, err := newStore()
			require.NoError(t, err)
			if l, _, err := Open(testConfig(rfs), st); err == nil {
				_ = l.Close(context.Background())
			}
			if rfs.crashed != "" {
				kinds["recovery "+rfs.crashed]++
				where += ", recovery crashed at " + rfs.crashed
			}
			mem.ResetToSyncedState()
			mem.SetIgnoreSyncs(false)
		}
		l, st, rec := open(t, testConfig(mem))
		got := likesOf(st)
		closeLog(t, l)
		require.False(t, rec.Incomplete, "%s: a crash must not look like damage: %+v", where, rec)
		for k := range r.acked {
			require.True(t, got[k], "%s: acknowledged like %s lost; %+v", where, k, rec)
		}
		for k := range got {
			require.True(t, r.sent[k], "%s: %s was never written", where, k)
		}
	}
	for s := 0; s < *crashSchedules; s++ {
		// Every boundary, again and again with new seeds; torn writes in
		// every other schedule.
		schedule(s, newCrashFS(vfs.NewStrictMem(), 1+s%total, s%2 == 1, uint64(s)))
	}
	// Which boundary an index lands on varies with the goroutines' order:
	// crash at each snapshot's and each cut's boundaries by name too.
	s := *crashSchedules
	for _, kind := range []string{"create", "rename", "remove"} {
		for n := 1; n <= fullFS.kinds[kind]; n++ {
			fs := newCrashFS(vfs.NewStrictMem(), n, false, uint64(s))
			fs.atKind = kind
			schedule(s, fs)
			s++
		}
	}
	t.Logf("%d schedules, %d boundaries in a whole run (%v), crashes by kind: %v", s, total, fullFS.kinds, kinds)
}
