package gset

import "github.com/cespare/xxhash/v2"

// MemberHash is the 64-bit hash that digests and hash ranges are built on:
// xxhash64 of m passed through splitmix64's finalizer, so that every bit,
// and the top bits that ranges split on in particular, is well mixed. It is
// part of the wire contract between replicas: changing it changes every
// digest.
func MemberHash(m string) uint64 { return mix(xxhash.Sum64String(m)) }

func memberHash[T string | []byte](m T) uint64 {
	switch m := any(m).(type) {
	case string:
		return MemberHash(m)
	case []byte:
		return mix(xxhash.Sum64(m))
	}
	panic("unreachable")
}

// mix is splitmix64's finalizer.
func mix(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return z
}

// Bucket summarises the members of one hash range.
type Bucket struct {
	Digest uint64 // sum mod 2^64 of MemberHash over the range's members
	Count  int    // how many members the range holds
}

// inRange reports whether h's top prefixBits bits equal prefix. Zero bits
// match everything; more than 64 count as 64.
func inRange(h uint64, prefixBits uint8, prefix uint64) bool {
	if prefixBits == 0 {
		return true
	}
	return h>>(64-min(prefixBits, 64)) == prefix
}

// RangeDigests splits the members whose MemberHash starts with the
// prefixBits bits of prefix into 16 buckets by the next 4 bits of the hash,
// and returns each bucket's digest and count. Past bit 64 the missing bits
// count as zero (so with prefixBits ≥ 61 the buckets are not a finer split).
// It scans the whole set: O(n).
func (s Set) RangeDigests(prefixBits uint8, prefix uint64) [16]Bucket {
	var out [16]Bucket
	s.scan(0, 0, func(m []byte) bool {
		h := memberHash(m)
		if inRange(h, prefixBits, prefix) {
			b := &out[nextNibble(h, prefixBits)]
			b.Digest += h
			b.Count++
		}
		return true
	})
	return out
}

func nextNibble(h uint64, prefixBits uint8) uint64 {
	if prefixBits >= 64 {
		return 0
	}
	return (h << prefixBits) >> 60
}

// RangeMembers returns, in byte order, up to limit members strictly after
// the cursor after (as Page: the empty string is never after a cursor)
// whose MemberHash starts with the prefixBits bits of prefix, and whether
// more such members follow. It scans the set from the cursor: O(n).
func (s Set) RangeMembers(prefixBits uint8, prefix uint64, after string, limit int) (members []string, more bool) {
	if limit <= 0 {
		return nil, false
	}
	var c collector
	s.scanAfter(after, func(m []byte) bool {
		if !inRange(memberHash(m), prefixBits, prefix) {
			return true
		}
		if len(c.ends) == limit {
			more = true
			return false
		}
		c.add(m)
		return true
	})
	return c.strings(), more
}
