package gset

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDigestIsOrderIndependentAndTracksMembers(t *testing.T) {
	law := func(members []string, seed uint64) bool {
		a := New(members...)
		shuffled := slices.Clone(members)
		rand.New(rand.NewPCG(seed, 1)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		b := New(shuffled...)
		for _, m := range shuffled[len(shuffled)/2:] {
			b.Add(m) // re-adding changes nothing
		}
		var want uint64
		for _, m := range a.Members() {
			want += tk.Hash(m)
		}
		return a.Summary(tk).Digest == b.Summary(tk).Digest && a.Summary(tk).Digest == want
	}
	require.NoError(t, quick.Check(law, nil))
}

func TestDigestSurvivesCloneMergeAndDecode(t *testing.T) {
	a := New("x", "y", "z")
	b := New("y", "w")
	c := a.Clone()
	c.Merge(b)
	assert.Equal(t, New("w", "x", "y", "z").Summary(tk).Digest, c.Summary(tk).Digest)
	assert.Equal(t, New("x", "y", "z").Summary(tk).Digest, a.Summary(tk).Digest, "clone is independent")

	assert.Equal(t, c.Summary(tk), mustDecodeBlocks(t, c).Summary(tk))
}

func TestRangeDigestsPartitionTheRange(t *testing.T) {
	var s Set
	for i := range 5000 {
		s.Add(fmt.Sprintf("user-%d", i))
	}
	check := func(bits uint8, prefix uint64) {
		parts := s.RangeDigests(tk, bits, prefix)
		var sum Summary
		for i, p := range parts {
			sum = sum.Add(p)
			child := (prefix << 4) | uint64(i)
			assert.Equal(t, s.RangeSummary(tk, bits+4, child), p, "part %d of %d/%x", i, bits, prefix)
		}
		assert.Equal(t, s.RangeSummary(tk, bits, prefix), sum)
	}
	check(0, 0)
	check(4, 7)
	check(8, 0x3c)
	assert.Equal(t, s.Summary(tk), s.RangeSummary(tk, 0, 0))
}

func TestRangeMembersPagesTheRangeInOrder(t *testing.T) {
	var s Set
	for i := range 3000 {
		s.Add(fmt.Sprintf("u%05d", i))
	}
	s.Add("") // the empty id sorts first and must be reachable
	for _, r := range []struct {
		bits   uint8
		prefix uint64
	}{{0, 0}, {4, 2}, {8, 0xa1}} {
		var want []string
		for _, m := range s.Members() {
			if InRange(tk.Hash(m), r.bits, r.prefix) {
				want = append(want, m)
			}
		}
		var got []string
		after, fromStart := "", true
		for {
			page, more := s.RangeMembers(tk, r.bits, r.prefix, fromStart, after, 7)
			fromStart = false
			got = append(got, page...)
			if !more {
				break
			}
			require.NotEmpty(t, page)
			after = page[len(page)-1]
		}
		assert.Equal(t, want, got, "range %d/%x", r.bits, r.prefix)
	}
}
