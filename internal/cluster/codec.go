package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/vclock"
	"github.com/likesd/likesd/internal/wire"
)

// Message types: the first byte of every message between nodes. This file
// is the only place that knows their bytes.
const (
	msgLikes     byte = iota + 1 // fast path: origin, first seq, count, then the likes
	msgRange                     // repair: a msgLikes answering a range request
	msgRangeReq                  // requester, origin, from, to
	msgSnapReq                   // requester
	msgSnapChunk                 // snapshot id, chunk index, then (post, gset) pairs
	msgSnapEnd                   // snapshot id, chunk count, the VV the snapshot covers
)

// stateVV is the first byte of a push/pull state: sender name, its origin,
// its version vector. A few hundred bytes, whatever the number of likes.
const stateVV byte = 1

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
	kind   byte // msgLikes or msgRange
	origin uint64
	first  uint64
	likes  []store.Like
}

func (f frame) dots() vclock.Range {
	return vclock.Range{Origin: f.origin, From: f.first, To: f.first + uint64(len(f.likes)) - 1}
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
	f := frame{kind: b[0]}
	if f.kind != msgLikes && f.kind != msgRange {
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

// encodeState is this node's push/pull state.
func encodeState(name string, origin uint64, vv vclock.VV) []byte {
	b := []byte{stateVV}
	b = wire.AppendString(b, name)
	b = binary.BigEndian.AppendUint64(b, origin)
	b, _ = vv.AppendBinary(b) // appends to memory: cannot fail
	return b
}

func decodeState(b []byte) (name string, origin uint64, vv vclock.VV, err error) {
	if len(b) == 0 {
		return "", 0, nil, errEmpty
	}
	if b[0] != stateVV {
		return "", 0, nil, fmt.Errorf("%w: state %d", errType, b[0])
	}
	if name, b, err = readString(b[1:]); err != nil {
		return "", 0, nil, err
	}
	if origin, b, err = readUint64(b); err != nil {
		return "", 0, nil, err
	}
	var rest []byte
	if vv, rest, err = vclock.Decode(b); err != nil {
		return "", 0, nil, fmt.Errorf("cluster: state vv: %w", err)
	}
	if len(rest) > 0 {
		return "", 0, nil, fmt.Errorf("%w: %d bytes after the state", errTruncated, len(rest))
	}
	return name, origin, vv, nil
}

// rangeReq asks an origin for its likes From..To.
type rangeReq struct {
	requester string
	r         vclock.Range
}

func encodeRangeReq(q rangeReq) []byte {
	b := wire.AppendString([]byte{msgRangeReq}, q.requester)
	b = binary.BigEndian.AppendUint64(b, q.r.Origin)
	b = binary.AppendUvarint(b, q.r.From)
	return binary.AppendUvarint(b, q.r.To)
}

func decodeRangeReq(b []byte) (q rangeReq, err error) {
	if len(b) == 0 || b[0] != msgRangeReq {
		return q, errType
	}
	if q.requester, b, err = readString(b[1:]); err != nil {
		return q, err
	}
	if q.r.Origin, b, err = readUint64(b); err != nil {
		return q, err
	}
	if q.r.From, b, err = readUvarint(b); err != nil {
		return q, err
	}
	if q.r.To, b, err = readUvarint(b); err != nil {
		return q, err
	}
	if len(b) > 0 || q.r.From == 0 || q.r.To < q.r.From {
		return q, fmt.Errorf("%w: range %d..%d", errFrame, q.r.From, q.r.To)
	}
	return q, nil
}

func encodeSnapReq(requester string) []byte { return wire.AppendString([]byte{msgSnapReq}, requester) }

func decodeSnapReq(b []byte) (string, error) {
	if len(b) == 0 || b[0] != msgSnapReq {
		return "", errType
	}
	name, rest, err := readString(b[1:])
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("%w: trailing bytes", errTruncated)
	}
	return name, err
}

// snapChunk is one piece of a snapshot stream.
type snapChunk struct {
	id    uint64
	index uint64
	posts []string
	sets  []gset.Set
}

// snapChunkBuilder packs posts and their sets into chunks of about max bytes
// (one large set may make a chunk larger: a set is never split).
type snapChunkBuilder struct {
	id, index uint64
	max       int
	b         []byte
	n         int
}

func (c *snapChunkBuilder) reset() {
	c.b = append(c.b[:0], msgSnapChunk)
	c.b = binary.BigEndian.AppendUint64(c.b, c.id)
	c.b = binary.AppendUvarint(c.b, c.index)
	c.n = 0
}

func (c *snapChunkBuilder) add(post string, users gset.Set) {
	c.b = wire.AppendString(c.b, post)
	c.b, _ = users.AppendBinary(c.b)
	c.n++
}

func (c *snapChunkBuilder) full() bool { return len(c.b) >= c.max }

func (c *snapChunkBuilder) take() []byte {
	out := append([]byte(nil), c.b...)
	c.index++
	c.reset()
	return out
}

func decodeSnapChunk(b []byte) (c snapChunk, err error) {
	if len(b) == 0 || b[0] != msgSnapChunk {
		return c, errType
	}
	if c.id, b, err = readUint64(b[1:]); err != nil {
		return c, err
	}
	if c.index, b, err = readUvarint(b); err != nil {
		return c, err
	}
	for len(b) > 0 {
		var post string
		var users gset.Set
		if post, b, err = readString(b); err != nil {
			return c, err
		}
		if users, b, err = gset.Decode(b); err != nil {
			return c, fmt.Errorf("cluster: snapshot post %q: %w", post, err)
		}
		c.posts, c.sets = append(c.posts, post), append(c.sets, users)
	}
	return c, nil
}

func encodeSnapEnd(id, chunks uint64, vv vclock.VV) []byte {
	b := binary.BigEndian.AppendUint64([]byte{msgSnapEnd}, id)
	b = binary.AppendUvarint(b, chunks)
	b, _ = vv.AppendBinary(b)
	return b
}

func decodeSnapEnd(b []byte) (id, chunks uint64, vv vclock.VV, err error) {
	if len(b) == 0 || b[0] != msgSnapEnd {
		return 0, 0, nil, errType
	}
	if id, b, err = readUint64(b[1:]); err != nil {
		return 0, 0, nil, err
	}
	if chunks, b, err = readUvarint(b); err != nil {
		return 0, 0, nil, err
	}
	var rest []byte
	if vv, rest, err = vclock.Decode(b); err == nil && len(rest) > 0 {
		err = fmt.Errorf("%w: trailing bytes", errTruncated)
	}
	return id, chunks, vv, err
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
