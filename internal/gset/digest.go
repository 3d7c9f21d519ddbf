package gset

import "github.com/cespare/xxhash/v2"

// MemberHash is the 64-bit hash that digests and hash ranges are built on:
// xxhash64 of m passed through splitmix64's finalizer, so that every bit,
// and the top bits that ranges split on in particular, is well mixed. It is
// part of the wire contract between replicas: changing it changes every
// digest.
func MemberHash(m string) uint64 { return Mix(xxhash.Sum64String(m)) }

func memberHash[T string | []byte](m T) uint64 {
	switch m := any(m).(type) {
	case string:
		return MemberHash(m)
	case []byte:
		return Mix(xxhash.Sum64(m))
	}
	panic("unreachable")
}

// Mix is splitmix64's finalizer: a bijection that spreads every input bit
// over the whole output.
func Mix(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return z
}

// Summary is a digest of some members with their count. Two replicas whose
// summaries of the same range are equal hold the same members there, but
// with probability about 2^-64.
type Summary struct {
	Digest uint64 // sum mod 2^64 of MemberHash over the range's members
	Count  int    // how many members the range holds
}

// Add returns the summary of the union of two disjoint ranges.
func (s Summary) Add(o Summary) Summary {
	return Summary{Digest: s.Digest + o.Digest, Count: s.Count + o.Count}
}

// Fanout is how many sub-ranges one hash range splits into: the next four
// bits of the hash.
const Fanout = 16

// Summary is the set's digest and size. O(1).
func (s Set) Summary() Summary { return Summary{Digest: s.digest, Count: s.n} }

// InRange reports whether h's top prefixBits bits equal prefix. Zero bits
// match everything; more than 64 count as 64.
func InRange(h uint64, prefixBits uint8, prefix uint64) bool {
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
func (s Set) RangeDigests(prefixBits uint8, prefix uint64) [Fanout]Summary {
	var out [Fanout]Summary
	s.scan(0, 0, func(m []byte) bool {
		h := memberHash(m)
		if InRange(h, prefixBits, prefix) {
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

// RangeSummary summarises the members whose MemberHash starts with the
// prefixBits bits of prefix. O(1) for the whole set, O(n) for a range.
func (s Set) RangeSummary(prefixBits uint8, prefix uint64) Summary {
	if prefixBits == 0 {
		return s.Summary()
	}
	var out Summary
	s.scan(0, 0, func(m []byte) bool {
		if h := memberHash(m); InRange(h, prefixBits, prefix) {
			out.Digest += h
			out.Count++
		}
		return true
	})
	return out
}

// RangeMembers returns, in byte order, up to limit members whose
// MemberHash starts with the prefixBits bits of prefix, and whether more
// such members follow. It starts at the first member when fromStart is set,
// else strictly after the cursor after: the empty string is a member like
// any other, and a scan must be able to reach it. O(n) from the cursor.
func (s Set) RangeMembers(prefixBits uint8, prefix uint64, fromStart bool, after string, limit int) (members []string, more bool) {
	if limit <= 0 {
		return nil, false
	}
	var c collector
	visit := func(m []byte) bool {
		if prefixBits > 0 && !InRange(memberHash(m), prefixBits, prefix) {
			return true
		}
		if len(c.ends) == limit {
			more = true
			return false
		}
		c.add(m)
		return true
	}
	if fromStart {
		s.scan(0, 0, visit)
	} else {
		s.scanAfter(after, visit)
	}
	return c.strings(), more
}
