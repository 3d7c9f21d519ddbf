package vclock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/likesd/likesd/internal/wire"
)

const encodingV1 byte = 1

// MaxOrigins bounds a decoded vector, so hostile input cannot make the
// decoder allocate without limit.
const MaxOrigins = 1 << 16

// Decoding errors; test with errors.Is.
var (
	ErrVersion   = errors.New("vclock: unknown encoding version")
	ErrTruncated = errors.New("vclock: truncated encoding")
	ErrOrder     = errors.New("vclock: origins not in strictly increasing order")
	ErrZero      = errors.New("vclock: zero entry")
	ErrTooMany   = errors.New("vclock: too many origins")
)

// AppendBinary appends the canonical encoding of v: a version byte, the
// count, then per origin in increasing order its 8 bytes and its seq as a
// varint. Zero entries are left out. A VV of 20 origins takes under 300
// bytes, however many likes it covers.
func (v VV) AppendBinary(b []byte) ([]byte, error) {
	origins := slices.Sorted(maps.Keys(v))
	n := 0
	for _, o := range origins {
		if v[o] > 0 {
			n++
		}
	}
	b = append(b, encodingV1)
	b = binary.AppendUvarint(b, uint64(n))
	for _, o := range origins {
		if v[o] == 0 {
			continue
		}
		b = binary.BigEndian.AppendUint64(b, o)
		b = binary.AppendUvarint(b, v[o])
	}
	return b, nil
}

// MarshalBinary returns the canonical encoding of v.
func (v VV) MarshalBinary() ([]byte, error) { return v.AppendBinary(nil) }

// Decode reads one encoded vector from the front of b and returns the rest.
func Decode(b []byte) (VV, []byte, error) {
	if len(b) == 0 {
		return nil, nil, ErrTruncated
	}
	if b[0] != encodingV1 {
		return nil, nil, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	n, b, err := wire.Uvarint(b[1:])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: count: %w", ErrTruncated, err)
	}
	if n > MaxOrigins {
		return nil, nil, fmt.Errorf("%w: %d", ErrTooMany, n)
	}
	if n*9 > uint64(len(b)) { // each entry takes at least 9 bytes
		return nil, nil, fmt.Errorf("%w: %d origins in %d bytes", ErrTruncated, n, len(b))
	}
	v := make(VV, n)
	var prev uint64
	for i := uint64(0); i < n; i++ {
		if len(b) < 8 {
			return nil, nil, fmt.Errorf("%w: origin %d", ErrTruncated, i)
		}
		origin := binary.BigEndian.Uint64(b)
		if i > 0 && origin <= prev {
			return nil, nil, fmt.Errorf("%w: %x after %x", ErrOrder, origin, prev)
		}
		var seq uint64
		if seq, b, err = wire.Uvarint(b[8:]); err != nil {
			return nil, nil, fmt.Errorf("%w: seq of %x: %w", ErrTruncated, origin, err)
		}
		if seq == 0 {
			return nil, nil, fmt.Errorf("%w: origin %x", ErrZero, origin)
		}
		v[origin], prev = seq, origin
	}
	return v, b, nil
}

// UnmarshalBinary replaces v's content with the vector encoded in data.
func (v *VV) UnmarshalBinary(data []byte) error {
	got, rest, err := Decode(data)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("vclock: %d trailing bytes", len(rest))
	}
	*v = got
	return nil
}
