package wal

import (
	"errors"
	"fmt"
	"io"
	"time"
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

	// The newest valid snapshot; a damaged one is set aside and the next
	// older one tried. Segments before the base were covered by a snapshot.
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
		base = max(base, f.seq)
	}
	for i, f := range ls.segments {
		if f.seq < base {
			continue // deleted by the next snapshot's clean-up
		}
		if i+1 < len(ls.segments) && ls.segments[i+1].seq == f.seq {
			// A take-over cut short after its copy: the copy is read.
			if err := l.remove(f.name); err != nil {
				return rec, err
			}
			continue
		}
		if err := l.replaySegment(&rec, f); err != nil {
			return rec, err
		}
		rec.Segments++
	}
	l.nextSeq.Store(ls.maxSeq + 1)
	if err := l.openSegment(l.nextSeq.Add(1) - 1); err != nil {
		return rec, fmt.Errorf("wal: start segment: %w", err)
	}
	// Older segments and snapshots become deletable only with a snapshot
	// of this generation; a set-aside file or a cut tail wants one soon.
	rec.needSnapshot = rec.Incomplete || rec.TornTails > 0 || len(ls.segments) > 8
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
func (l *Log) replaySegment(rec *Recovery, f file) error {
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
	var bad error
	end, middle, _ := scan(frames, recordSeed, func(body []byte) error {
		kind, _, post, user, err := decodeRecord(body)
		switch {
		case err != nil:
			bad = err
		case kind != KindLike:
			bad = fmt.Errorf("%w: kind %d", ErrUnsupported, kind)
		default:
			l.replica.RestoreLike(string(post), string(user))
			rec.Records++
		}
		return nil
	})
	hdrLen := len(data) - len(frames)
	switch {
	case bad != nil:
		l.setAside(rec, f.name, "record", bad)
		return nil
	case middle:
		l.setAside(rec, f.name, fmt.Sprintf("crc-at-%d", hdrLen+end), errors.New("a bad record with valid ones after it"))
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
	if err := l.writeDurably(name, append(appendHeader(nil, segmentMagic, l.gen, f.seq), frames[:end]...)); err != nil {
		return fmt.Errorf("wal: take over %s: %w", f.name, err)
	}
	return l.remove(f.name)
}

func (l *Log) readAll(name string) ([]byte, error) {
	r, err := l.fs.Open(l.path(name))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// writeDurably writes a whole file: to a temporary name, synced, renamed,
// and the directory synced.
func (l *Log) writeDurably(name string, data []byte) error {
	tmp := l.path(name + tmpExt)
	f, err := l.fs.Create(tmp)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
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
