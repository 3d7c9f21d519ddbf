package gset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/likesd/likesd/internal/wire"
)

// encodingV1 is the first byte of every encoded set, so the format can change
// without ambiguity.
const encodingV1 byte = 1

// MaxMemberLen bounds one member's length on decode, so a hostile or corrupt
// buffer cannot make the decoder allocate without limit.
const MaxMemberLen = 1 << 16

// Decoding errors; wrapped with detail, test with errors.Is.
var (
	ErrVersion   = errors.New("gset: unknown encoding version")
	ErrTruncated = errors.New("gset: truncated encoding")
	ErrOrder     = errors.New("gset: members not in strictly increasing order")
	ErrTooLong   = errors.New("gset: member too long")
	ErrTrailing  = errors.New("gset: trailing bytes after set")
)

// AppendBinary appends the canonical encoding of s to b: a version byte, the
// member count, then each member as length and bytes, in byte order. Equal
// sets encode to equal bytes.
func (s Set) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, encodingV1)
	b = binary.AppendUvarint(b, uint64(s.Len()))
	// Each member is written straight into b: its shared prefix is copied
	// from the member before it, already in b, then its rest from the block.
	prev := 0 // where the member before starts in b
	for _, leaf := range s.leaves {
		for _, blk := range leaf {
			for at := 0; at < len(blk); {
				if h := blk[at]; h < uuidBase { // short entry (≤ 26 bytes), inline
					p, n := int(h>>4), int(h&15)
					b = append(b, byte(p+n))
					start := len(b)
					b = append(b, b[prev:prev+p]...)
					b = append(b, blk[at+1:at+1+n]...)
					prev, at = start, at+1+n
					continue
				}
				e := readEntry(blk, at)
				b = binary.AppendUvarint(b, uint64(e.p+e.n))
				start := len(b)
				b = append(b, b[prev:prev+e.p]...)
				b = e.appendRest(b, blk)
				prev, at = start, e.end
			}
		}
	}
	return b, nil
}

// MarshalBinary returns the canonical encoding of s.
func (s Set) MarshalBinary() ([]byte, error) { return s.AppendBinary(nil) }

// UnmarshalBinary replaces s with the set encoded in data. It rejects
// anything but the canonical encoding, so a decoded set re-encodes to data.
func (s *Set) UnmarshalBinary(data []byte) error {
	set, rest, err := Decode(data)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d bytes", ErrTrailing, len(rest))
	}
	*s = set
	return nil
}

// Decode reads one encoded set from the front of data and returns it with the
// bytes that follow it, so sets can be streamed back to back.
func Decode(data []byte) (Set, []byte, error) {
	if len(data) == 0 {
		return Set{}, nil, ErrTruncated
	}
	if data[0] != encodingV1 {
		return Set{}, nil, fmt.Errorf("%w: %d", ErrVersion, data[0])
	}
	n, data, err := wire.Uvarint(data[1:])
	if err != nil {
		return Set{}, nil, fmt.Errorf("%w: member count: %w", ErrTruncated, err)
	}
	// Every member takes at least one byte (its length), so a count larger
	// than what is left is corrupt; checking first bounds the work.
	if n > uint64(len(data)) {
		return Set{}, nil, fmt.Errorf("%w: %d members in %d bytes", ErrTruncated, n, len(data))
	}
	var b builder
	for i := uint64(0); i < n; i++ {
		var l uint64
		if l, data, err = wire.Uvarint(data); err != nil {
			return Set{}, nil, fmt.Errorf("%w: member %d: %w", ErrTruncated, i, err)
		}
		if l > MaxMemberLen {
			return Set{}, nil, fmt.Errorf("%w: member %d: %d bytes, at most %d", ErrTooLong, i, l, MaxMemberLen)
		}
		if l > uint64(len(data)) {
			return Set{}, nil, fmt.Errorf("%w: member %d: %d bytes, %d left", ErrTruncated, i, l, len(data))
		}
		m := data[:l]
		if i > 0 && bytes.Compare(m, b.prev) <= 0 {
			return Set{}, nil, fmt.Errorf("%w: %q after %q", ErrOrder, m, b.prev)
		}
		add(&b, m)
		data = data[l:]
	}
	return b.set(), data, nil
}
