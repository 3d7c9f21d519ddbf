package gset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/likesd/likesd/internal/wire"
)

// encodingBlocks marks a set written in its block form (AppendBlocks). (1
// was a canonical member-by-member encoding that nothing used; #21.)
const encodingBlocks byte = 2

// MaxMemberLen bounds one member's length on decode, so a hostile or corrupt
// buffer cannot make the decoder allocate without limit.
const MaxMemberLen = 1 << 16

// Decoding errors; wrapped with detail, test with errors.Is.
var (
	ErrVersion   = errors.New("gset: unknown encoding version")
	ErrTruncated = errors.New("gset: truncated encoding")
	ErrOrder     = errors.New("gset: members not in strictly increasing order")
	ErrTooLong   = errors.New("gset: member too long")
)

// AppendBlocks appends s in its block form, as it sits in memory: a version
// byte, the member count, the block count, then each block as length and
// bytes. It is what a snapshot on disk holds: front-coded and UUID-packed,
// so it costs about what the set costs in memory, and DecodeBlocks adopts
// the blocks instead of adding member by member. Equal sets may have
// different block forms (blocks split where adds split them).
func (s Set) AppendBlocks(b []byte) []byte {
	b = append(b, encodingBlocks)
	b = binary.AppendUvarint(b, uint64(s.n))
	k := 0
	for _, l := range s.leaves {
		k += len(l)
	}
	b = binary.AppendUvarint(b, uint64(k))
	for _, l := range s.leaves {
		for _, blk := range l {
			b = binary.AppendUvarint(b, uint64(len(blk)))
			b = append(b, blk...)
		}
	}
	return b
}

// DecodeBlocks reads a set in block form from the front of data and returns
// it with the bytes that follow. Blocks are checked entry by entry before
// they are adopted (bounds, a first entry sharing nothing, members in
// strictly increasing order, every entry encoded as the package's builder
// would encode it, the count), since the rest of the package trusts them;
// The blocks are packed leaf by
// leaf into fresh memory, as Compacted packs them.
func DecodeBlocks(data []byte) (Set, []byte, error) {
	if len(data) == 0 {
		return Set{}, nil, ErrTruncated
	}
	if data[0] != encodingBlocks {
		return Set{}, nil, fmt.Errorf("%w: %d", ErrVersion, data[0])
	}
	n, rest, err := wire.Uvarint(data[1:])
	if err != nil {
		return Set{}, nil, fmt.Errorf("%w: member count: %w", ErrTruncated, err)
	}
	k, rest, err := wire.Uvarint(rest)
	if err != nil {
		return Set{}, nil, fmt.Errorf("%w: block count: %w", ErrTruncated, err)
	}
	// Every member and block takes at least one byte: bound the work.
	if n > uint64(len(rest)) || k > uint64(len(rest)) || (k == 0) != (n == 0) {
		return Set{}, nil, fmt.Errorf("%w: %d members in %d blocks in %d bytes", ErrTruncated, n, k, len(rest))
	}
	blocks := make([][]byte, 0, k)
	var v blockValidator
	for i := uint64(0); i < k; i++ {
		var l uint64
		if l, rest, err = wire.Uvarint(rest); err != nil {
			return Set{}, nil, fmt.Errorf("%w: block %d: %w", ErrTruncated, i, err)
		}
		if l == 0 || l > maxBlock+MaxMemberLen || l > uint64(len(rest)) {
			return Set{}, nil, fmt.Errorf("%w: block %d of %d bytes, %d left", ErrTruncated, i, l, len(rest))
		}
		// A block passes maxBlock only by the member that split it.
		if err := v.block(rest[:l]); err != nil {
			return Set{}, nil, fmt.Errorf("block %d: %w", i, err)
		}
		blocks = append(blocks, rest[:l])
		rest = rest[l:]
	}
	if uint64(v.n) != n {
		return Set{}, nil, fmt.Errorf("%w: %d members counted, %d said", ErrTruncated, v.n, n)
	}
	var leaves [][][]byte
	for len(blocks) > 0 {
		leaf := blocks[:min(maxLeaf, len(blocks))]
		blocks = blocks[len(leaf):]
		leaves = append(leaves, packLeaf(leaf))
	}
	return Set{leaves: leaves, n: v.n}, rest, nil
}

// packLeaf copies a leaf's blocks into one allocation, each followed by
// packSlack bytes of room (see Compacted).
func packLeaf(blocks [][]byte) [][]byte {
	size := 0
	for _, blk := range blocks {
		size += len(blk) + packSlack
	}
	packed := make([]byte, size)
	leaf := make([][]byte, len(blocks))
	at := 0
	for j, blk := range blocks {
		copy(packed[at:], blk)
		leaf[j] = packed[at : at+len(blk) : at+len(blk)+packSlack]
		at += len(blk) + packSlack
	}
	return leaf
}

// blockValidator checks blocks in order, keeping the last member seen.
type blockValidator struct {
	prev, cur, enc []byte
	n              int
}

func (v *blockValidator) block(blk []byte) error {
	first := true
	for at := 0; at < len(blk); {
		p, rest, packed, end, err := readEntryChecked(blk, at)
		if err != nil {
			return err
		}
		if first && p != 0 {
			return fmt.Errorf("%w: a block's first member shares %d bytes", ErrOrder, p)
		}
		if p > len(v.prev) {
			return fmt.Errorf("%w: shares %d bytes with a member of %d", ErrTruncated, p, len(v.prev))
		}
		v.cur = append(v.cur[:0], v.prev[:p]...)
		if packed {
			v.cur = unpackUUID(v.cur, rest, p)
		} else {
			v.cur = append(v.cur, rest...)
		}
		if len(v.cur) > MaxMemberLen {
			return fmt.Errorf("%w: %d bytes", ErrTooLong, len(v.cur))
		}
		if v.n > 0 && bytes.Compare(v.cur, v.prev) <= 0 {
			return fmt.Errorf("%w: %q after %q", ErrOrder, v.cur, v.prev)
		}
		want := 0
		if !first {
			want = lcp(v.prev, v.cur)
		}
		if v.enc = appendEntry(v.enc[:0], v.cur, want); !bytes.Equal(v.enc, blk[at:end]) {
			return fmt.Errorf("%w: member %q is not encoded as this package encodes it", ErrOrder, v.cur)
		}
		v.prev, v.cur = v.cur, v.prev
		v.n++
		first = false
		at = end
	}
	return nil
}

// readEntryChecked is readEntry for bytes from outside: every length is
// checked against the block.
func readEntryChecked(blk []byte, at int) (p int, rest []byte, packed bool, end int, err error) {
	h := blk[at]
	off := at + 1
	var n int
	switch {
	case h < uuidBase:
		p, n = int(h>>4), int(h&15)
	case h < mediumBase:
		p = int(h - uuidBase)
		n, packed = packedLen[p], true
	case h < longHeader:
		p = int(h - mediumBase)
		if n, off, err = checkedUvarint(blk, off); err != nil {
			return
		}
	default:
		if p, off, err = checkedUvarint(blk, off); err != nil {
			return
		}
		if n, off, err = checkedUvarint(blk, off); err != nil {
			return
		}
	}
	if n > len(blk)-off {
		return 0, nil, false, 0, fmt.Errorf("%w: entry of %d bytes, %d left", ErrTruncated, n, len(blk)-off)
	}
	return p, blk[off : off+n], packed, off + n, nil
}

func checkedUvarint(blk []byte, at int) (int, int, error) {
	v, k := binary.Uvarint(blk[at:])
	if k <= 0 || v > MaxMemberLen {
		return 0, 0, fmt.Errorf("%w: bad length at %d", ErrTruncated, at)
	}
	return int(v), at + k, nil
}
