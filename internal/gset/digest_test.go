package gset

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tk is the key the package's tests hash under.
var tk = DeriveKey([]byte("gset test secret"))

func TestKeyHashIsSipHash24UnderTheDerivedKey(t *testing.T) {
	// SipHash-2-4's reference vector: key 00..0f, empty message.
	k := Key{k0: 0x0706050403020100, k1: 0x0f0e0d0c0b0a0908}
	assert.Equal(t, uint64(0x726fdb47dd0e0e31), k.Hash(""))
	assert.NotEqual(t, tk.Hash("a"), tk.Hash("b"))
	assert.Equal(t, DeriveKey([]byte("gset test secret")), tk, "derivation is deterministic")
	assert.NotEqual(t, tk.Hash("a"), DeriveKey([]byte("other")).Hash("a"))
	assert.NotEqual(t, tk.ID(), DeriveKey([]byte("other")).ID())
	assert.Equal(t, PublicKey(), DeriveKey(nil))
	assert.NotZero(t, PublicKey().ID())
	assert.NotEqual(t, tk.Hash("a"), tk.Tuple(tk.Hash("a"), 0, 0))
}

// The ids a 4-sum search found against the unkeyed hash (issue #21):
// equal sums under splitmix(xxhash), different under a key.
func TestTheUnkeyedCollisionIsNoneUnderAKey(t *testing.T) {
	a := New("user-2436220", "user-3484362")
	b := New("user-3001774", "user-3276129")
	assert.NotEqual(t, a.Summary(tk), b.Summary(tk))
	assert.NotEqual(t, a.Summary(PublicKey()), b.Summary(PublicKey()))
}

func TestDigestEmptyAndSum(t *testing.T) {
	var s Set
	assert.Zero(t, s.Summary(tk))
	s.Add("a")
	s.Add("a")
	s.Add("b")
	assert.Equal(t, tk.Hash("a")+tk.Hash("b"), s.Summary(tk).Digest)
	c := s.Clone()
	assert.Equal(t, s.Summary(tk).Digest, c.Summary(tk).Digest)
	d := mustDecodeBlocks(t, s)
	assert.Equal(t, s.Summary(tk).Digest, d.Summary(tk).Digest, "a decoded set has its digest")
}

// mustDecodeBlocks is s written in block form and read back.
func mustDecodeBlocks(t *testing.T, s Set) Set {
	t.Helper()
	d, rest, err := DecodeBlocks(s.AppendBlocks(nil))
	require.NoError(t, err)
	require.Empty(t, rest)
	return d
}

// Equal sets have equal digests whatever the order and duplication of
// their adds and merges.
func TestPropertyDigestIndependentOfOrder(t *testing.T) {
	check(t, func(x smallStrings, seed uint64) bool {
		a := New(x...)
		y := slices.Clone(x)
		r := rand.New(rand.NewPCG(seed, 1))
		r.Shuffle(len(y), func(i, j int) { y[i], y[j] = y[j], y[i] })
		var b Set
		for i, m := range y {
			if i%2 == 0 {
				b.Merge(New(m, m))
			} else {
				b.Add(m)
			}
		}
		var want uint64
		for m := range toRef(x) {
			want += tk.Hash(m)
		}
		return a.Summary(tk).Digest == b.Summary(tk).Digest && a.Summary(tk).Digest == want
	})
}

// refRange is the naive reference for RangeDigests and RangeMembers.
func refRange(members []string, bits uint8, prefix uint64) (buckets [Fanout]Summary, inRangeSorted []string) {
	for _, m := range toRef(members).sorted() {
		h := tk.Hash(m)
		if bits > 0 && h>>(64-uint(min(bits, 64))) != prefix {
			continue
		}
		var nib uint64
		if bits < 64 {
			nib = (h << bits) >> 60
		}
		buckets[nib].Digest += h
		buckets[nib].Count++
		inRangeSorted = append(inRangeSorted, m)
	}
	return buckets, inRangeSorted
}

func TestPropertyRangeDigestsMatchReference(t *testing.T) {
	check(t, func(x smallStrings, bits uint8, pick uint8) bool {
		bits %= 6
		s := New(x...)
		prefix := uint64(0)
		if len(x) > 0 && bits > 0 { // a prefix that has members, usually
			prefix = tk.Hash(x[int(pick)%len(x)]) >> (64 - bits)
		}
		want, _ := refRange(x, bits, prefix)
		got := s.RangeDigests(tk, bits, prefix)
		var sum uint64
		var n int
		for _, b := range got {
			sum += b.Digest
			n += b.Count
		}
		if bits == 0 && (sum != s.Summary(tk).Digest || n != s.Len()) {
			return false
		}
		return got == want
	})
}

func TestPropertyRangeMembersPagesMatchReference(t *testing.T) {
	check(t, func(x smallStrings, bits uint8, limit uint8) bool {
		bits %= 3
		s := New(x...)
		for prefix := uint64(0); prefix < 1<<bits; prefix++ {
			_, want := refRange(x, bits, prefix)
			l := int(limit%5) + 1
			var got []string
			after, fromStart := "", true
			for {
				page, more := s.RangeMembers(tk, bits, prefix, fromStart, after, l)
				fromStart = false
				got = append(got, page...)
				if !more {
					break
				}
				after = page[len(page)-1]
			}
			if !slices.Equal(got, want) {
				return false
			}
		}
		return true
	})
}

func TestRangeEdges(t *testing.T) {
	s := New("a", "b", "c")
	got, more := s.RangeMembers(tk, 0, 0, true, "", 0)
	assert.Nil(t, got)
	assert.False(t, more)
	got, more = s.RangeMembers(tk, 0, 0, true, "", 2)
	assert.Equal(t, []string{"a", "b"}, got)
	assert.True(t, more)
	h := tk.Hash("b")
	got, _ = s.RangeMembers(tk, 64, h, true, "", 10)
	assert.Equal(t, []string{"b"}, got, "64 bits: the range of one hash")
	b := s.RangeDigests(tk, 64, h)
	assert.Equal(t, Summary{Digest: h, Count: 1}, b[0])
	b = s.RangeDigests(tk, 255, h)
	assert.Equal(t, Summary{Digest: h, Count: 1}, b[0], "more than 64 bits count as 64")
}
