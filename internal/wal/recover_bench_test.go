package wal

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/loadgen"
)

var (
	recoveryPosts = flag.Int("recovery.posts", 10_000, "posts (at least 1000) of BenchmarkRecovery's data dir; each has 100 likes in the snapshot and 10 in the log tail (100000 is S2 plus 1M: likesbench durable's recovery)")
	recoveryDir   = flag.String("recovery.dir", "", "where BenchmarkRecovery keeps its data dir between runs (built once per -recovery.posts; default a temporary one)")
)

// BenchmarkRecovery is Open over a data dir of S2's shape (posts × 100
// likes of 8-byte ids in a snapshot, then 10 more a post in the log tail,
// the tail in rounds over every post as live traffic writes it), on a real
// disk: snapshot, tail and the take-over of the tail's segment. Each
// iteration opens a fresh copy of the dir. cpu-ms/op is the process's
// user+system time across Open (every thread: the GC's and any worker's);
// on a shared machine compare it, not ns/op. -recovery.posts=100000 is
// likesbench durable's recovery (10M + 1M likes; building it takes a
// minute, so keep it with -recovery.dir).
func BenchmarkRecovery(b *testing.B) {
	src := recoveryDataDir(b, *recoveryPosts)
	var cpu time.Duration
	var records, snapLikes uint64
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		dst := filepath.Join(b.TempDir(), "data")
		require.NoError(b, copyDirFiles(src, dst))
		runtime.GC()
		c0 := processCPU(b)
		b.StartTimer()
		st, err := newStore()
		require.NoError(b, err)
		l, rec, err := Open(DefaultConfig(dst), st)
		require.NoError(b, err)
		b.StopTimer()
		cpu += processCPU(b) - c0
		require.False(b, rec.Incomplete)
		records, snapLikes = rec.Records, rec.SnapshotLikes
		closeLog(b, l)
		require.NoError(b, os.RemoveAll(dst))
		runtime.KeepAlive(st)
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(snapLikes), "snapshot-likes")
	b.ReportMetric(float64(records), "log-records")
}

// recoveryDataDir builds BenchmarkRecovery's data dir (or finds it built):
// posts × 100 likes restored and written to a snapshot, then posts × 10
// logged as new likes.
func recoveryDataDir(b *testing.B, posts int) string {
	b.Helper()
	parent := *recoveryDir
	if parent == "" {
		parent = b.TempDir()
	}
	dir := filepath.Join(parent, "recovery-"+strconv.Itoa(posts))
	done := filepath.Join(parent, "recovery-"+strconv.Itoa(posts)+".built")
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	require.NoError(b, os.RemoveAll(dir))
	user := func(post, r int) string { return fmt.Sprintf("u%07d", loadgen.Permute(uint32(r), uint32(post))) }
	postID := func(k int) string { return "p" + strconv.Itoa(k) }

	cfg := DefaultConfig(dir)
	cfg.Fsync, cfg.Interval, cfg.SnapshotBytes = FsyncInterval, 10*time.Second, 4<<10
	st, err := newStore()
	require.NoError(b, err)
	l, _, err := Open(cfg, st)
	require.NoError(b, err)
	st.SetJournal(l)
	for r := 0; r < 100; r++ {
		for k := 0; k < posts; k++ {
			if r == 99 && k < 1000 {
				st.Like(postID(k), user(k, r)) // logged: closing writes the snapshot
			} else {
				st.RestoreLike(postID(k), user(k, r))
			}
		}
	}
	closeLog(b, l)
	require.EqualValues(b, 1, l.Stats().Snapshots)

	cfg = DefaultConfig(dir)
	cfg.Fsync, cfg.Interval, cfg.SnapshotBytes = FsyncInterval, 10*time.Second, 64<<30
	st, err = newStore()
	require.NoError(b, err)
	l, rec, err := Open(cfg, st)
	require.NoError(b, err)
	require.EqualValues(b, posts*100, rec.SnapshotLikes)
	st.SetJournal(l)
	for r := 100; r < 110; r++ {
		for k := 0; k < posts; k++ {
			st.Like(postID(k), user(k, r))
		}
	}
	closeLog(b, l)
	require.Zero(b, l.Stats().Snapshots)
	require.NoError(b, os.WriteFile(done, nil, 0o644))
	return dir
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// copyDirFiles copies the regular files of from into a new directory to
// (the LOCK included: it is only ever locked, never read).
func copyDirFiles(from, to string) error {
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	r, err := os.Open(from)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		_ = w.Close()
		return err
	}
	return w.Close()
}
