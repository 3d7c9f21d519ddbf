package wal

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/wire"
)

// Snapshot entries: a post's set (or part of it: a large set is split so
// that no entry passes maxBody), and the end, which counts what came before
// it. A snapshot without a valid end is not a snapshot.
const (
	entryPost byte = 'P'
	entryEnd  byte = 'E'
)

// snapshotEntryBytes: a set whose blocks take more than this is written in
// several entries of at most this many bytes of members, well under
// maxBody whatever its ids.
const snapshotEntryBytes = 4 << 20

// startSnapshot writes snapshot seq in the background: seq is the segment
// being written now, so every segment before it is covered.
func (l *Log) startSnapshot(seq uint64) {
	if !l.snapping.CompareAndSwap(false, true) {
		return
	}
	l.snapWG.Add(1)
	go func() {
		defer l.snapWG.Done()
		defer l.snapping.Store(false)
		l.snapMu.Lock()
		defer l.snapMu.Unlock()
		if l.Err() != nil {
			return // a rewrite will write one
		}
		start := time.Now()
		written := l.sinceSnap.Load()
		if err := l.writeSnapshot(seq); err != nil {
			l.stats.snapErrors.Add(1)
			l.log.Warn().Err(err).Uint64("seq", seq).Msg("snapshot failed: the log is kept until one succeeds")
			return
		}
		l.sinceSnap.Add(-written)
		l.log.Info().Uint64("seq", seq).Dur("took", time.Since(start)).Msg("snapshot written; older log deleted")
		l.removeBefore(seq)
	}()
}

// writeSnapshot writes every like of the replica to snapshot seq: to a
// temporary file, synced, then renamed and the directory synced. The sets
// are copy-on-write clones taken one shard at a time, so writes go on and
// memory is not doubled; each set is written in its block form (front-coded,
// as in memory) through one reused buffer, and recovery adopts the blocks.
func (l *Log) writeSnapshot(seq uint64) (err error) {
	name := snapshotName(seq, l.gen)
	tmp := l.path(name + tmpExt)
	f, err := l.fs.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if f != nil {
				_ = f.Close()
			}
			_ = l.fs.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	buf := appendHeader(nil, snapshotMagic, l.gen, seq)
	var posts, likes uint64
	var werr error
	emit := func(post string, users gset.Set) bool {
		buf = appendFrame(buf[:0], recordSeed, func(b []byte) []byte {
			b = append(b, entryPost)
			b = wire.AppendString(b, post)
			return users.AppendBlocks(b)
		})
		if len(buf)-frameHeader > maxBody {
			werr = fmt.Errorf("wal: a snapshot entry of %d bytes for post %q: over the %d a reader takes", len(buf), post, maxBody)
			return false
		}
		if _, werr = w.Write(buf); werr != nil {
			return false
		}
		posts++
		likes += uint64(users.Len())
		return true
	}
	if _, err = w.Write(buf); err != nil {
		return err
	}
	l.replica.Snapshot(func(post string, users gset.Set) bool {
		if users.Bytes() <= snapshotEntryBytes {
			return emit(post, users)
		}
		var part []string
		size, ok := 0, true
		users.Walk(func(m string) bool {
			part, size = append(part, m), size+len(m)+3
			if size >= snapshotEntryBytes {
				ok = emit(post, gset.New(part...))
				part, size = part[:0], 0
			}
			return ok
		})
		if ok && len(part) > 0 {
			ok = emit(post, gset.New(part...))
		}
		return ok
	})
	if werr != nil {
		return werr
	}
	buf = appendFrame(buf[:0], recordSeed, func(b []byte) []byte {
		b = append(b, entryEnd)
		b = binary.AppendUvarint(b, posts)
		return binary.AppendUvarint(b, likes)
	})
	if _, err = w.Write(buf); err != nil {
		return err
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	err, f = f.Close(), nil
	if err != nil {
		return err
	}
	if err = l.checkFence(); err != nil {
		return err
	}
	if err = l.fs.Rename(tmp, l.path(name)); err != nil {
		return err
	}
	if err = l.syncDir(); err != nil {
		return err
	}
	l.stats.snapshots.Add(1)
	return nil
}

// removeBefore deletes the segments and snapshots that snapshot seq makes
// redundant. Only files of this generation or older are touched, and only
// while the fence holds.
func (l *Log) removeBefore(seq uint64) {
	names, err := l.fs.List(l.cfg.Dir)
	if err != nil {
		l.log.Warn().Err(err).Msg("listing the data dir failed: old log kept")
		return
	}
	ls := parseListing(names)
	var doomed []string
	for _, f := range ls.segments {
		if f.seq < seq && f.gen <= l.gen {
			doomed = append(doomed, f.name)
		}
	}
	for _, f := range ls.snapshots {
		if f.seq < seq && f.gen <= l.gen {
			doomed = append(doomed, f.name)
		}
	}
	for _, n := range doomed {
		if err := l.checkFence(); err != nil {
			return
		}
		if err := l.fs.Remove(l.path(n)); err != nil {
			l.log.Warn().Err(err).Str("file", n).Msg("could not delete an old log file")
			continue
		}
		l.stats.deleted.Add(1)
	}
}

// loadSnapshot restores snapshot f into the replica. It reports how many
// likes it held; an error says why it is not valid (what was read before
// the damage is restored all the same: it is real).
//
// The file is read and its frames checked here, in order; the post entries
// are handed in chunks to GOMAXPROCS workers that decode them and restore
// them (RestoreSet is safe for concurrent use; sets are a union, so the
// order does not matter). An entry that fails to decode stops the load
// like a bad frame does: the entries restored are each whole and checked,
// though with workers some after the bad one may be among them.
func (l *Log) loadSnapshot(f file) (likes uint64, err error) {
	ad := newAdopter(l.replica, runtime.GOMAXPROCS(0))
	err = l.readSnapshot(f, ad)
	likes, aerr := ad.wait()
	if err == nil {
		err = aerr
	}
	return likes, err
}

// readSnapshot checks snapshot f's frames in order and hands its post
// entries to ad; it returns nil without reading further once ad has
// failed (ad.wait says why).
func (l *Log) readSnapshot(f file, ad *adopter) error {
	r, err := l.fs.Open(l.path(f.name))
	if err != nil {
		return err
	}
	defer r.Close()
	br := bufio.NewReaderSize(r, 1<<20)
	var body []byte
	next := func(seed uint32) ([]byte, error) {
		var hdr [frameHeader]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, fmt.Errorf("truncated: %w", err)
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if n == 0 || n > maxBody {
			return nil, fmt.Errorf("bad frame length %d", n)
		}
		body = append(body[:0], make([]byte, n)...)
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, fmt.Errorf("truncated: %w", err)
		}
		if crcOf(seed, body) != binary.LittleEndian.Uint32(hdr[4:]) {
			return nil, fmt.Errorf("checksum mismatch")
		}
		return body, nil
	}
	hb, err := next(0)
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if !headerIs(hb, snapshotMagic, f.gen, f.seq) {
		return fmt.Errorf("header does not match the file's name")
	}
	seed := recordSeed
	var posts uint64
	for {
		b, err := next(seed)
		if err != nil {
			return err
		}
		switch b[0] {
		case entryPost:
			if !ad.add(b[1:]) {
				return nil
			}
			posts++
		case entryEnd:
			likes, err := ad.wait()
			if err != nil {
				return nil
			}
			p, rest, err1 := wire.Uvarint(b[1:])
			n, rest, err2 := wire.Uvarint(rest)
			if err1 != nil || err2 != nil || len(rest) != 0 || p != posts || n != likes {
				return fmt.Errorf("end entry does not match what came before it")
			}
			return nil
		default:
			return fmt.Errorf("unknown entry %q", b[0])
		}
	}
}

// adopterChunk is how many bytes of post entries a worker is handed at a
// time: large enough that handing them over costs nothing next to
// decoding them.
const adopterChunk = 256 << 10

// adopter decodes a snapshot's post entries and restores them into the
// replica, on workers goroutines (on the caller's with one).
type adopter struct {
	replica Replica
	work    chan []byte // chunks: entries, each a uvarint length and a body
	free    chan []byte
	chunk   []byte
	wg      sync.WaitGroup
	likes   atomic.Uint64
	failed  atomic.Bool
	errOnce sync.Once
	err     error
	waited  bool
}

func newAdopter(replica Replica, workers int) *adopter {
	a := &adopter{replica: replica}
	if workers <= 1 {
		return a
	}
	a.work, a.free = make(chan []byte, workers), make(chan []byte, 2*workers)
	for range workers {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for c := range a.work {
				a.adoptChunk(c)
				select {
				case a.free <- c[:0]:
				default:
				}
			}
		}()
	}
	return a
}

// add takes a post entry's body (after its tag); body may be reused once
// add returns. It reports false once an entry has failed.
func (a *adopter) add(body []byte) bool {
	if a.failed.Load() {
		return false
	}
	if a.work == nil {
		a.adopt(body)
		return !a.failed.Load()
	}
	if a.chunk == nil {
		select {
		case a.chunk = <-a.free:
		default:
			a.chunk = make([]byte, 0, 2*adopterChunk)
		}
	}
	a.chunk = binary.AppendUvarint(a.chunk, uint64(len(body)))
	a.chunk = append(a.chunk, body...)
	if len(a.chunk) >= adopterChunk {
		a.work <- a.chunk
		a.chunk = nil
	}
	return true
}

// wait hands over what is left, waits for the workers and returns the
// likes restored and the first entry's error. It may be called again.
func (a *adopter) wait() (uint64, error) {
	if !a.waited {
		a.waited = true
		if a.work != nil {
			if len(a.chunk) > 0 && !a.failed.Load() {
				a.work <- a.chunk
			}
			a.chunk = nil
			close(a.work)
			a.wg.Wait()
		}
	}
	return a.likes.Load(), a.err
}

func (a *adopter) adoptChunk(c []byte) {
	for len(c) > 0 && !a.failed.Load() {
		n, rest, _ := wire.Uvarint(c) // written by add: well formed
		a.adopt(rest[:n])
		c = rest[n:]
	}
}

func (a *adopter) adopt(body []byte) {
	post, rest, err := wire.String(body, maxBody)
	if err != nil || post == "" {
		a.fail(fmt.Errorf("bad post entry"))
		return
	}
	set, err := decodeSet(rest)
	if err != nil {
		a.fail(err)
		return
	}
	a.replica.RestoreSet(post, set)
	a.likes.Add(uint64(set.Len()))
}

func (a *adopter) fail(err error) {
	a.errOnce.Do(func() { a.err = err })
	a.failed.Store(true)
}

// decodeSet adopts a set's blocks as the snapshot holds them.
func decodeSet(b []byte) (gset.Set, error) {
	s, rest, err := gset.DecodeBlocks(b)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes after a set", len(rest))
	}
	return s, err
}
