package wal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/stat"
	"github.com/likesd/likesd/internal/store"
)

// Replica is what the log needs from the replica: recovery restores into
// it without logging again, and snapshots read it. internal/store
// satisfies it.
type Replica interface {
	// RestoreSet restores a post's set from a snapshot. Recovery calls it
	// from several goroutines at once.
	RestoreSet(post string, users gset.Set)
	// RestoreLikes restores a batch of likes (a segment's records); their
	// strings share the segment's buffer, which the replica must not keep.
	RestoreLikes(likes []store.Like)
	// Snapshot calls fn with a copy of every post's set; see store.
	Snapshot(fn func(post string, users gset.Set) bool)
}

var _ Replica = (*store.Store)(nil)

// Errors.
var (
	// ErrLocked: another process holds the directory.
	ErrLocked = errors.New("wal: data dir is in use by another likesd process")
	// ErrDisk wraps a failed write or sync: the log takes no writes until
	// it has written the replica anew.
	ErrDisk = errors.New("wal: disk write failed")
	// ErrFenced: a newer process took the directory; this one writes no
	// more.
	ErrFenced = errors.New("wal: a newer process owns the data dir")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("wal: closed")
	// ErrBehind: more than maxBacklog bytes wait for a slow disk; writes
	// are refused until it catches up, so memory stays bounded.
	ErrBehind = errors.New("wal: the disk is behind")
)

// maxBacklog bounds the records waiting for the disk.
const maxBacklog = 64 << 20

// Stats are counters since Open.
type Stats struct {
	Appended, Synced   uint64 // records
	Syncs, SyncErrors  uint64
	BytesWritten       uint64
	Snapshots          uint64 // written, the rewrites after a failure included
	SnapshotErrors     uint64
	Rewrites           uint64 // replica written anew after a failed write or sync
	SegmentsDeleted    uint64
	Unwritable         bool   // the log takes no writes now (Err)
	CallbacksDropped   uint64 // AfterDurable callbacks dropped past maxWaiters
	BytesSinceSnapshot int64
	// What the recovery at Open found.
	RecoveredTornTails, RecoveredSetAside int
	RecoveredIncomplete                   bool
}

type waiter struct {
	lsn uint64
	fn  func()
}

// maxWaiters bounds the callbacks waiting for a sync; past it the oldest are
// dropped (what they would have acknowledged times out at its origin).
const maxWaiters = 1 << 16

// Log is the data directory's log. Create it with Open.
type Log struct {
	cfg     Config
	fs      vfs.FS
	log     zerolog.Logger
	gen     uint64
	marker  string
	lock    io.Closer
	replica Replica
	always  bool

	// mu guards the fields below it.
	mu       sync.Mutex
	buf      []byte // framed records not yet written
	spare    []byte
	appended uint64 // records appended (the newest one's number)
	synced   uint64 // records covered by a sync
	err      error  // non-nil: writes are refused (ErrDisk, ErrFenced, ErrClosed)
	// buffering is false while the log is broken: records are not kept
	// (the rewrite will hold them) until a rewrite starts.
	buffering bool
	changed   chan struct{} // closed when synced or err changes
	waiters   []waiter      // AfterDurable callbacks, by lsn
	dropped   uint64

	failing atomic.Bool // err != nil, for the hot path
	behind  atomic.Bool // len(buf) > maxBacklog
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	stopped sync.Once

	// Owned by run.
	seg      vfs.File
	segSeq   uint64
	segBytes int64

	// snapMu serialises snapshot writers; snapping says one runs.
	snapMu    sync.Mutex
	snapping  atomic.Bool
	snapWG    sync.WaitGroup
	sinceSnap atomic.Int64
	nextSeq   atomic.Uint64 // the next segment number to use

	stats struct {
		syncs, syncErrors, bytes, snapshots, snapErrors, rewrites, deleted atomic.Uint64
	}
	rec Recovery // set by Open
}

// Open takes the directory, recovers what it holds into replica and starts
// the log. On error nothing is left running and the lock is released.
func Open(cfg Config, replica Replica) (*Log, Recovery, error) {
	if err := cfg.Validate(); err != nil {
		return nil, Recovery{}, err
	}
	fs := cfg.FS
	if fs == nil {
		fs = vfs.Default
	}
	l := &Log{
		cfg: cfg, fs: fs, replica: replica, always: cfg.Fsync == FsyncAlways,
		log:       cfg.Logger.With().Str("component", "wal").Logger(),
		buffering: true,
		changed:   make(chan struct{}),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	if err := l.makeDir(); err != nil {
		return nil, Recovery{}, fmt.Errorf("wal: create data dir: %w", err)
	}
	lock, err := fs.Lock(l.path(lockName))
	if err != nil {
		return nil, Recovery{}, fmt.Errorf("%w: %s: %w", ErrLocked, cfg.Dir, err)
	}
	l.lock = lock
	rec, err := l.recover()
	if err != nil {
		_ = l.closeFiles()
		return nil, rec, err
	}
	l.rec = rec
	if rec.needSnapshot {
		l.startSnapshot(l.segSeq)
	}
	go l.run()
	return l, rec, nil
}

func (l *Log) path(name string) string { return l.fs.PathJoin(l.cfg.Dir, name) }

// Append logs a like that is new to the replica. The store calls it under
// the like's shard lock: it only frames the record into memory.
func (l *Log) Append(post, user string) {
	l.mu.Lock()
	l.appended++
	if l.buffering {
		at := len(l.buf)
		l.buf = append(l.buf, make([]byte, frameHeader)...)
		l.buf = appendRecord(l.buf, Record{Kind: KindLike, Post: post, User: user})
		sealFrame(l.buf[at:], recordSeed)
		if len(l.buf) > maxBacklog && !l.behind.Load() {
			l.behind.Store(true)
		}
	}
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Err is nil while the log takes writes, else why not (ErrDisk, ErrFenced,
// ErrClosed, ErrBehind). It is two atomic loads when nil.
func (l *Log) Err() error {
	if !l.failing.Load() {
		if l.behind.Load() {
			return ErrBehind
		}
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// WaitDurable waits until every record appended before the call is
// durable, the log fails, or ctx ends.
func (l *Log) WaitDurable(ctx context.Context) error {
	l.mu.Lock()
	target := l.appended
	for {
		if l.err != nil {
			err := l.err
			l.mu.Unlock()
			return err
		}
		if !l.always || l.synced >= target {
			l.mu.Unlock()
			return nil
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		l.mu.Lock()
	}
}

// AfterDurable calls fn once every record appended before the call is
// durable: at once when it is, else from the log's goroutine after the
// sync that covers it (fn must not block). While the log is broken fn
// waits for the rewrite; a closed log never calls it.
func (l *Log) AfterDurable(fn func()) {
	l.mu.Lock()
	if l.err == nil && (!l.always || l.synced >= l.appended) {
		l.mu.Unlock()
		fn()
		return
	}
	if errors.Is(l.err, ErrClosed) || errors.Is(l.err, ErrFenced) {
		l.mu.Unlock()
		return
	}
	l.waiters = append(l.waiters, waiter{lsn: l.appended, fn: fn})
	if len(l.waiters) > maxWaiters {
		l.waiters = l.waiters[1:]
		l.dropped++
	}
	l.mu.Unlock()
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	st := Stats{Appended: l.appended, Synced: l.synced, Unwritable: l.err != nil, CallbacksDropped: l.dropped}
	l.mu.Unlock()
	st.Syncs, st.SyncErrors = l.stats.syncs.Load(), l.stats.syncErrors.Load()
	st.BytesWritten = l.stats.bytes.Load()
	st.Snapshots, st.SnapshotErrors = l.stats.snapshots.Load(), l.stats.snapErrors.Load()
	st.Rewrites, st.SegmentsDeleted = l.stats.rewrites.Load(), l.stats.deleted.Load()
	st.BytesSinceSnapshot = l.sinceSnap.Load()
	st.RecoveredTornTails, st.RecoveredSetAside, st.RecoveredIncomplete = l.rec.TornTails, len(l.rec.SetAside), l.rec.Incomplete
	return st
}

// Metrics describes the log's series for internal/metrics, each read from
// stats (a Log's Stats) at scrape time.
func Metrics(stats func() Stats) []stat.Desc {
	counter := func(name, help string, f func(Stats) uint64) stat.Desc {
		return stat.NewCounter(name, help, func() uint64 { return f(stats()) })
	}
	gauge := func(name, help string, f func(Stats) float64) stat.Desc {
		return stat.NewGauge(name, help, func() float64 { return f(stats()) })
	}
	flag := func(name, help string, f func(Stats) bool) stat.Desc {
		return stat.NewFlag(name, help, func() bool { return f(stats()) })
	}
	return []stat.Desc{
		counter("likesd_wal_records_total", "Likes appended to the data dir's log.", func(s Stats) uint64 { return s.Appended }),
		counter("likesd_wal_syncs_total", "fdatasyncs of the log (one covers every like appended while the previous ran).", func(s Stats) uint64 { return s.Syncs }),
		counter("likesd_wal_sync_errors_total", "Failed writes or syncs of the log: writes were refused (507) until the replica was written anew.", func(s Stats) uint64 { return s.SyncErrors }),
		counter("likesd_wal_bytes_total", "Bytes written to log segments.", func(s Stats) uint64 { return s.BytesWritten }),
		counter("likesd_wal_snapshots_total", "Snapshots written (after a failure too).", func(s Stats) uint64 { return s.Snapshots }),
		counter("likesd_wal_acks_dropped_total", "Peer acknowledgements dropped while more than 65,536 waited for a sync (their writes time out as 202 at their origin).", func(s Stats) uint64 { return s.CallbacksDropped }),
		counter("likesd_wal_snapshot_errors_total", "Snapshots that failed; the log is kept until one succeeds.", func(s Stats) uint64 { return s.SnapshotErrors }),
		gauge("likesd_wal_recovered_torn_tails", "Segments the recovery at start cut at a torn tail (a crash during a write).", func(s Stats) float64 { return float64(s.RecoveredTornTails) }),
		gauge("likesd_wal_recovered_set_aside", "Damaged files the recovery at start set aside (renamed *.corrupt-*).", func(s Stats) float64 { return float64(s.RecoveredSetAside) }),
		flag("likesd_wal_recovered_incomplete", "1 when the recovery at start found damage: the node rebuilt (or rebuilds) from its peers before ready.", func(s Stats) bool { return s.RecoveredIncomplete }),
		flag("likesd_wal_unwritable", "1 while the data dir cannot take writes (disk full or failing, or a newer process owns it): writes answer 507.", func(s Stats) bool { return s.Unwritable }),
	}
}

// run owns the segment: it writes and syncs what was appended, rotates,
// starts snapshots, and writes the replica anew after a failure.
func (l *Log) run() {
	defer close(l.done)
	var tick <-chan time.Time
	if !l.always {
		t := time.NewTicker(l.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	var retry *time.Timer
	var retryC <-chan time.Time
	for {
		sync := l.always
		select {
		case <-l.stop:
			if !l.failing.Load() {
				l.flush(true)
			}
			return
		case <-l.kick: // in interval mode: written now, synced at the tick
		case <-tick:
			sync = true
		case <-retryC:
			retryC = nil
			l.rewrite()
		}
		if !l.failing.Load() {
			l.flush(sync)
		}
		if l.failing.Load() && retryC == nil && !l.fenced() {
			if retry == nil {
				retry = time.NewTimer(l.cfg.RetryAfter)
				defer retry.Stop()
			} else {
				retry.Reset(l.cfg.RetryAfter)
			}
			retryC = retry.C
		}
	}
}

func (l *Log) fenced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Is(l.err, ErrFenced)
}

// flush writes what was appended and, with sync, syncs it and
// acknowledges it. Without sync (interval mode, between ticks) the records
// reach the page cache at once, so a crash of the process alone loses
// none; only a power cut loses what the next tick would have synced.
func (l *Log) flush(sync bool) {
	l.mu.Lock()
	buf, upto := l.buf, l.appended
	if len(buf) == 0 && (upto == l.synced || !sync) {
		l.mu.Unlock()
		return
	}
	l.buf, l.spare = l.spare[:0], nil
	l.behind.Store(false)
	l.mu.Unlock()
	if sync {
		buf = append(buf, commitFrame...)
	}

	var err error
	if len(buf) > 0 {
		_, err = l.seg.Write(buf)
	}
	if err == nil && sync {
		if err = l.seg.SyncData(); err == nil {
			err = l.checkFence()
		}
		l.stats.syncs.Add(1)
	}
	if err != nil {
		l.fail(err)
		return
	}
	l.stats.bytes.Add(uint64(len(buf)))
	l.segBytes += int64(len(buf))
	since := l.sinceSnap.Add(int64(len(buf)))
	l.mu.Lock()
	l.spare = buf[:0]
	l.mu.Unlock()
	if !sync {
		return
	}
	l.advance(upto)

	if l.segBytes >= l.cfg.SegmentBytes || (since >= l.cfg.SnapshotBytes && !l.snapping.Load()) {
		if err := l.rotate(); err != nil {
			l.fail(err)
			return
		}
	}
	if l.sinceSnap.Load() >= l.cfg.SnapshotBytes && !l.snapping.Load() {
		l.startSnapshot(l.segSeq)
	}
}

// advance marks records up to upto durable and calls their waiters.
func (l *Log) advance(upto uint64) {
	l.mu.Lock()
	if upto > l.synced {
		l.synced = upto
	}
	k := 0
	for k < len(l.waiters) && l.waiters[k].lsn <= l.synced {
		k++
	}
	ready := l.waiters[:k:k]
	l.waiters = l.waiters[k:]
	if len(l.waiters) == 0 {
		l.waiters = nil
	}
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	for _, w := range ready {
		w.fn()
	}
}

// fail makes the log unwritable after a failed write or sync (or a lost
// fence): the segment is not trusted any more, and records are no longer
// kept until a rewrite starts.
func (l *Log) fail(err error) {
	if !errors.Is(err, ErrFenced) {
		err = fmt.Errorf("%w: %w", ErrDisk, err)
		l.stats.syncErrors.Add(1)
		l.log.Error().Err(err).Uint64("segment", l.segSeq).
			Msg("disk write failed: writes refused until the replica is written anew to a fresh file")
	} else {
		l.log.Error().Err(err).Msg("this process lost its data dir to a newer one: it writes no more")
	}
	if l.seg != nil {
		_ = l.seg.Close() // after a failed sync its pages are not trusted
		l.seg = nil
	}
	l.setErr(err)
}

func (l *Log) setErr(err error) {
	l.mu.Lock()
	l.err = err
	l.buffering = err == nil
	if err != nil {
		l.buf = l.buf[:0]
	}
	l.failing.Store(err != nil)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// rewrite writes the whole replica to a fresh snapshot after a failure, and
// resumes the log in a fresh segment after it.
func (l *Log) rewrite() {
	l.snapMu.Lock()
	defer l.snapMu.Unlock()
	l.mu.Lock()
	if l.err == nil || errors.Is(l.err, ErrFenced) || errors.Is(l.err, ErrClosed) {
		l.mu.Unlock()
		return
	}
	// From here records are kept again: those after cut may miss the
	// snapshot, so they go to the new segment.
	cut := l.appended
	l.buf = l.buf[:0]
	l.buffering = true
	l.mu.Unlock()

	seq := l.nextSeq.Add(1) - 1
	err := l.writeSnapshot(seq)
	if err == nil {
		err = l.openSegment(seq)
	}
	if err != nil {
		l.mu.Lock()
		l.buffering = false
		l.buf = l.buf[:0]
		l.mu.Unlock()
		l.log.Warn().Err(err).Dur("retry_after", l.cfg.RetryAfter).Msg("rewrite after a disk failure failed: writes stay refused")
		if errors.Is(err, ErrFenced) {
			l.fail(err)
		}
		return
	}
	l.stats.rewrites.Add(1)
	l.sinceSnap.Store(0)
	l.setErr(nil)
	l.advance(cut)
	l.log.Info().Uint64("segment", seq).Msg("disk writable again: replica written anew, writes resume")
	l.kickRun()
	l.removeBefore(seq)
}

func (l *Log) kickRun() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// rotate closes the segment (all of it is synced) and starts the next.
func (l *Log) rotate() error {
	return l.openSegment(l.nextSeq.Add(1) - 1)
}

// openSegment makes segment seq durable (header, file and directory
// synced) and makes it the one run writes to.
func (l *Log) openSegment(seq uint64) error {
	if err := l.checkFence(); err != nil {
		return err
	}
	f, err := l.fs.Create(l.path(segmentName(seq, l.gen)))
	if err != nil {
		return err
	}
	hdr := appendHeader(nil, segmentMagic, l.gen, seq)
	if _, err = f.Write(hdr); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = l.syncDir()
	}
	if err != nil {
		_ = f.Close()
		return err
	}
	if l.seg != nil {
		_ = l.seg.Close() // synced already: a close error loses nothing
	}
	l.seg, l.segSeq, l.segBytes = f, seq, int64(len(hdr))
	return nil
}

// makeDir creates the data dir if it is missing, durably: a directory
// created and not synced into its parent can vanish with all it holds.
func (l *Log) makeDir() error {
	var missing []string
	for d := l.cfg.Dir; ; d = l.fs.PathDir(d) {
		if _, err := l.fs.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		if l.fs.PathDir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := l.fs.MkdirAll(l.cfg.Dir, 0o755); err != nil {
		return err
	}
	for _, d := range missing {
		if err := syncDir(l.fs, l.fs.PathDir(d)); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) syncDir() error { return syncDir(l.fs, l.cfg.Dir) }

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkFence fails when this process's generation marker is gone: a newer
// process owns the directory.
func (l *Log) checkFence() error {
	if _, err := l.fs.Stat(l.path(l.marker)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s is gone", ErrFenced, l.marker)
		}
		return err
	}
	return nil
}

// Close syncs what was appended, stops the log's goroutines and releases
// the directory. It returns when ctx ends, even if they have not stopped.
func (l *Log) Close(ctx context.Context) error {
	l.stopped.Do(func() { close(l.stop) })
	select {
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	snapDone := make(chan struct{})
	go func() { l.snapWG.Wait(); close(snapDone) }()
	select {
	case <-snapDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	l.mu.Lock()
	err := l.err
	if err == nil {
		l.err = ErrClosed
		l.failing.Store(true)
	}
	waiting := len(l.waiters)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	if waiting > 0 {
		l.log.Debug().Int("callbacks", waiting).Msg("closed with callbacks waiting for a sync")
	}
	if cerr := l.closeFiles(); err == nil {
		err = cerr
	}
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	return err
}

func (l *Log) closeFiles() error {
	var err error
	if l.seg != nil {
		err = l.seg.Close()
		l.seg = nil
	}
	if l.lock != nil {
		if lerr := l.lock.Close(); err == nil {
			err = lerr
		}
		l.lock = nil
	}
	return err
}

// sealFrame fills the header of the frame that starts frame (its body
// after the header).
func sealFrame(frame []byte, seed uint32) {
	body := frame[frameHeader:]
	binary.LittleEndian.PutUint32(frame, uint32(len(body)))
	binary.LittleEndian.PutUint32(frame[4:], crcOf(seed, body))
}
