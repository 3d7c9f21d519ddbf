package gset

import "encoding/binary"

// An entry is one member inside a block: a header byte, maybe lengths, then
// the member's bytes after the prefix it shares with the member before it
// in the block (none for a block's first member). The header byte h is:
//
//	h < 0xC0          prefix h>>4 (0–11), suffix length h&15 (0–15), suffix bytes
//	0xC0 ≤ h < 0xE4   the member is a lower-case text UUID; prefix h-0xC0 (0–35);
//	                  the hex digits after the prefix follow packed two per byte
//	                  (dashes implied by position): a random UUID costs ~17 B, not 37
//	0xE4 ≤ h < 0xFF   prefix h-0xE4 (0–26), uvarint suffix length, suffix bytes
//	h = 0xFF          uvarint prefix, uvarint suffix length, suffix bytes
//
// so an 8-byte id costs one header byte plus what it does not share with
// its neighbour. Blocks are built only by this package and are trusted.
const (
	uuidBase   = 0xC0
	mediumBase = 0xE4
	longHeader = 0xFF
	uuidLen    = 36
)

// entry is a decoded header.
type entry struct {
	p      int  // bytes shared with the member before
	n      int  // length of the rest of the member (unpacked)
	off    int  // where the stored rest starts
	end    int  // where the next entry starts
	packed bool // the rest is packed UUID hex
}

func readEntry(blk []byte, at int) entry {
	h := blk[at]
	switch {
	case h < uuidBase:
		n := int(h & 15)
		return entry{p: int(h >> 4), n: n, off: at + 1, end: at + 1 + n}
	case h < mediumBase:
		p := int(h - uuidBase)
		return entry{p: p, n: uuidLen - p, off: at + 1, end: at + 1 + packedLen[p], packed: true}
	case h < longHeader:
		n, off := uvarint(blk, at+1)
		return entry{p: int(h - mediumBase), n: n, off: off, end: off + n}
	default:
		p, j := uvarint(blk, at+1)
		n, off := uvarint(blk, j)
		return entry{p: p, n: n, off: off, end: off + n}
	}
}

func uvarint(s []byte, at int) (int, int) {
	var v uint64
	var shift uint
	for {
		c := s[at]
		at++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int(v), at
		}
		shift += 7
	}
}

// appendRest appends the member's bytes after its prefix, unpacked.
func (e entry) appendRest(dst []byte, blk []byte) []byte {
	if !e.packed {
		return append(dst, blk[e.off:e.end]...)
	}
	return unpackUUID(dst, blk[e.off:e.end], e.p)
}

// appendEntry appends key's entry given the p bytes it shares with the
// member before it.
func appendEntry[T string | []byte](b []byte, key T, p int) []byte {
	if p < uuidLen && isUUID(key) {
		return packUUID(append(b, byte(uuidBase+p)), key, p)
	}
	n := len(key) - p
	switch {
	case p < 12 && n < 16:
		b = append(b, byte(p<<4|n))
	case p < longHeader-mediumBase:
		b = append(b, byte(mediumBase+p))
		b = binary.AppendUvarint(b, uint64(n))
	default:
		b = append(b, longHeader)
		b = binary.AppendUvarint(b, uint64(p))
		b = binary.AppendUvarint(b, uint64(n))
	}
	return append(b, key[p:]...)
}

func isDash(i int) bool { return i == 8 || i == 13 || i == 18 || i == 23 }

// isUUID: 36 bytes, dashes at 8, 13, 18 and 23, lower-case hex elsewhere.
func isUUID[T string | []byte](key T) bool {
	if len(key) != uuidLen {
		return false
	}
	for i := 0; i < uuidLen; i++ {
		c := key[i]
		if isDash(i) {
			if c != '-' {
				return false
			}
		} else if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// packedLen[p] is the bytes that hold a UUID's hex digits from position p.
var packedLen = func() (t [uuidLen + 1]int) {
	for p := 0; p <= uuidLen; p++ {
		digits := 0
		for i := p; i < uuidLen; i++ {
			if !isDash(i) {
				digits++
			}
		}
		t[p] = (digits + 1) / 2
	}
	return t
}()

func packUUID[T string | []byte](b []byte, key T, p int) []byte {
	var acc byte
	half := false
	for i := p; i < uuidLen; i++ {
		if isDash(i) {
			continue
		}
		c := key[i]
		v := c - '0'
		if c >= 'a' {
			v = c - 'a' + 10
		}
		if half {
			b = append(b, acc|v)
		} else {
			acc = v << 4
		}
		half = !half
	}
	if half {
		b = append(b, acc)
	}
	return b
}

const hexDigits = "0123456789abcdef"

func unpackUUID(dst []byte, packed []byte, p int) []byte {
	k := 0
	for i := p; i < uuidLen; i++ {
		if isDash(i) {
			dst = append(dst, '-')
			continue
		}
		v := packed[k>>1]
		if k&1 == 0 {
			v >>= 4
		}
		dst = append(dst, hexDigits[v&15])
		k++
	}
	return dst
}
