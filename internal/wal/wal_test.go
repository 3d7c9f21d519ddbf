package wal

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
)

const dir = "/data"

func testConfig(fs vfs.FS) Config {
	c := DefaultConfig(dir)
	c.FS = fs
	c.RetryAfter = time.Millisecond
	return c
}

// open opens the log over a fresh store, wired as likesd wires it.
func open(t testing.TB, cfg Config) (*Log, *store.Store, Recovery) {
	t.Helper()
	st, err := newStore()
	require.NoError(t, err)
	l, rec, err := Open(cfg, st)
	require.NoError(t, err)
	st.SetJournal(l)
	return l, st, rec
}

func newStore() (*store.Store, error) { return store.New(store.DefaultConfig()) }

func closeLog(t testing.TB, l *Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, l.Close(ctx))
}

func likesOf(st *store.Store) map[string]bool {
	out := map[string]bool{}
	st.Snapshot(func(post string, users gset.Set) bool {
		users.Walk(func(u string) bool { out[post+"/"+u] = true; return true })
		return true
	})
	return out
}

func like(t testing.TB, st *store.Store, post, user string) {
	t.Helper()
	st.Like(post, user)
	require.NoError(t, st.WaitDurable(context.Background()))
}

func TestLikesSurviveAReopen(t *testing.T) {
	fs := vfs.NewStrictMem()
	l, st, rec := open(t, testConfig(fs))
	require.True(t, rec.Empty())
	for i := range 100 {
		like(t, st, fmt.Sprintf("p%d", i%7), fmt.Sprintf("u%d", i))
	}
	st.Like("p1", "u1") // a repeat: not logged again
	require.Equal(t, uint64(100), l.Stats().Appended)
	closeLog(t, l)
	fs.ResetToSyncedState() // a power cut after the close

	l2, st2, rec2 := open(t, testConfig(fs))
	defer closeLog(t, l2)
	require.Equal(t, uint64(100), rec2.Records, "%+v", rec2)
	require.False(t, rec2.Incomplete)
	require.Equal(t, likesOf(st), likesOf(st2))
	require.Equal(t, rec.Generation+1, rec2.Generation)
}

func TestASnapshotCutsTheLogAndRecoveryReadsItThenTheTail(t *testing.T) {
	fs := vfs.NewStrictMem()
	cfg := testConfig(fs)
	cfg.SegmentBytes, cfg.SnapshotBytes = 4<<10, 16<<10
	l, st, _ := open(t, cfg)
	for i := range 3000 {
		like(t, st, fmt.Sprintf("p%d", i%13), fmt.Sprintf("user-%05d", i))
	}
	require.Eventually(t, func() bool { return l.Stats().Snapshots > 0 && !l.snapping.Load() }, 10*time.Second, time.Millisecond)
	names, err := fs.List(dir)
	require.NoError(t, err)
	ls := parseListing(names)
	require.NotEmpty(t, ls.snapshots)
	require.Less(t, len(ls.segments), 3000*30/(4<<10), "the log before the snapshot was deleted")
	want := likesOf(st)
	closeLog(t, l)
	fs.ResetToSyncedState()

	l2, st2, rec := open(t, cfg)
	defer closeLog(t, l2)
	require.NotEmpty(t, rec.Snapshot)
	require.NotZero(t, rec.SnapshotLikes)
	require.False(t, rec.Incomplete)
	require.Equal(t, want, likesOf(st2))
}

// segmentFiles lists the segments in dir, oldest first.
func segmentFiles(t *testing.T, fs vfs.FS) []file {
	names, err := fs.List(dir)
	require.NoError(t, err)
	return parseListing(names).segments
}

func readFile(t *testing.T, fs vfs.FS, name string) []byte {
	f, err := fs.Open(fs.PathJoin(dir, name))
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	b := make([]byte, st.Size())
	_, err = f.ReadAt(b, 0)
	require.NoError(t, err)
	return b
}

func writeFile(t *testing.T, fs vfs.FS, name string, b []byte) {
	f, err := fs.Create(fs.PathJoin(dir, name))
	require.NoError(t, err)
	_, err = f.Write(slices.Clone(b)) // pebble's MemFS may scribble on what it is given (race builds)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
}

// written fills a log with n likes and closes it; it returns the likes.
func written(t *testing.T, fs vfs.FS, n int) map[string]bool {
	l, st, _ := open(t, testConfig(fs))
	for i := range n {
		like(t, st, fmt.Sprintf("p%d", i%5), fmt.Sprintf("u%04d", i))
	}
	closeLog(t, l)
	return likesOf(st)
}

func TestATornTailIsCutAtTheLastValidRecordAndCounted(t *testing.T) {
	for _, tail := range []struct {
		name string
		mend func(b []byte) []byte
	}{
		{"half a record", func(b []byte) []byte { return b[:len(b)-len(commitFrame)-7] }},
		{"zeros after", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }},
		{"garbage after", func(b []byte) []byte { return append(b, []byte("\x13\x00\x00\x00garbage that is no record")...) }},
	} {
		t.Run(tail.name, func(t *testing.T) {
			fs := vfs.NewStrictMem()
			want := written(t, fs, 50)
			seg := segmentFiles(t, fs)[0]
			data := readFile(t, fs, seg.name)
			writeFile(t, fs, seg.name, tail.mend(data))
			if tail.name == "half a record" {
				delete(want, "p4/u0049") // the torn one
			}
			l, st, rec := open(t, testConfig(fs))
			closeLog(t, l)
			require.Equal(t, 1, rec.TornTails)
			require.False(t, rec.Incomplete, "a torn tail is what a crash leaves: nothing is missing")
			require.Equal(t, want, likesOf(st))
			// Cut for good: the next recovery finds nothing to cut.
			_, _, rec = open(t, testConfig(fs))
			require.Zero(t, rec.TornTails)
		})
	}
}

func TestDamageInTheMiddleOfASegmentSetsItAsideAndAsksForPeers(t *testing.T) {
	fs := vfs.NewStrictMem()
	want := written(t, fs, 50)
	seg := segmentFiles(t, fs)[0]
	data := readFile(t, fs, seg.name)
	data[len(data)/2] ^= 0x40 // one flipped bit
	writeFile(t, fs, seg.name, data)

	l, st, rec := open(t, testConfig(fs))
	require.True(t, rec.Incomplete, "a node must not start silently on partial data")
	require.Len(t, rec.SetAside, 1)
	require.True(t, strings.HasPrefix(rec.SetAside[0], seg.name+".corrupt-crc-at-"), rec.SetAside[0])
	got := likesOf(st)
	require.Less(t, len(got), len(want))
	for k := range got {
		require.True(t, want[k], "nothing appears that was never written: %s", k)
	}
	names, err := fs.List(dir)
	require.NoError(t, err)
	require.Contains(t, names, rec.SetAside[0], "kept for the operator")
	require.NotContains(t, names, seg.name)
	// What was read is written anew: a snapshot follows at once.
	require.Eventually(t, func() bool { return l.Stats().Snapshots > 0 }, 10*time.Second, time.Millisecond)
	closeLog(t, l)
}

func TestADamagedSnapshotIsSetAside(t *testing.T) {
	fs := vfs.NewStrictMem()
	cfg := testConfig(fs)
	cfg.SegmentBytes, cfg.SnapshotBytes = 4<<10, 8<<10
	l, st, _ := open(t, cfg)
	for i := range 2000 {
		like(t, st, fmt.Sprintf("p%d", i%3), fmt.Sprintf("user-%05d", i))
	}
	require.Eventually(t, func() bool { return l.Stats().Snapshots > 0 && !l.snapping.Load() }, 10*time.Second, time.Millisecond)
	closeLog(t, l)
	names, err := fs.List(dir)
	require.NoError(t, err)
	snaps := parseListing(names).snapshots
	require.NotEmpty(t, snaps)
	name := snaps[len(snaps)-1].name
	data := readFile(t, fs, name)
	data[len(data)/3] ^= 1
	writeFile(t, fs, name, data)

	l2, _, rec := open(t, cfg)
	defer closeLog(t, l2)
	require.True(t, rec.Incomplete)
	require.Contains(t, rec.SetAside, name+".corrupt-snapshot")
}

func TestASecondProcessOnTheDirRefusesToStart(t *testing.T) {
	fs := vfs.NewStrictMem()
	l, _, _ := open(t, testConfig(fs))
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	_, _, err = Open(testConfig(fs), st)
	require.ErrorIs(t, err, ErrLocked)
	closeLog(t, l)
	l2, _, _ := open(t, testConfig(fs)) // released by Close
	closeLog(t, l2)
}

// lockless is a file system on which every lock succeeds: what a process
// sees when its lock went away (a deleted LOCK file, a network file
// system) while an older process still runs.
type lockless struct{ vfs.FS }

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

func (lockless) Lock(string) (io.Closer, error) { return nopCloser{}, nil }

func TestAStaleProcessThatResumesCannotTouchWhatTheNewerOneWrote(t *testing.T) {
	fs := vfs.NewStrictMem()
	cfg := testConfig(fs)
	cfg.SegmentBytes, cfg.SnapshotBytes = 4<<10, 8<<10
	old, oldSt, _ := open(t, cfg)
	for i := range 100 {
		like(t, oldSt, "p", fmt.Sprintf("before-%03d", i))
	}
	// The old process pauses; a new one takes the dir (its lock lost).
	newCfg := cfg
	newCfg.FS = lockless{fs}
	cur, curSt, rec := open(t, newCfg)
	require.Equal(t, uint64(100), rec.Records, "what the old one synced before the takeover is read")
	for i := range 300 {
		like(t, curSt, "p", fmt.Sprintf("new-%03d", i))
	}
	// The newer process goes quiet (no snapshot running), so its files
	// change only if the old one changes them.
	require.Eventually(t, func() bool { return !cur.snapping.Load() }, 10*time.Second, time.Millisecond)
	before := snapshotOfDir(t, fs)

	// The old one resumes: nothing it does now is acknowledged or lands.
	oldSt.Like("p", "stale")
	err := oldSt.WaitDurable(context.Background())
	require.ErrorIs(t, err, ErrFenced)
	require.ErrorIs(t, oldSt.Writable(), ErrFenced)
	for range 50 { // it keeps trying: still nothing
		oldSt.Like("p", fmt.Sprintf("stale-%d", time.Now().UnixNano()))
	}
	_ = old.Close(context.Background())
	after := snapshotOfDir(t, fs)
	for name, data := range before {
		if strings.HasPrefix(name, fmt.Sprintf("%016x", 0)) {
			continue
		}
		if g := genOf(name); g == rec.Generation {
			require.Equal(t, data, after[name], "the newer process's %s was changed", name)
		}
	}
	closeLog(t, cur)

	_, st, _ := open(t, cfg)
	got := likesOf(st)
	require.False(t, got["p/stale"], "a fenced process's write must never land")
	for i := range 300 {
		require.True(t, got[fmt.Sprintf("p/new-%03d", i)])
	}
	for i := range 100 {
		require.True(t, got[fmt.Sprintf("p/before-%03d", i)])
	}
}

func genOf(name string) uint64 {
	for _, f := range append(parseListing([]string{name}).segments, parseListing([]string{name}).snapshots...) {
		return f.gen
	}
	return 0
}

func snapshotOfDir(t *testing.T, fs vfs.FS) map[string][]byte {
	names, err := fs.List(dir)
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, n := range names {
		if n == lockName || strings.HasPrefix(n, markerPfx) || strings.HasSuffix(n, tmpExt) {
			continue
		}
		out[n] = readFile(t, fs, n)
	}
	return out
}

func TestRecordsRoundTrip(t *testing.T) {
	for _, r := range []Record{
		{Kind: KindLike, Post: "p", User: "u"},
		{Kind: KindUnlike, Post: "post-1", User: "u-1"},
		{Kind: KindLike, Post: strings.Repeat("x", 300), User: "ü"},
	} {
		r.Dot.Origin, r.Dot.Seq = 7, 1<<40
		b := appendFrame(nil, 9, func(b []byte) []byte { return appendRecord(b, r) })
		body, n, ok := readFrame(b, 9)
		require.True(t, ok)
		require.Equal(t, len(b), n)
		kind, dot, post, user, err := decodeRecord(body)
		require.NoError(t, err)
		require.Equal(t, r, Record{Kind: kind, Dot: dot, Post: string(post), User: string(user)})
		_, _, ok = readFrame(b, 10)
		require.False(t, ok, "another file's seed does not validate")
	}
}

func TestAppendFramesWhatDecodeReads(t *testing.T) {
	fs := vfs.NewStrictMem()
	l, st, _ := open(t, testConfig(fs))
	defer closeLog(t, l)
	st.Like("post", "user")
	l.mu.Lock()
	buf := slices.Clone(l.buf)
	l.mu.Unlock()
	if len(buf) == 0 { // already written: read the segment
		require.NoError(t, st.WaitDurable(context.Background()))
		frames, ok := readHeader(readFile(t, fs, segmentName(l.segSeq, l.gen)), segmentMagic, l.gen, l.segSeq)
		require.True(t, ok)
		buf = frames
	}
	body, _, ok := readFrame(buf, recordSeed)
	require.True(t, ok)
	kind, _, post, user, err := decodeRecord(body)
	require.NoError(t, err)
	require.Equal(t, KindLike, kind)
	require.Equal(t, "post", string(post))
	require.Equal(t, "user", string(user))
}

// FuzzRecovery feeds arbitrary bytes to recovery as a segment: it never
// panics, and what it restores is only what valid records say.
func FuzzRecovery(f *testing.F) {
	seg := appendHeader(nil, segmentMagic, 1, 1)
	seg = appendFrame(seg, recordSeed, func(b []byte) []byte {
		return appendRecord(b, Record{Kind: KindLike, Post: "p", User: "u"})
	})
	f.Add(seg)
	f.Add(append(seg, 1, 2, 3))
	f.Add(seg[:len(seg)-3])
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := vfs.NewStrictMem()
		require.NoError(t, fs.MkdirAll(dir, 0o755))
		writeFile(t, fs, segmentName(1, 1), data)
		st, err := newStore()
		require.NoError(t, err)
		l, _, err := Open(testConfig(fs), st)
		require.NoError(t, err)
		_ = l.Close(context.Background())
		frames, ok := readHeader(data, segmentMagic, 1, 1)
		if !ok {
			require.Zero(t, st.Stats().Likes)
			return
		}
		want := map[string]bool{}
		_, _, _ = scan(frames, recordSeed, func(body []byte) error {
			if kind, _, post, user, err := decodeRecord(body); err == nil && kind == KindLike {
				want[string(post)+"/"+string(user)] = true
			}
			return nil
		})
		for k := range likesOf(st) {
			require.True(t, want[k], k)
		}
	})
}

// With --fsync interval a like counts at once, reaches the file at once (a
// crash of the process alone loses nothing) and is synced at the tick (a
// power cut before it loses it).
func TestIntervalModeWritesAtOnceAndSyncsAtTheTick(t *testing.T) {
	fs := vfs.NewStrictMem()
	cfg := testConfig(fs)
	cfg.Fsync, cfg.Interval = FsyncInterval, 10*time.Second
	l, st, _ := open(t, cfg)
	st.Like("p", "u")
	require.NoError(t, st.WaitDurable(context.Background()), "counts at once")
	seg := segmentName(l.segSeq, l.gen)
	require.Eventually(t, func() bool {
		frames, ok := readHeader(readFile(t, fs, seg), segmentMagic, l.gen, l.segSeq)
		return ok && len(frames) > 0
	}, 10*time.Second, time.Millisecond, "written without waiting for the tick")
	require.Zero(t, l.Stats().Syncs, "not synced before the tick")

	fs.SetIgnoreSyncs(true) // the power goes before the tick
	_ = l.Close(context.Background())
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)
	_, st2, _ := open(t, cfg)
	require.False(t, st2.Has("p", "u"), "the interval's loss window, as documented")
}
