// Package wire owns the primitives of likesd's binary encodings: canonical
// unsigned varints and length-prefixed strings. Decoders reject overlong
// varints, so every value has exactly one encoding and a decoded message
// re-encodes to the bytes it came from.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Decoding errors; test with errors.Is.
var (
	ErrTruncated = errors.New("wire: truncated")
	ErrOverlong  = errors.New("wire: non-canonical varint")
	ErrTooLong   = errors.New("wire: string too long")
)

// UvarintLen is the encoded size of v.
func UvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// Uvarint reads a canonical unsigned varint from the front of b.
func Uvarint(b []byte) (v uint64, rest []byte, err error) {
	v, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, nil, fmt.Errorf("%w: varint", ErrTruncated)
	}
	if k != UvarintLen(v) {
		return 0, nil, ErrOverlong
	}
	return v, b[k:], nil
}

// AppendString appends s as its length then its bytes.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// StringLen is the encoded size of s.
func StringLen(s string) int { return UvarintLen(uint64(len(s))) + len(s) }

// String reads a length-prefixed string of at most max bytes from the front
// of b.
func String(b []byte, max int) (s string, rest []byte, err error) {
	n, b, err := Uvarint(b)
	if err != nil {
		return "", nil, err
	}
	if n > uint64(max) {
		return "", nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLong, n, max)
	}
	if n > uint64(len(b)) {
		return "", nil, fmt.Errorf("%w: string of %d bytes, %d left", ErrTruncated, n, len(b))
	}
	return string(b[:n]), b[n:], nil
}
