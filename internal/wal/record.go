package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/likesd/likesd/internal/vclock"
	"github.com/likesd/likesd/internal/wire"
)

// A frame is the unit of every file here: body length (uint32, little
// endian), CRC-32C of the body seeded by what the frame is (a header or
// not), then the body.
const (
	frameHeader = 8
	// maxBody bounds one frame: a corrupt length cannot make the reader
	// allocate or scan without limit. A snapshot entry holds one post's
	// set, split over several entries past snapshotEntryBytes.
	maxBody = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crcOf(seed uint32, b []byte) uint32 { return crc32.Update(seed, castagnoli, b) }

// appendFrame frames the body that fill appends to b.
func appendFrame(b []byte, seed uint32, fill func([]byte) []byte) []byte {
	at := len(b)
	b = append(b, make([]byte, frameHeader)...)
	b = fill(b)
	body := b[at+frameHeader:]
	binary.LittleEndian.PutUint32(b[at:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[at+4:], crcOf(seed, body))
	return b
}

// readFrame returns the body of the frame at the front of data and its
// whole length; ok is false when no valid frame starts there.
func readFrame(data []byte, seed uint32) (body []byte, n int, ok bool) {
	if len(data) < frameHeader {
		return nil, 0, false
	}
	l := binary.LittleEndian.Uint32(data)
	if l == 0 || l > maxBody || int(l) > len(data)-frameHeader {
		return nil, 0, false
	}
	body = data[frameHeader : frameHeader+int(l)]
	if crcOf(seed, body) != binary.LittleEndian.Uint32(data[4:]) {
		return nil, 0, false
	}
	return body, frameHeader + int(l), true
}

// scan calls fn with each valid frame's body from the front of data and
// returns where the valid run ends. At a bad frame it looks at what
// follows: if two commit frames do (the batch after the next sync was
// written, so the bad bytes had been synced), the damage is in the middle;
// otherwise the bad bytes are in the last batch, which no completed sync
// covers, whatever holes a power cut left in it: a torn tail. fn's error
// stops the scan.
func scan(data []byte, seed uint32, fn func(body []byte) error) (end int, middle bool, err error) {
	for end < len(data) {
		body, n, ok := readFrame(data[end:], seed)
		if !ok {
			return end, commitsAfter(data[end+1:], seed) >= 2, nil
		}
		if err := fn(body); err != nil {
			return end, false, err
		}
		end += n
	}
	return end, false, nil
}

// maxResyncWork bounds the bytes checksummed while looking for frames after
// a bad one, so that crafted bytes cannot make recovery quadratic; past it
// the damage counts as in the middle (the node then rebuilds from peers).
const maxResyncWork = 256 << 20

// commitsAfter counts the valid commit frames in data, up to two, finding
// frames at any offset.
func commitsAfter(data []byte, seed uint32) int {
	commits, work := 0, 0
	for k := 0; k+frameHeader < len(data) && commits < 2; {
		l := binary.LittleEndian.Uint32(data[k:])
		if l == 0 || l > maxBody || int(l) > len(data)-k-frameHeader {
			k++
			continue
		}
		if work += int(l); work > maxResyncWork {
			return 2
		}
		body, n, ok := readFrame(data[k:], seed)
		if !ok {
			k++
			continue
		}
		if isCommit(body) {
			commits++
		}
		k += n
	}
	return commits
}

// commitFrame ends every batch a sync covers: recovery tells a torn tail
// from damage in the middle by them.
var commitFrame = appendFrame(nil, recordSeed, func(b []byte) []byte { return append(b, byte(KindCommit)) })

func isCommit(body []byte) bool { return len(body) == 1 && body[0] == byte(KindCommit) }

// Kind is what a log record says.
type Kind uint8

// Record kinds. An unlike has its kind reserved so that the format does not
// change when likesd learns to take a like back; this version refuses to
// replay one (ErrUnsupported) rather than ignore it.
const (
	KindLike   Kind = 1
	KindUnlike Kind = 2
	// KindCommit closes the batch a sync covered; it has no body.
	KindCommit Kind = 3
)

// Record is one entry of the log: what was applied, and its dot when the
// applier knew it (zero otherwise).
type Record struct {
	Kind Kind
	Dot  vclock.Dot
	Post string
	User string
}

// Decoding errors.
var (
	ErrCorrupt     = errors.New("wal: corrupt record")
	ErrUnsupported = errors.New("wal: record kind not supported by this version")
)

// appendRecord appends r's body: kind, origin (8 bytes), seq (uvarint),
// post length (uvarint), post, user.
func appendRecord(b []byte, r Record) []byte {
	b = append(b, byte(r.Kind))
	b = binary.BigEndian.AppendUint64(b, r.Dot.Origin)
	b = binary.AppendUvarint(b, r.Dot.Seq)
	b = binary.AppendUvarint(b, uint64(len(r.Post)))
	b = append(b, r.Post...)
	return append(b, r.User...)
}

// decodeRecord parses a record body. Post and user alias body.
func decodeRecord(body []byte) (kind Kind, dot vclock.Dot, post, user []byte, err error) {
	if len(body) < 1+8+1+1 {
		return 0, dot, nil, nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(body))
	}
	kind = Kind(body[0])
	if kind != KindLike && kind != KindUnlike {
		return 0, dot, nil, nil, fmt.Errorf("%w: kind %d", ErrCorrupt, kind)
	}
	dot.Origin = binary.BigEndian.Uint64(body[1:9])
	rest := body[9:]
	if dot.Seq, rest, err = wire.Uvarint(rest); err != nil {
		return 0, dot, nil, nil, fmt.Errorf("%w: seq: %w", ErrCorrupt, err)
	}
	var pl uint64
	if pl, rest, err = wire.Uvarint(rest); err != nil {
		return 0, dot, nil, nil, fmt.Errorf("%w: post length: %w", ErrCorrupt, err)
	}
	if pl == 0 || pl >= uint64(len(rest)) {
		return 0, dot, nil, nil, fmt.Errorf("%w: post of %d bytes in %d", ErrCorrupt, pl, len(rest))
	}
	return kind, dot, rest[:pl], rest[pl:], nil
}
