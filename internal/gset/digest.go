package gset

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"unsafe"

	"github.com/dchest/siphash"
)

// Key is the secret under which member hashes, and so every digest, are
// computed: SipHash-2-4, a keyed PRF. Unkeyed, anyone who can choose ids
// can search offline for two sets of ids whose hash sums are equal (a
// 4-sum search finds pairs in minutes), and two replicas differing by
// exactly those ids look equal forever. Keyed, an outsider cannot compute
// a hash, so two different contents have equal sums with probability
// about 2^-64 per comparison whatever ids were chosen.
//
// A Key is a small value: copy it freely. The zero Key is not usable; get
// one from DeriveKey or PublicKey.
type Key struct {
	k0, k1 uint64 // member hashes
	t0, t1 uint64 // Tuple
	id     uint64
}

// digestInfo and idInfo are the HKDF info strings: changing either
// changes every digest or key id, so peers must agree on them.
const (
	digestInfo = "likesd digest v1"
	idInfo     = "likesd digest key id v1"
)

// publicSecret stands in for a cluster secret in plaintext mode: the key
// it gives is public, so it protects against nothing chosen.
const publicSecret = "likesd public digest key: no protection"

// DeriveKey derives the digest key from a cluster secret (HKDF-SHA256),
// never using the secret itself; an empty secret gives PublicKey.
func DeriveKey(secret []byte) Key {
	if len(secret) == 0 {
		secret = []byte(publicSecret)
	}
	b, err := hkdf.Key(sha256.New, secret, nil, digestInfo, 32)
	if err != nil {
		panic("gset: hkdf: " + err.Error()) // only for a length SHA-256 cannot give
	}
	id, err := hkdf.Key(sha256.New, secret, nil, idInfo, 8)
	if err != nil {
		panic("gset: hkdf: " + err.Error())
	}
	k := Key{
		k0: binary.LittleEndian.Uint64(b[0:]), k1: binary.LittleEndian.Uint64(b[8:]),
		t0: binary.LittleEndian.Uint64(b[16:]), t1: binary.LittleEndian.Uint64(b[24:]),
		id: binary.BigEndian.Uint64(id),
	}
	if k.id == 0 { // 0 means "no key" on the wire
		k.id = 1
	}
	return k
}

// PublicKey is the key of plaintext mode, the same on every node of every
// cluster: digests under it are no safer than unkeyed ones against ids
// chosen by anyone who can send likes or join.
func PublicKey() Key { return DeriveKey(nil) }

// ID names the key without revealing it (a separate HKDF output), so two
// nodes can tell whether their digests are comparable. Never 0.
func (k Key) ID() uint64 { return k.id }

// IsZero reports whether k is the unusable zero Key.
func (k Key) IsZero() bool { return k == Key{} }

// Hash is m's member hash: SipHash-2-4 of m under k. Its bits are uniform,
// so ranges split on its top bits directly.
func (k Key) Hash(m string) uint64 {
	return siphash.Hash(k.k0, k.k1, unsafe.Slice(unsafe.StringData(m), len(m)))
}

func (k Key) hash(m []byte) uint64 { return siphash.Hash(k.k0, k.k1, m) }

// Tuple is a PRF of three words under a key apart from Hash's: internal/
// store sums Tuple(Hash(post), digest, count) per post, so that likes of
// one post never cancel likes of another.
func (k Key) Tuple(a, b, c uint64) uint64 {
	var buf [24]byte
	binary.LittleEndian.PutUint64(buf[0:], a)
	binary.LittleEndian.PutUint64(buf[8:], b)
	binary.LittleEndian.PutUint64(buf[16:], c)
	return siphash.Hash(k.t0, k.t1, buf[:])
}

// Summary is a digest of some members with their count. Under a secret
// Key, two replicas whose summaries of the same range are equal hold the
// same members there, but with probability about 2^-64.
type Summary struct {
	Digest uint64 // sum mod 2^64 of Key.Hash over the range's members
	Count  int    // how many members the range holds
}

// Add returns the summary of the union of two disjoint ranges.
func (s Summary) Add(o Summary) Summary {
	return Summary{Digest: s.Digest + o.Digest, Count: s.Count + o.Count}
}

// Fanout is how many sub-ranges one hash range splits into: the next four
// bits of the hash.
const Fanout = 16

// Summary is the set's digest under k and its size. It scans the set,
// O(n): a caller that needs it often keeps it, adding k.Hash of what Add
// and Merge report new (internal/store does).
func (s Set) Summary(k Key) Summary {
	out := Summary{Count: s.n}
	s.scan(0, 0, func(m []byte) bool {
		out.Digest += k.hash(m)
		return true
	})
	return out
}

// InRange reports whether h's top prefixBits bits equal prefix. Zero bits
// match everything; more than 64 count as 64.
func InRange(h uint64, prefixBits uint8, prefix uint64) bool {
	if prefixBits == 0 {
		return true
	}
	return h>>(64-min(prefixBits, 64)) == prefix
}

// RangeDigests splits the members whose hash under k starts with the
// prefixBits bits of prefix into 16 buckets by the next 4 bits of the hash,
// and returns each bucket's digest and count. Past bit 64 the missing bits
// count as zero (so with prefixBits ≥ 61 the buckets are not a finer split).
// It scans the whole set: O(n).
func (s Set) RangeDigests(k Key, prefixBits uint8, prefix uint64) [Fanout]Summary {
	var out [Fanout]Summary
	s.scan(0, 0, func(m []byte) bool {
		h := k.hash(m)
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

// RangeSummary summarises the members whose hash under k starts with the
// prefixBits bits of prefix. O(n).
func (s Set) RangeSummary(k Key, prefixBits uint8, prefix uint64) Summary {
	if prefixBits == 0 {
		return s.Summary(k)
	}
	var out Summary
	s.scan(0, 0, func(m []byte) bool {
		if h := k.hash(m); InRange(h, prefixBits, prefix) {
			out.Digest += h
			out.Count++
		}
		return true
	})
	return out
}

// RangeMembers returns, in byte order, up to limit members whose hash
// under k starts with the prefixBits bits of prefix, and whether more
// such members follow. It starts at the first member when fromStart is set,
// else strictly after the cursor after: the empty string is a member like
// any other, and a scan must be able to reach it. O(n) from the cursor.
func (s Set) RangeMembers(k Key, prefixBits uint8, prefix uint64, fromStart bool, after string, limit int) (members []string, more bool) {
	if limit <= 0 {
		return nil, false
	}
	var c collector
	visit := func(m []byte) bool {
		if prefixBits > 0 && !InRange(k.hash(m), prefixBits, prefix) {
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
