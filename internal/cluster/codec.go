package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/wire"
)

// Message types: the first byte of every message between nodes. This file
// is the only place that knows their bytes.
const (
	msgLikes byte = 1 // fast path: origin, first seq, count, then the likes
	// 2 to 6 carried version-vector repair; they are never reused, so a node
	// of an older version is rejected, not misread.
	msgSync byte = 7 // anti-entropy: an antientropy.Message follows
)

// maxIDLen bounds a post or user id on decode. The API admits 256 bytes; the
// margin lets that limit grow without a wire change.
const maxIDLen = 4096

// frameHeaderMax is the largest frame header: type, origin, first, count.
const frameHeaderMax = 1 + 8 + binary.MaxVarintLen64*2

// Decoding errors; test with errors.Is.
var (
	errEmpty     = errors.New("cluster: empty message")
	errType      = errors.New("cluster: unknown message type")
	errTruncated = errors.New("cluster: truncated message")
	errIDLen     = errors.New("cluster: id too long")
	errFrame     = errors.New("cluster: inconsistent frame")
)

// frame is a run of likes from one origin with contiguous seqs.
type frame struct {
	origin uint64
	first  uint64
	likes  []store.Like
}

// frameBuilder packs likes with contiguous seqs into frames of at most max
// bytes.
type frameBuilder struct {
	max    int
	kind   byte
	origin uint64
	first  uint64
	count  int
	body   []byte
}

func newFrameBuilder(max int, kind byte, origin uint64) *frameBuilder {
	return &frameBuilder{max: max, kind: kind, origin: origin}
}

// likeSize is the encoded size of l in a frame.
func likeSize(l store.Like) int { return wire.StringLen(l.Post) + wire.StringLen(l.User) }

// fits reports whether l can be added without passing max.
func (f *frameBuilder) fits(l store.Like) bool {
	return frameHeaderMax+len(f.body)+likeSize(l) <= f.max
}

// add appends the like with seq; seqs must follow each other within a frame.
func (f *frameBuilder) add(seq uint64, l store.Like) {
	if f.count == 0 {
		f.first = seq
	}
	f.body = wire.AppendString(f.body, l.Post)
	f.body = wire.AppendString(f.body, l.User)
	f.count++
}

// take returns the frame and starts a new one.
func (f *frameBuilder) take() (frame []byte, count int) {
	b := make([]byte, 0, frameHeaderMax+len(f.body))
	b = append(b, f.kind)
	b = binary.BigEndian.AppendUint64(b, f.origin)
	b = binary.AppendUvarint(b, f.first)
	b = binary.AppendUvarint(b, uint64(f.count))
	b = append(b, f.body...)
	count = f.count
	f.body, f.count = f.body[:0], 0
	return b, count
}

func decodeFrame(b []byte) (frame, error) {
	if len(b) == 0 {
		return frame{}, errEmpty
	}
	var f frame
	if b[0] != msgLikes {
		return frame{}, fmt.Errorf("%w: %d", errType, b[0])
	}
	var err error
	if f.origin, b, err = readUint64(b[1:]); err != nil {
		return frame{}, err
	}
	var count uint64
	if f.first, b, err = readUvarint(b); err != nil {
		return frame{}, err
	}
	if count, b, err = readUvarint(b); err != nil {
		return frame{}, err
	}
	if f.first == 0 || count == 0 || f.first+count-1 < f.first || count > uint64(len(b))/2 {
		return frame{}, fmt.Errorf("%w: first %d count %d in %d bytes", errFrame, f.first, count, len(b))
	}
	f.likes = make([]store.Like, 0, count)
	for len(b) > 0 {
		var l store.Like
		if l.Post, b, err = readString(b); err != nil {
			return frame{}, err
		}
		if l.User, b, err = readString(b); err != nil {
			return frame{}, err
		}
		f.likes = append(f.likes, l)
	}
	if uint64(len(f.likes)) != count {
		return frame{}, fmt.Errorf("%w: header says %d likes, body has %d", errFrame, count, len(f.likes))
	}
	return f, nil
}

func readUint64(b []byte) (uint64, []byte, error) {
	if len(b) < 8 {
		return 0, nil, fmt.Errorf("%w: uint64", errTruncated)
	}
	return binary.BigEndian.Uint64(b), b[8:], nil
}

func readUvarint(b []byte) (uint64, []byte, error) {
	v, rest, err := wire.Uvarint(b)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", errTruncated, err)
	}
	return v, rest, nil
}

// readString reads an id, folding wire's errors into this package's.
func readString(b []byte) (string, []byte, error) {
	s, rest, err := wire.String(b, maxIDLen)
	switch {
	case errors.Is(err, wire.ErrTooLong):
		return "", nil, fmt.Errorf("%w: %w", errIDLen, err)
	case err != nil:
		return "", nil, fmt.Errorf("%w: %w", errTruncated, err)
	}
	return s, rest, nil
}
