package wal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
)

// Findings of the review of the durable log, each a test that failed
// before its fix.

// A recovery that set a damaged file aside stays incomplete across restarts
// until the node has rebuilt from its peers (Rebuilt).
func TestIncompleteSurvivesARestartUntilRebuilt(t *testing.T) {
	fs := vfs.NewStrictMem()
	written(t, fs, 50)
	seg := segmentFiles(t, fs)[0]
	data := readFile(t, fs, seg.name)
	data[len(data)/2] ^= 0x40
	writeFile(t, fs, seg.name, data)

	l, _, rec := open(t, testConfig(fs))
	require.True(t, rec.Incomplete)
	require.Eventually(t, func() bool { return l.Stats().Snapshots > 0 && !l.snapping.Load() }, 10*time.Second, time.Millisecond)
	closeLog(t, l) // stopped before it rebuilt from its peers
	l2, _, rec2 := open(t, testConfig(fs))
	require.True(t, rec2.Incomplete, "partial data must not look whole after a restart")
	require.NoError(t, l2.Rebuilt())
	closeLog(t, l2)
	l3, _, rec3 := open(t, testConfig(fs))
	closeLog(t, l3)
	require.False(t, rec3.Incomplete)
}

// gate is a lockless file system whose Create of one name waits for a
// signal: the window between a new process's first listing and its fence.
type gate struct {
	vfs.FS
	name    string
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gate) Lock(string) (io.Closer, error) { return nopCloser{}, nil }
func (g *gate) Create(name string) (vfs.File, error) {
	if strings.HasSuffix(name, g.name) {
		g.once.Do(func() { close(g.reached); <-g.release })
	}
	return g.FS.Create(name)
}

// A stale process that rotates into a new segment and acknowledges a like
// there between the new process's first listing and its fence: the new
// process reads that segment.
func TestWhatAStaleProcessAcknowledgesBeforeTheFenceIsRead(t *testing.T) {
	fs := vfs.NewStrictMem()
	cfg := testConfig(fs)
	cfg.SegmentBytes, cfg.SnapshotBytes = 4<<10, 1<<30
	old, oldSt, _ := open(t, cfg)
	like(t, oldSt, "p", "first")

	g := &gate{FS: fs, name: markerName(2), reached: make(chan struct{}), release: make(chan struct{})}
	newCfg := cfg
	newCfg.FS = g
	type opened struct {
		l   *Log
		err error
	}
	done := make(chan opened)
	st2, err := newStore()
	require.NoError(t, err)
	go func() { l, _, err := Open(newCfg, st2); done <- opened{l, err} }()
	<-g.reached // the new one listed the dir and is about to fence
	for i := 0; len(segmentFiles(t, fs)) < 2; i++ {
		require.Less(t, i, 10000)
		like(t, oldSt, "p", fmt.Sprintf("fill-%04d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i))
	}
	like(t, oldSt, "p", "acked")
	close(g.release)
	r := <-done
	require.NoError(t, r.err)
	_ = old.Close(context.Background())
	require.True(t, likesOf(st2)["p/acked"], "the new process holds what the old one acknowledged")
	closeLog(t, r.l)
	l3, st3, _ := open(t, cfg)
	closeLog(t, l3)
	require.True(t, likesOf(st3)["p/acked"], "an acknowledged like is gone")
}

// Crafted bytes after a bad frame cannot make recovery quadratic: the
// search for what follows is bounded (this took minutes before).
func TestTheSearchAfterABadFrameIsBounded(t *testing.T) {
	const size = 4 << 20
	data := make([]byte, size)
	for k := 0; k+4 <= size; k += 4 { // every offset claims a body to the end
		n := uint32(size - k - frameHeader - 1)
		data[k], data[k+1], data[k+2], data[k+3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	}
	end, middle, err := scan(data, recordSeed, func([]byte) error { return nil })
	require.NoError(t, err)
	require.Zero(t, end)
	require.True(t, middle, "past the bound the damage counts as in the middle")
}

// A power cut can leave holes in the last, unsynced batch (pages reach the
// disk out of order): that is a torn tail, not damage.
func TestAHoleInTheLastBatchIsATornTail(t *testing.T) {
	fs := vfs.NewStrictMem()
	want := written(t, fs, 20)
	seg := segmentFiles(t, fs)[0]
	data := readFile(t, fs, seg.name)
	at := len(data)
	for i := range 100 { // one batch of 100 likes, then its commit
		data = appendFrame(data, recordSeed, func(b []byte) []byte {
			return appendRecord(b, Record{Kind: KindLike, Post: "p", User: fmt.Sprintf("batch-%03d", i)})
		})
	}
	data = append(data, commitFrame...)
	for i := at + 300; i < at+300+512; i++ {
		data[i] = 0
	}
	writeFile(t, fs, seg.name, data)
	l, st, rec := open(t, testConfig(fs))
	closeLog(t, l)
	require.False(t, rec.Incomplete, "%+v", rec)
	require.Equal(t, 1, rec.TornTails)
	got := likesOf(st)
	for k := range want {
		require.True(t, got[k], k)
	}
}

// Damage in a segment that is not the last its generation wrote is damage,
// even at its end: a later segment means a sync covered it.
func TestDamageAtTheEndOfAnEarlierSegmentIsDamage(t *testing.T) {
	fs := vfs.NewStrictMem()
	cfg := testConfig(fs)
	cfg.SegmentBytes = 4 << 10
	l, st, _ := open(t, cfg)
	for i := 0; len(segmentFiles(t, fs)) < 3; i++ {
		like(t, st, "p", fmt.Sprintf("user-%05d-xxxxxxxxxxxxxxxx", i))
	}
	closeLog(t, l)
	first := segmentFiles(t, fs)[0]
	data := readFile(t, fs, first.name)
	writeFile(t, fs, first.name, data[:len(data)-3])
	l2, _, rec := open(t, cfg)
	closeLog(t, l2)
	require.True(t, rec.Incomplete, "%+v", rec)
	require.Zero(t, rec.TornTails)
}

// A post whose likers take more than a frame holds is split over entries
// the reader takes: a snapshot likesd wrote is always readable.
func TestASnapshotOfAHugePostIsReadable(t *testing.T) {
	fs := vfs.NewStrictMem()
	cfg := testConfig(fs)
	l, st, _ := open(t, cfg)
	users := make([]string, 150_000)
	var b [64]byte
	for i := range users {
		_, _ = rand.Read(b[:])
		users[i] = hex.EncodeToString(b[:]) // 128 bytes, no shared prefixes: 19 MB
	}
	slices.Sort(users) // gset.New appends in order: fast
	st.RestoreSet("hot", gset.New(users...))
	l.startSnapshot(l.segSeq)
	require.Eventually(t, func() bool { return l.Stats().Snapshots > 0 && !l.snapping.Load() }, 60*time.Second, 10*time.Millisecond)
	closeLog(t, l)
	l2, st2, rec := open(t, cfg)
	defer closeLog(t, l2)
	require.False(t, rec.Incomplete, "%+v", rec)
	require.Equal(t, len(users), st2.Count("hot"))
}

type flakyFS struct {
	vfs.FS
	mu    sync.Mutex
	fails int
}

type flakyFile struct {
	vfs.File
	fs *flakyFS
}

func (f *flakyFS) Lock(string) (io.Closer, error) { return nopCloser{}, nil }
func (f *flakyFS) Create(n string) (vfs.File, error) {
	x, err := f.FS.Create(n)
	if err != nil {
		return nil, err
	}
	return &flakyFile{x, f}, nil
}

func (f *flakyFile) SyncData() error {
	f.fs.mu.Lock()
	if f.fs.fails > 0 {
		f.fs.fails--
		f.fs.mu.Unlock()
		return fmt.Errorf("EIO")
	}
	f.fs.mu.Unlock()
	return f.File.SyncData()
}

// Sync errors come and go while a writer goes on, then the power goes:
// every acknowledged like is back (the page cache is never trusted after a
// failed sync: the replica is written anew).
func TestFailedSyncsThenAPowerCutLoseNothingAcknowledged(t *testing.T) {
	mem := vfs.NewStrictMem()
	ffs := &flakyFS{FS: mem}
	cfg := testConfig(ffs)
	cfg.SegmentBytes, cfg.SnapshotBytes = 4<<10, 8<<10
	l, st, _ := open(t, cfg)
	acked := map[string]bool{}
	for i := range 3000 {
		if i%300 == 0 {
			ffs.mu.Lock()
			ffs.fails = 2
			ffs.mu.Unlock()
		}
		u := fmt.Sprintf("u%05d", i)
		// A client retries after a 507: it writes once the log takes
		// writes again (else a busy machine can spend the whole loop
		// before the first rewrite ends).
		require.Eventually(t, func() bool { return st.Writable() == nil }, 10*time.Second, 100*time.Microsecond)
		st.Like(fmt.Sprintf("p%d", i%5), u)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if st.WaitDurable(ctx) == nil {
			acked[fmt.Sprintf("p%d/%s", i%5, u)] = true
		}
		cancel()
	}
	require.NotEmpty(t, acked)
	require.Positive(t, l.Stats().Rewrites)
	_ = l.Close(context.Background())
	mem.ResetToSyncedState()
	l2, st2, _ := open(t, testConfig(mem))
	closeLog(t, l2)
	got := likesOf(st2)
	for k := range acked {
		require.True(t, got[k], "%s lost", k)
	}
}

// The log replayed at a start counts toward the next snapshot: restarts
// that each write less than SnapshotBytes do not let the log grow without
// bound (found by the durability benchmark).
func TestRestartsDoNotLetTheLogOutgrowSnapshotBytes(t *testing.T) {
	fs := vfs.NewStrictMem()
	cfg := testConfig(fs)
	cfg.SegmentBytes, cfg.SnapshotBytes = 4<<10, 16<<10
	for round := range 6 {
		l, st, _ := open(t, cfg)
		require.Eventually(t, func() bool { return !l.snapping.Load() }, 10*time.Second, time.Millisecond)
		for i := 0; l.Stats().BytesWritten < uint64(cfg.SnapshotBytes)*9/10; i++ {
			like(t, st, "p", fmt.Sprintf("r%d-user-%05d", round, i))
		}
		require.Eventually(t, func() bool { return !l.snapping.Load() }, 10*time.Second, time.Millisecond)
		closeLog(t, l)
	}
	var logBytes int64
	for _, f := range segmentFiles(t, fs) {
		logBytes += int64(len(readFile(t, fs, f.name)))
	}
	require.Less(t, logBytes, 2*cfg.SnapshotBytes+2*cfg.SegmentBytes, "the log is cut by snapshots across restarts")
}
