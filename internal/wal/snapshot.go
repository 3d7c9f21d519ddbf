package wal

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
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
func (l *Log) loadSnapshot(f file) (likes uint64, err error) {
	r, err := l.fs.Open(l.path(f.name))
	if err != nil {
		return 0, err
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
		return 0, fmt.Errorf("header: %w", err)
	}
	if !headerIs(hb, snapshotMagic, f.gen, f.seq) {
		return 0, fmt.Errorf("header does not match the file's name")
	}
	seed := recordSeed
	var posts uint64
	for {
		b, err := next(seed)
		if err != nil {
			return likes, err
		}
		switch b[0] {
		case entryPost:
			post, rest, err := wire.String(b[1:], maxBody)
			if err != nil || post == "" {
				return likes, fmt.Errorf("bad post entry")
			}
			set, err := decodeSet(rest)
			if err != nil {
				return likes, err
			}
			l.replica.RestoreSet(post, set)
			posts++
			likes += uint64(set.Len())
		case entryEnd:
			p, rest, err1 := wire.Uvarint(b[1:])
			n, rest, err2 := wire.Uvarint(rest)
			if err1 != nil || err2 != nil || len(rest) != 0 || p != posts || n != likes {
				return likes, fmt.Errorf("end entry does not match what came before it")
			}
			return likes, nil
		default:
			return likes, fmt.Errorf("unknown entry %q", b[0])
		}
	}
}

// decodeSet adopts a set's blocks as the snapshot holds them.
func decodeSet(b []byte) (gset.Set, error) {
	s, rest, err := gset.DecodeBlocks(b)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes after a set", len(rest))
	}
	return s, err
}
