package gset

import (
	"maps"
	quickrand "math/rand"
	"reflect"
	"slices"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Equal reports whether s and o hold the same members (tests only: the
// replica never compares whole sets, it compares digests).
func (s Set) Equal(o Set) bool { return s.n == o.n && slices.Equal(s.Members(), o.Members()) }

func TestAddReportsNew(t *testing.T) {
	var s Set
	assert.True(t, s.Add("alice"))
	assert.False(t, s.Add("alice"), "second add of the same member is not new")
	assert.True(t, s.Add("bob"))
	assert.Equal(t, 2, s.Len())
	assert.True(t, s.Has("alice"))
	assert.False(t, s.Has("carol"))
}

func TestZeroValue(t *testing.T) {
	var s Set
	assert.Equal(t, 0, s.Len())
	assert.False(t, s.Has(""))
	assert.Empty(t, s.Members())
	got, more := s.Page("", 10)
	assert.Empty(t, got)
	assert.False(t, more)
	c := s.Clone()
	assert.Equal(t, 0, c.Len())
	assert.True(t, s.Equal(Set{}))
}

func TestMergeReturnsOnlyNew(t *testing.T) {
	a := New("alice", "bob")
	b := New("bob", "carol", "dave")
	got := a.Merge(b)
	assert.Equal(t, []string{"carol", "dave"}, got)
	assert.Equal(t, []string{"alice", "bob", "carol", "dave"}, a.Members())
	assert.Equal(t, []string{"bob", "carol", "dave"}, b.Members(), "merge never changes its argument")
	assert.Empty(t, a.Merge(b), "merging again adds nothing")
}

func TestPage(t *testing.T) {
	s := New("e", "a", "d", "b", "c")
	tests := []struct {
		name     string
		after    string
		limit    int
		want     []string
		wantMore bool
	}{
		{"first page", "", 2, []string{"a", "b"}, true},
		{"cursor is exclusive", "a", 1, []string{"b"}, true},
		{"from cursor", "b", 2, []string{"c", "d"}, true},
		{"last page exactly", "c", 2, []string{"d", "e"}, false},
		{"cursor not a member", "bb", 10, []string{"c", "d", "e"}, false},
		{"cursor past the end", "z", 10, []string{}, false},
		{"limit larger than set", "", 100, []string{"a", "b", "c", "d", "e"}, false},
		{"zero limit", "", 0, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, more := s.Page(tt.after, tt.limit)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.wantMore, more)
		})
	}
}

func TestCloneIsIndependent(t *testing.T) {
	a := New("x", "y")
	c := a.Clone()
	a.Add("z")
	c.Add("w")
	assert.Equal(t, []string{"x", "y", "z"}, a.Members())
	assert.Equal(t, []string{"w", "x", "y"}, c.Members())
}

// ref is the naive reference: a Go map.
type ref map[string]bool

func (r ref) sorted() []string { return slices.Sorted(maps.Keys(r)) }

func toRef(members []string) ref {
	r := ref{}
	for _, m := range members {
		r[m] = true
	}
	return r
}

// smallStrings draws members from a small alphabet so that generated sets
// overlap, which is where merge laws can break.
type smallStrings []string

// testing/quick calls Generate only with a math/rand (v1) source.
var _ quick.Generator = smallStrings{}

func (smallStrings) Generate(r *quickrand.Rand, size int) reflect.Value {
	n := r.Intn(size + 1)
	out := make(smallStrings, n)
	for i := range out {
		b := make([]byte, r.Intn(3))
		for j := range b {
			b[j] = "abc\x00\xff"[r.Intn(5)]
		}
		out[i] = string(b)
	}
	return reflect.ValueOf(out)
}

var quickCfg = &quick.Config{MaxCount: 500}

func check(t *testing.T, f any) {
	t.Helper()
	require.NoError(t, quick.Check(f, quickCfg))
}

func TestPropertyMatchesReference(t *testing.T) {
	check(t, func(ms smallStrings) bool {
		var s Set
		r := ref{}
		for _, m := range ms {
			if s.Add(m) != !r[m] {
				return false
			}
			r[m] = true
		}
		return slices.Equal(s.Members(), r.sorted()) && s.Len() == len(r)
	})
}

func TestPropertyMergeCommutative(t *testing.T) {
	check(t, func(x, y smallStrings) bool {
		a, b := New(x...), New(y...)
		ab, ba := a.Clone(), b.Clone()
		ab.Merge(b)
		ba.Merge(a)
		return ab.Equal(ba)
	})
}

func TestPropertyMergeAssociative(t *testing.T) {
	check(t, func(x, y, z smallStrings) bool {
		left := New(x...)
		left.Merge(New(y...))
		left.Merge(New(z...))
		yz := New(y...)
		yz.Merge(New(z...))
		right := New(x...)
		right.Merge(yz)
		return left.Equal(right)
	})
}

func TestPropertyMergeIdempotent(t *testing.T) {
	check(t, func(x smallStrings) bool {
		a := New(x...)
		added := a.Merge(a.Clone())
		return len(added) == 0 && a.Equal(New(x...))
	})
}

func TestPropertyMergeReturnsExactlyTheNewMembers(t *testing.T) {
	check(t, func(x, y smallStrings) bool {
		a := New(x...)
		before := toRef(x)
		var want []string
		for _, m := range toRef(y).sorted() {
			if !before[m] {
				want = append(want, m)
			}
		}
		return slices.Equal(a.Merge(New(y...)), want)
	})
}

func TestPropertyAddIsMergeOfSingleton(t *testing.T) {
	check(t, func(x smallStrings, m string) bool {
		viaAdd, viaMerge := New(x...), New(x...)
		newByAdd := viaAdd.Add(m)
		newByMerge := len(viaMerge.Merge(New(m))) == 1
		return newByAdd == newByMerge && viaAdd.Equal(viaMerge)
	})
}

func TestPropertyPagesCoverTheSetOnce(t *testing.T) {
	check(t, func(x smallStrings, limit uint8) bool {
		s := New(x...)
		l := int(limit%7) + 1
		var got []string
		after := ""
		for {
			page, more := s.Page(after, l)
			got = append(got, page...)
			if !more {
				break
			}
			after = page[len(page)-1]
		}
		r := toRef(x)
		delete(r, "") // no cursor precedes the empty string: Walk reaches it
		return slices.Equal(got, r.sorted())
	})
}

func TestPropertyBlockFormRoundTrips(t *testing.T) {
	check(t, func(x smallStrings) bool {
		s := New(x...)
		got, rest, err := DecodeBlocks(s.AppendBlocks(nil))
		return err == nil && len(rest) == 0 && got.Equal(s)
	})
}
