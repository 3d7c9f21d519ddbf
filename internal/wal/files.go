package wal

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

const (
	segmentExt  = ".wal"
	snapshotExt = ".snap"
	tmpExt      = ".tmp"
	lockName    = "LOCK"
	// incompleteName marks a data dir whose recovery found damage, until
	// the node has rebuilt from its peers.
	incompleteName = "INCOMPLETE"
	markerPfx      = "gen-"
	corruptTag     = ".corrupt-"
)

// file is a segment or snapshot found in the directory.
type file struct {
	name string
	seq  uint64
	gen  uint64
}

func segmentName(seq, gen uint64) string  { return fmt.Sprintf("%016x-%08x%s", seq, gen, segmentExt) }
func snapshotName(seq, gen uint64) string { return fmt.Sprintf("%016x-%08x%s", seq, gen, snapshotExt) }
func markerName(gen uint64) string        { return fmt.Sprintf("%s%08x", markerPfx, gen) }

// listing is what a directory holds, parsed.
type listing struct {
	segments, snapshots []file // by seq, ascending
	markers             []uint64
	temps               []string // unfinished snapshots and cuts: removed at open
	maxGen, maxSeq      uint64
	incomplete          bool // INCOMPLETE is there
}

func parseListing(names []string) listing {
	var l listing
	for _, n := range names {
		switch {
		case n == incompleteName:
			l.incomplete = true
		case strings.Contains(n, corruptTag):
			// Set aside: kept for the operator, never read again.
		case strings.HasSuffix(n, tmpExt):
			l.temps = append(l.temps, n)
		case strings.HasPrefix(n, markerPfx):
			var g uint64
			if _, err := fmt.Sscanf(n, markerPfx+"%x", &g); err == nil && markerName(g) == n {
				l.markers = append(l.markers, g)
				l.maxGen = max(l.maxGen, g)
			}
		case strings.HasSuffix(n, segmentExt), strings.HasSuffix(n, snapshotExt):
			var f file
			ext := segmentExt
			if strings.HasSuffix(n, snapshotExt) {
				ext = snapshotExt
			}
			if _, err := fmt.Sscanf(strings.TrimSuffix(n, ext), "%x-%x", &f.seq, &f.gen); err != nil {
				continue
			}
			f.name = n
			if ext == segmentExt && segmentName(f.seq, f.gen) == n {
				l.segments = append(l.segments, f)
			} else if ext == snapshotExt && snapshotName(f.seq, f.gen) == n {
				l.snapshots = append(l.snapshots, f)
			} else {
				continue
			}
			l.maxGen = max(l.maxGen, f.gen)
			l.maxSeq = max(l.maxSeq, f.seq)
		}
	}
	bySeq := func(a, b file) int { return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.gen, b.gen)) }
	slices.SortFunc(l.segments, bySeq)
	slices.SortFunc(l.snapshots, bySeq)
	return l
}

// Headers: the first frame of a file (seed 0) says what it is, its
// generation and its number; the frames after it use recordSeed, so a
// header is never taken for a record nor a record for a header.
const (
	segmentMagic  = "likesd-wal-1"
	snapshotMagic = "likesd-snap-1"
)

func appendHeader(b []byte, magic string, gen, seq uint64) []byte {
	return appendFrame(b, 0, func(b []byte) []byte {
		b = append(b, magic...)
		b = binary.BigEndian.AppendUint64(b, gen)
		return binary.BigEndian.AppendUint64(b, seq)
	})
}

// readHeader checks the header of a file named for gen and seq and returns
// the frames after it.
func readHeader(data []byte, magic string, gen, seq uint64) ([]byte, bool) {
	body, n, ok := readFrame(data, 0)
	if !ok || !headerIs(body, magic, gen, seq) {
		return nil, false
	}
	return data[n:], true
}

// headerIs reports whether a header frame's body names magic, gen and seq.
func headerIs(body []byte, magic string, gen, seq uint64) bool {
	return len(body) == len(magic)+16 && string(body[:len(magic)]) == magic &&
		binary.BigEndian.Uint64(body[len(magic):]) == gen && binary.BigEndian.Uint64(body[len(magic)+8:]) == seq
}

// recordSeed seeds the CRC of every frame after a header.
const recordSeed uint32 = 0x6c696b65
