package gset

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemberHashIsSplitmixOfXXHash(t *testing.T) {
	// xxhash64("") is 0xef46db3751d8e999; the finalizer is splitmix64's.
	z := uint64(0xef46db3751d8e999)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	assert.Equal(t, z, MemberHash(""))
	assert.NotEqual(t, MemberHash("a"), MemberHash("b"))
}

func TestDigestEmptyAndSum(t *testing.T) {
	var s Set
	assert.Zero(t, s.Digest())
	s.Add("a")
	s.Add("a")
	s.Add("b")
	assert.Equal(t, MemberHash("a")+MemberHash("b"), s.Digest())
	c := s.Clone()
	assert.Equal(t, s.Digest(), c.Digest())
	var d Set
	require.NoError(t, d.UnmarshalBinary(mustMarshal(t, s)))
	assert.Equal(t, s.Digest(), d.Digest(), "a decoded set carries its digest")
}

func mustMarshal(t *testing.T, s Set) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	require.NoError(t, err)
	return b
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
			want += MemberHash(m)
		}
		return a.Digest() == b.Digest() && a.Digest() == want
	})
}

// refRange is the naive reference for RangeDigests and RangeMembers.
func refRange(members []string, bits uint8, prefix uint64) (buckets [Fanout]Summary, inRangeSorted []string) {
	for _, m := range toRef(members).sorted() {
		h := MemberHash(m)
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
			prefix = MemberHash(x[int(pick)%len(x)]) >> (64 - bits)
		}
		want, _ := refRange(x, bits, prefix)
		got := s.RangeDigests(bits, prefix)
		var sum uint64
		var n int
		for _, b := range got {
			sum += b.Digest
			n += b.Count
		}
		if bits == 0 && (sum != s.Digest() || n != s.Len()) {
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
				page, more := s.RangeMembers(bits, prefix, fromStart, after, l)
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
	got, more := s.RangeMembers(0, 0, true, "", 0)
	assert.Nil(t, got)
	assert.False(t, more)
	got, more = s.RangeMembers(0, 0, true, "", 2)
	assert.Equal(t, []string{"a", "b"}, got)
	assert.True(t, more)
	h := MemberHash("b")
	got, _ = s.RangeMembers(64, h, true, "", 10)
	assert.Equal(t, []string{"b"}, got, "64 bits: the range of one hash")
	b := s.RangeDigests(64, h)
	assert.Equal(t, Summary{Digest: h, Count: 1}, b[0])
	b = s.RangeDigests(255, h)
	assert.Equal(t, Summary{Digest: h, Count: 1}, b[0], "more than 64 bits count as 64")
}
