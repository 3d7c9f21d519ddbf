package gset

import "github.com/cespare/xxhash/v2"

// MemberHash is the 64-bit hash every replica gives member m: xxHash64
// through splitmix64's finalizer, so that prefixes of the hash split members
// evenly. It is part of the wire contract between nodes: changing it makes
// every digest differ and forces a full repair.
func MemberHash(m string) uint64 { return Mix(xxhash.Sum64String(m)) }

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
// summaries of the same range are equal hold the same members there, except
// with probability about 2^-64.
type Summary struct {
	Digest uint64 // sum, mod 2^64, of MemberHash over the members
	Count  int
}

// Add returns the summary of the union of two disjoint ranges.
func (s Summary) Add(o Summary) Summary {
	return Summary{Digest: s.Digest + o.Digest, Count: s.Count + o.Count}
}

// Fanout is how many sub-ranges one hash range splits into: the next four
// bits of the hash.
const Fanout = 16

// Digest is the sum of MemberHash over the members: equal sets have equal
// digests whatever order their members were added in. O(1).
func (s Set) Digest() uint64 { return s.digest }

// Summary is the set's digest and size. O(1).
func (s Set) Summary() Summary { return Summary{Digest: s.digest, Count: s.Len()} }

// InRange reports whether hash h lies in the range of hashes whose top bits
// bits equal prefix. A range of 0 bits is every hash.
func InRange(h uint64, bits uint8, prefix uint64) bool {
	if bits == 0 {
		return true
	}
	if bits >= 64 {
		return h == prefix
	}
	return h>>(64-bits) == prefix
}

// RangeDigests splits the members whose hash lies in the range (bits,
// prefix) by the next four bits of their hash, and returns each part's
// summary. bits must be at most 60. O(n).
func (s Set) RangeDigests(bits uint8, prefix uint64) [Fanout]Summary {
	var out [Fanout]Summary
	s.Walk(func(m string) bool {
		h := MemberHash(m)
		if InRange(h, bits, prefix) {
			i := (h << bits) >> 60
			out[i].Digest += h
			out[i].Count++
		}
		return true
	})
	return out
}

// RangeSummary is the summary of the members whose hash lies in the range
// (bits, prefix). O(1) for the whole set, O(n) for a range.
func (s Set) RangeSummary(bits uint8, prefix uint64) Summary {
	if bits == 0 {
		return s.Summary()
	}
	var out Summary
	s.Walk(func(m string) bool {
		if h := MemberHash(m); InRange(h, bits, prefix) {
			out.Digest += h
			out.Count++
		}
		return true
	})
	return out
}

// RangeMembers returns, in byte order, up to limit members whose hash lies
// in the range (bits, prefix), and whether more such members follow. It
// starts at the first member when fromStart is set, else strictly after the
// cursor after (the empty string is a member like any other).
func (s Set) RangeMembers(bits uint8, prefix uint64, fromStart bool, after string, limit int) (members []string, more bool) {
	if limit <= 0 {
		return nil, false
	}
	visit := func(m string) bool {
		if !InRange(MemberHash(m), bits, prefix) {
			return true
		}
		if len(members) == limit {
			more = true
			return false
		}
		members = append(members, m)
		return true
	}
	if fromStart {
		s.Walk(visit)
	} else {
		s.Ascend(after, visit)
	}
	return members, more
}
