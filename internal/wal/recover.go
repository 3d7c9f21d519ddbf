package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"github.com/likesd/likesd/internal/store"
)

// Recovery says what Open found.
type Recovery struct {
	Generation    uint64
	Snapshot      string // the snapshot loaded; empty for none
	SnapshotLikes uint64
	Segments      int    // segments replayed
	Records       uint64 // log records replayed
	TornTails     int    // segments cut at their last valid record
	// SetAside are the files renamed because they were damaged in the
	// middle (or a snapshot anywhere).
	SetAside []string
	// Incomplete: something could not be read. The node must rebuild what
	// it lacks from its peers before it reports ready.
	Incomplete bool
	Took       time.Duration

	needSnapshot bool
	logBytes     int64 // the replayed segments' records
}

// Rebuilt says the node has synced from a peer since a recovery that was
// incomplete: its data is whole again, and the next recovery need not
// rebuild.
func (l *Log) Rebuilt() error {
	if err := l.fs.Remove(l.path(incompleteName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return l.syncDir()
}

// Empty reports whether nothing was recovered.
func (r Recovery) Empty() bool { return r.SnapshotLikes == 0 && r.Records == 0 }

// recover takes a new generation, fences older ones out, restores the
// newest valid snapshot and the log after it, and opens a fresh segment.
func (l *Log) recover() (Recovery, error) {
	start := time.Now()
	var rec Recovery
	names, err := l.fs.List(l.cfg.Dir)
	if err != nil {
		return rec, fmt.Errorf("wal: list data dir: %w", err)
	}
	ls := parseListing(names)

	// Fence first: a stale process must lose its marker before anything
	// it synced is read, so that what it acknowledges is read here.
	l.gen = ls.maxGen + 1
	l.marker = markerName(l.gen)
	rec.Generation = l.gen
	mf, err := l.fs.Create(l.path(l.marker))
	if err == nil {
		err = mf.Sync()
		if cerr := mf.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = l.syncDir()
	}
	if err != nil {
		return rec, fmt.Errorf("wal: write generation marker: %w", err)
	}
	for _, g := range ls.markers {
		if err := l.fs.Remove(l.path(markerName(g))); err != nil {
			return rec, fmt.Errorf("wal: remove old generation marker: %w", err)
		}
	}
	for _, t := range ls.temps {
		_ = l.fs.Remove(l.path(t)) // an unfinished snapshot or cut
	}
	if err := l.syncDir(); err != nil {
		return rec, fmt.Errorf("wal: sync data dir: %w", err)
	}
	// List again: a stale process may have written files between the first
	// listing and the fence (the ones it acknowledged from are all here
	// now: it acknowledges only while its marker is there).
	if names, err = l.fs.List(l.cfg.Dir); err != nil {
		return rec, fmt.Errorf("wal: list data dir: %w", err)
	}
	ls = parseListing(names)
	if ls.incomplete {
		// An earlier recovery found damage and the node has not rebuilt
		// from its peers since: its data is still partial.
		rec.Incomplete = true
		l.log.Error().Msg("an earlier recovery found damage and this node has not rebuilt from its peers since: it will before it is ready")
	}

	// The newest valid snapshot; a damaged one is set aside and the next
	// older one tried. Segments before the base were covered by a snapshot;
	// with no valid snapshot every segment present is read.
	var base uint64
	for i := len(ls.snapshots) - 1; i >= 0; i-- {
		f := ls.snapshots[i]
		likes, err := l.loadSnapshot(f)
		rec.SnapshotLikes += likes
		if err == nil {
			rec.Snapshot, base = f.name, f.seq
			break
		}
		l.setAside(&rec, f.name, "snapshot", err)
	}
	lastOfGen := map[uint64]uint64{}
	for _, f := range ls.segments {
		lastOfGen[f.gen] = max(lastOfGen[f.gen], f.seq)
	}
	for i, f := range ls.segments {
		if f.seq < base {
			continue // deleted by the next snapshot's clean-up
		}
		if i+1 < len(ls.segments) && ls.segments[i+1].seq == f.seq {
			// Two generations' files of one number: a take-over cut short
			// after its copy (the copy holds the same records), or a file
			// a stale process made after the fence (it acknowledged
			// nothing in it). The newer one is read.
			if err := l.remove(f.name); err != nil {
				return rec, err
			}
			continue
		}
		if err := l.replaySegment(&rec, f, lastOfGen[f.gen] == f.seq); err != nil {
			return rec, err
		}
		rec.Segments++
	}
	if rec.Incomplete {
		// Durable before the snapshot that follows makes the partial data
		// look whole: removed only once the node has rebuilt (Rebuilt).
		if err := l.writeDurably(incompleteName, []byte("recovery found damage; the node rebuilds from its peers before it is ready\n")); err != nil {
			return rec, fmt.Errorf("wal: mark the data dir incomplete: %w", err)
		}
	}
	l.nextSeq.Store(ls.maxSeq + 1)
	if err := l.openSegment(l.nextSeq.Add(1) - 1); err != nil {
		return rec, fmt.Errorf("wal: start segment: %w", err)
	}
	// Older segments and snapshots become deletable only with a snapshot
	// of this generation; a set-aside file or a cut tail wants one soon.
	// The log replayed counts toward the next snapshot, so restarts do not
	// let it grow past SnapshotBytes.
	l.sinceSnap.Store(rec.logBytes)
	rec.needSnapshot = rec.Incomplete || rec.TornTails > 0 || rec.logBytes >= l.cfg.SnapshotBytes
	rec.Took = time.Since(start)
	ev := l.log.Info()
	if rec.Incomplete {
		ev = l.log.Error()
	}
	ev.Uint64("generation", rec.Generation).Str("snapshot", rec.Snapshot).Uint64("snapshot_likes", rec.SnapshotLikes).
		Int("segments", rec.Segments).Uint64("records", rec.Records).Int("torn_tails", rec.TornTails).
		Strs("set_aside", rec.SetAside).Bool("incomplete", rec.Incomplete).Dur("took", rec.Took).
		Msg("recovered the data dir")
	return rec, nil
}

// replaySegment restores a segment's records and takes the segment over:
// its valid prefix is copied under this generation's name and the old file
// removed, so a stale process still appending to it appends to nothing
// anyone reads (a torn tail is cut on the way). Damage in the middle sets
// the file aside after what could be read is restored.
// A torn tail is possible only in the last segment a generation wrote; in
// any other, damage anywhere is damage.
func (l *Log) replaySegment(rec *Recovery, f file, last bool) error {
	data, err := l.readAll(f.name)
	if err != nil {
		return fmt.Errorf("wal: read %s: %w", f.name, err)
	}
	frames, ok := readHeader(data, segmentMagic, f.gen, f.seq)
	if !ok {
		if _, _, ok := readFrame(data, 0); !ok && len(data) < 256 {
			// Created, header never synced: a crash right after the create.
			return l.remove(f.name)
		}
		l.setAside(rec, f.name, "header", errors.New("bad header"))
		return nil
	}
	// The records are restored in one batch (see store.RestoreLikes), their
	// ids substrings of the segment's bytes: no copy, no string a record.
	// Those bytes are not written to before RestoreLikes returns, and the
	// store keeps copies of what it keeps, so no string ever changes.
	var bad error
	likes := make([]store.Like, 0, len(frames)/32) // records of short ids take 32 bytes and more
	text := unsafe.String(unsafe.SliceData(frames), len(frames))
	at := 0 // where the frame scan is at
	end, middle, _ := scan(frames, recordSeed, func(body []byte) error {
		bodyEnd := at + frameHeader + len(body)
		at = bodyEnd
		if isCommit(body) {
			return nil
		}
		kind, _, post, user, err := decodeRecord(body)
		switch {
		case err != nil:
			bad = err
		case kind != KindLike:
			bad = fmt.Errorf("%w: kind %d", ErrUnsupported, kind)
		default:
			userAt := bodyEnd - len(user)
			likes = append(likes, store.Like{Post: text[userAt-len(post) : userAt], User: text[userAt:bodyEnd]})
		}
		return nil
	})
	l.replica.RestoreLikes(likes)
	rec.Records += uint64(len(likes))
	hdrLen := len(data) - len(frames)
	rec.logBytes += int64(end)
	switch {
	case bad != nil:
		l.setAside(rec, f.name, "record", bad)
		return nil
	case middle || (!last && end < len(frames)):
		l.setAside(rec, f.name, fmt.Sprintf("crc-at-%d", hdrLen+end), errors.New("a bad record in bytes a completed sync covered"))
		return nil
	case end < len(frames):
		rec.TornTails++
		l.log.Warn().Str("file", f.name).Int("valid_bytes", hdrLen+end).Int("cut_bytes", len(frames)-end).
			Msg("torn tail: segment cut at its last valid record")
	}
	if f.gen == l.gen {
		return nil
	}
	name := segmentName(f.seq, l.gen)
	if err := l.writeDurably(name, appendHeader(nil, segmentMagic, l.gen, f.seq), frames[:end]); err != nil {
		return fmt.Errorf("wal: take over %s: %w", f.name, err)
	}
	return l.remove(f.name)
}

// readAll reads a whole file into a buffer of its size (io.ReadAll's
// doubling would leave as much garbage again).
func (l *Log) readAll(name string) ([]byte, error) {
	r, err := l.fs.Open(l.path(name))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var size int64
	if fi, err := r.Stat(); err == nil {
		size = fi.Size()
	}
	b := make([]byte, 0, size+1) // +1: io.EOF is read without growing
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		switch {
		case err == io.EOF:
			return b, nil
		case err != nil:
			return nil, err
		case len(b) == cap(b):
			b = append(b, 0)[:len(b)]
		}
	}
}

// writeDurably writes a whole file, the parts one after the other: to a
// temporary name, synced, renamed, and the directory synced.
func (l *Log) writeDurably(name string, parts ...[]byte) error {
	tmp := l.path(name + tmpExt)
	f, err := l.fs.Create(tmp)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err = f.Write(p); err != nil {
			break
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.fs.Rename(tmp, l.path(name))
	}
	if err == nil {
		err = l.syncDir()
	}
	return err
}

// setAside renames a damaged file to a name that says why, so it is never
// read again and the operator can look at it.
func (l *Log) setAside(rec *Recovery, name, why string, cause error) {
	to := name + corruptTag + why
	rec.Incomplete = true
	rec.SetAside = append(rec.SetAside, to)
	l.log.Error().Err(cause).Str("file", name).Str("renamed_to", to).
		Msg("damaged file set aside: what it lacks is rebuilt from peers before this node is ready")
	if err := l.fs.Rename(l.path(name), l.path(to)); err != nil {
		l.log.Error().Err(err).Str("file", name).Msg("could not set a damaged file aside")
		return
	}
	_ = l.syncDir()
}

func (l *Log) remove(name string) error {
	if err := l.fs.Remove(l.path(name)); err != nil {
		return err
	}
	return l.syncDir()
}
