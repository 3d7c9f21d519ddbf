package vclock

import (
	"errors"
	"maps"
	quickrand "math/rand"
	"math/rand/v2"
	"reflect"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// small draws vectors over few origins and small seqs, so they overlap.
type small VV

// testing/quick calls Generate only with a math/rand (v1) source.
var _ quick.Generator = small{}

func (small) Generate(r *quickrand.Rand, size int) reflect.Value {
	v := small{}
	for i := 0; i < r.Intn(5); i++ {
		v[uint64(r.Intn(4))] = uint64(r.Intn(6))
	}
	return reflect.ValueOf(v)
}

func vv(s small) VV { return VV(s).Clone() }

// norm drops zero entries, which mean the same as absent ones.
func norm(v VV) VV {
	out := VV{}
	for o, s := range v {
		if s > 0 {
			out[o] = s
		}
	}
	return out
}

func refMax(a, b VV) VV {
	out := norm(a)
	for o, s := range b {
		if s > out[o] {
			out[o] = s
		}
	}
	return norm(out)
}

var cfg = &quick.Config{MaxCount: 1000}

func check(t *testing.T, f any) { t.Helper(); require.NoError(t, quick.Check(f, cfg)) }

func merged(a, b VV) VV { m := a.Clone(); m.Merge(b); return norm(m) }

func TestPropertyMergeIsPointwiseMax(t *testing.T) {
	check(t, func(a, b small) bool {
		return maps.Equal(merged(vv(a), vv(b)), refMax(vv(a), vv(b)))
	})
}

func TestPropertyMergeLaws(t *testing.T) {
	check(t, func(a, b, c small) bool {
		x, y, z := vv(a), vv(b), vv(c)
		commutative := maps.Equal(merged(x, y), merged(y, x))
		associative := maps.Equal(merged(merged(x, y), z), merged(x, merged(y, z)))
		idempotent := maps.Equal(merged(x, x), norm(x))
		return commutative && associative && idempotent
	})
}

func TestPropertyMergeReturnsWhatRose(t *testing.T) {
	check(t, func(a, b small) bool {
		x, y := vv(a), vv(b)
		before := x.Clone()
		raised := x.Merge(y)
		for o, s := range x {
			rose := s > before[o]
			if got, ok := raised[o]; ok != rose || (rose && got != s) {
				return false
			}
		}
		return true
	})
}

func TestPropertyCompare(t *testing.T) {
	check(t, func(a, b small) bool {
		x, y := vv(a), vv(b)
		got := x.Compare(y)
		mirror := map[Ordering]Ordering{Equal: Equal, Before: After, After: Before, Concurrent: Concurrent}
		if y.Compare(x) != mirror[got] {
			return false
		}
		m := merged(x, y)
		switch got {
		case Equal:
			return maps.Equal(norm(x), norm(y))
		case Before:
			return maps.Equal(m, norm(y)) && !maps.Equal(m, norm(x))
		case After:
			return maps.Equal(m, norm(x)) && !maps.Equal(m, norm(y))
		default:
			return !maps.Equal(m, norm(x)) && !maps.Equal(m, norm(y))
		}
	})
}

// Fetching exactly the Missing ranges brings v up to o, no more.
func TestPropertyMissingIsExactlyTheDifference(t *testing.T) {
	check(t, func(a, b small) bool {
		x, y := vv(a), vv(b)
		fetched := x.Clone()
		for _, r := range x.Missing(y) {
			if r.From != x[r.Origin]+1 || r.Len() == 0 {
				return false
			}
			fetched[r.Origin] = r.To
		}
		return maps.Equal(norm(fetched), refMax(x, y))
	})
}

func TestCompareCases(t *testing.T) {
	tests := []struct {
		a, b VV
		want Ordering
	}{
		{VV{}, VV{}, Equal},
		{VV{1: 0}, VV{}, Equal},
		{VV{1: 2}, VV{1: 3}, Before},
		{VV{1: 3}, VV{1: 3, 2: 1}, Before},
		{VV{1: 4}, VV{1: 3}, After},
		{VV{1: 4}, VV{1: 3, 2: 1}, Concurrent},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.a.Compare(tt.b), "%v vs %v", tt.a, tt.b)
	}
	assert.Equal(t, "concurrent", Concurrent.String())
}

// Seen against a naive set of seqs: whatever the order of arrival, the VV is
// the contiguous prefix, Has matches, and Add reports exactly the new dots.
func TestPropertySeenMatchesReference(t *testing.T) {
	check(t, func(seed int64) bool {
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		s := NewSeen()
		ref := map[Dot]bool{}
		for i := 0; i < 30; i++ {
			origin := uint64(r.IntN(3))
			from := uint64(1 + r.IntN(20))
			to := from + uint64(r.IntN(5))
			var want []uint64
			for q := from; q <= to; q++ {
				if !ref[Dot{origin, q}] {
					want = append(want, q)
				}
				ref[Dot{origin, q}] = true
			}
			var got []uint64
			for _, fr := range s.Add(Range{origin, from, to}) {
				if fr.Origin != origin {
					return false
				}
				for q := fr.From; q <= fr.To; q++ {
					got = append(got, q)
				}
			}
			if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
				return false
			}
		}
		for origin := uint64(0); origin < 3; origin++ {
			prefix := uint64(0)
			for ref[Dot{origin, prefix + 1}] {
				prefix++
			}
			if s.Contiguous(origin) != prefix {
				return false
			}
			for q := uint64(0); q < 30; q++ {
				if s.Has(Dot{origin, q}) != ref[Dot{origin, q}] {
					return false
				}
			}
		}
		return true
	})
}

func TestSeenFillsGapAndAdvance(t *testing.T) {
	s := NewSeen()
	assert.Equal(t, []Range{{7, 5, 8}}, s.Add(Range{7, 5, 8}))
	assert.Equal(t, uint64(0), s.Contiguous(7), "a gap keeps the prefix")
	assert.True(t, s.HasGap(7))
	assert.Equal(t, []Range{{7, 1, 4}, {7, 9, 10}}, s.Add(Range{7, 1, 10}))
	assert.Equal(t, uint64(10), s.Contiguous(7))
	assert.False(t, s.HasGap(7))
	assert.Nil(t, s.Add(Range{7, 3, 9}))
	assert.Nil(t, s.Add(Range{7, 0, 0}), "seq 0 is not a dot")

	s.Add(Range{9, 4, 6})
	assert.Equal(t, VV{9: 2}, s.Advance(VV{7: 3, 9: 2}), "a snapshot up to 2 cannot bridge the missing 3")
	assert.Equal(t, VV{9: 6}, s.Advance(VV{9: 3}), "covering 3 joins the span 4..6")
	assert.False(t, s.HasGap(9))
}

func TestEncodingRoundTripAndCanonical(t *testing.T) {
	check(t, func(a small) bool {
		v := vv(a)
		b, _ := v.MarshalBinary()
		var got VV
		if got.UnmarshalBinary(b) != nil {
			return false
		}
		again, _ := got.MarshalBinary()
		return maps.Equal(got, norm(v)) && reflect.DeepEqual(b, again)
	})
	big := VV{}
	for i := uint64(0); i < 20; i++ {
		big[rand.Uint64()] = 1 << 40
	}
	b, _ := big.MarshalBinary()
	assert.Less(t, len(b), 300, "20 origins at a trillion likes each")
}

func TestDecodeRejects(t *testing.T) {
	one := []byte{encodingV1, 1, 0, 0, 0, 0, 0, 0, 0, 5, 3}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"version", []byte{2, 0}, ErrVersion},
		{"count beyond data", []byte{encodingV1, 3, 0}, ErrTruncated},
		{"zero seq", []byte{encodingV1, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0}, ErrZero},
		{"unsorted", append(append([]byte{encodingV1, 2}, one[2:]...), 0, 0, 0, 0, 0, 0, 0, 4, 1), ErrOrder},
		{"too many", []byte{encodingV1, 0xff, 0xff, 0x7f}, ErrTooMany},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v VV
			assert.True(t, errors.Is(v.UnmarshalBinary(tt.in), tt.want), "%v", v.UnmarshalBinary(tt.in))
		})
	}
	var v VV
	require.NoError(t, v.UnmarshalBinary(one))
	assert.Equal(t, VV{5: 3}, v)
}

func FuzzDecode(f *testing.F) {
	for _, v := range []VV{{}, {1: 1}, {1: 5, 1 << 63: 1 << 40}} {
		b, _ := v.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v VV
		if v.UnmarshalBinary(data) != nil {
			return
		}
		again, _ := v.MarshalBinary()
		require.Equal(t, data, again)
	})
}

func TestSeenForgetAndHasGap(t *testing.T) {
	s := NewSeen()
	s.Add(Range{1, 1, 3})
	s.Add(Range{1, 6, 7})
	assert.True(t, s.HasGap(1))
	assert.False(t, s.HasGap(2))
	s.Forget(1)
	assert.False(t, s.Has(Dot{1, 2}))
	assert.False(t, s.HasGap(1))
	assert.Equal(t, VV{}, s.VV())
}
