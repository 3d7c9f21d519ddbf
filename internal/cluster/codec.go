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
	// 1 carried fast-path frames without their origin's name, and 2 to 6
	// version-vector repair; they are never reused, so a node of an older
	// version is rejected, not misread.
	msgSync byte = 7 // anti-entropy: an antientropy.Message follows
	// msgLikes is the fast path: the origin's node name, origin, first seq,
	// count, then the likes. Receivers acknowledge it to that name.
	msgLikes byte = 8
	// msgAck is the acknowledging node's name, a count, then runs of
	// (origin, first seq, count) it holds.
	msgAck byte = 9
)

// maxIDLen bounds a post or user id on decode. The API admits 256 bytes; the
// margin lets that limit grow without a wire change.
const maxIDLen = 4096

// frameHeaderMax is the largest frame header but the name: type, origin,
// first, count.
const frameHeaderMax = 1 + 8 + binary.MaxVarintLen64*2

// maxAckRuns bounds the runs of one ack message on decode.
const maxAckRuns = 1 << 16

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
	from   string // the origin's node name
	origin uint64
	first  uint64
	likes  []store.Like
}

// frameBuilder packs likes with contiguous seqs into frames of at most max
// bytes.
type frameBuilder struct {
	max    int
	kind   byte
	from   string
	origin uint64
	first  uint64
	count  int
	body   []byte
}

func newFrameBuilder(max int, kind byte, from string, origin uint64) *frameBuilder {
	return &frameBuilder{max: max, kind: kind, from: from, origin: origin}
}

// likeSize is the encoded size of l in a frame.
func likeSize(l store.Like) int { return wire.StringLen(l.Post) + wire.StringLen(l.User) }

// fits reports whether l can be added without passing max.
func (f *frameBuilder) fits(l store.Like) bool {
	return frameHeaderMax+wire.StringLen(f.from)+len(f.body)+likeSize(l) <= f.max
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
	b := make([]byte, 0, frameHeaderMax+wire.StringLen(f.from)+len(f.body))
	b = append(b, f.kind)
	b = wire.AppendString(b, f.from)
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
	if f.from, b, err = readString(b[1:]); err != nil {
		return frame{}, err
	}
	if f.origin, b, err = readUint64(b); err != nil {
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

// ackRun says its sender holds origin's likes first..first+count-1.
type ackRun struct {
	origin, first, count uint64
}

func (r ackRun) last() uint64 { return r.first + r.count - 1 }

// encodeAck builds an ack message from the node named from.
func encodeAck(from string, runs []ackRun) []byte {
	b := make([]byte, 0, 1+wire.StringLen(from)+binary.MaxVarintLen64+len(runs)*(8+2*binary.MaxVarintLen64))
	b = append(b, msgAck)
	b = wire.AppendString(b, from)
	b = binary.AppendUvarint(b, uint64(len(runs)))
	for _, r := range runs {
		b = binary.BigEndian.AppendUint64(b, r.origin)
		b = binary.AppendUvarint(b, r.first)
		b = binary.AppendUvarint(b, r.count)
	}
	return b
}

func decodeAck(b []byte) (from string, runs []ackRun, err error) {
	if len(b) == 0 {
		return "", nil, errEmpty
	}
	if b[0] != msgAck {
		return "", nil, fmt.Errorf("%w: %d", errType, b[0])
	}
	if from, b, err = readString(b[1:]); err != nil {
		return "", nil, err
	}
	var n uint64
	if n, b, err = readUvarint(b); err != nil {
		return "", nil, err
	}
	if n == 0 || n > maxAckRuns || n > uint64(len(b))/10 {
		return "", nil, fmt.Errorf("%w: %d ack runs in %d bytes", errFrame, n, len(b))
	}
	runs = make([]ackRun, 0, n)
	for range n {
		var r ackRun
		if r.origin, b, err = readUint64(b); err != nil {
			return "", nil, err
		}
		if r.first, b, err = readUvarint(b); err != nil {
			return "", nil, err
		}
		if r.count, b, err = readUvarint(b); err != nil {
			return "", nil, err
		}
		if r.first == 0 || r.count == 0 || r.last() < r.first {
			return "", nil, fmt.Errorf("%w: ack run first %d count %d", errFrame, r.first, r.count)
		}
		runs = append(runs, r)
	}
	if len(b) > 0 {
		return "", nil, fmt.Errorf("%w: %d bytes after the ack runs", errFrame, len(b))
	}
	return from, runs, nil
}

// frameHeader reads a frame's header: its origin, seqs and where its likes
// start.
func frameHeader(b []byte) (from string, origin, first, count uint64, body []byte, err error) {
	if len(b) == 0 || b[0] != msgLikes {
		return "", 0, 0, 0, nil, errType
	}
	if from, b, err = readString(b[1:]); err != nil {
		return
	}
	if origin, b, err = readUint64(b); err != nil {
		return
	}
	if first, b, err = readUvarint(b); err != nil {
		return
	}
	count, body, err = readUvarint(b)
	return
}

// joinFrames makes one frame of two built by the same node whose seqs
// follow each other, if it fits in max bytes: a peer's sender sends what
// queued up during a send as one.
func joinFrames(a, b []byte, max int) ([]byte, bool) {
	fromA, originA, firstA, countA, bodyA, errA := frameHeader(a)
	fromB, originB, firstB, countB, bodyB, errB := frameHeader(b)
	if errA != nil || errB != nil || fromA != fromB || originA != originB || firstA+countA != firstB ||
		frameHeaderMax+wire.StringLen(fromA)+len(bodyA)+len(bodyB) > max {
		return nil, false
	}
	out := make([]byte, 0, frameHeaderMax+wire.StringLen(fromA)+len(bodyA)+len(bodyB))
	out = append(out, msgLikes)
	out = wire.AppendString(out, fromA)
	out = binary.BigEndian.AppendUint64(out, originA)
	out = binary.AppendUvarint(out, firstA)
	out = binary.AppendUvarint(out, countA+countB)
	out = append(out, bodyA...)
	return append(out, bodyB...), true
}
