package gset

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkInvariants walks the block structure: no empty leaf or block, every
// block's first entry whole, members strictly increasing across blocks and
// leaves, n and digest matching the members.
func checkInvariants(t *testing.T, s Set) {
	t.Helper()
	if s.n == 0 {
		require.Empty(t, s.leaves)
		require.Zero(t, s.digest)
		return
	}
	var prev string
	n := 0
	var digest uint64
	for li, leaf := range s.leaves {
		require.NotEmpty(t, leaf, "leaf %d", li)
		require.LessOrEqual(t, len(leaf), maxLeaf, "leaf %d", li)
		for bi, blk := range leaf {
			require.NotEmpty(t, blk)
			p, _, _ := readEntry(blk, 0)
			require.Zero(t, p, "block %d/%d starts with a shared prefix", li, bi)
			var key []byte
			for at := 0; at < len(blk); {
				p, sl, j := readEntry(blk, at)
				require.LessOrEqual(t, p, len(key))
				require.LessOrEqual(t, j+sl, len(blk))
				key = append(key[:p], blk[j:j+sl]...)
				at = j + sl
				if n > 0 {
					require.Less(t, prev, string(key))
				}
				prev = string(key)
				digest += MemberHash(prev)
				n++
			}
		}
	}
	require.Equal(t, n, s.n)
	require.Equal(t, digest, s.digest)
}

// genMembers draws n members of mixed shapes: short ids with long shared
// prefixes, UUID-like strings, a few long ones past maxBlock, and bytes 0
// and 0xff, so headers of both forms, splits and leaf splits all happen.
func genMembers(r *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		switch r.IntN(10) {
		case 0:
			out[i] = fmt.Sprintf("%x-%x", r.Uint64(), r.Uint64())
		case 1:
			out[i] = strings.Repeat("z", r.IntN(2*maxBlock))
		case 2:
			out[i] = string([]byte{byte(r.IntN(2)) * 0xff, byte(r.IntN(3))})
		default:
			out[i] = fmt.Sprintf("u%07d", r.IntN(3*n+1))
		}
	}
	return out
}

func TestLargeSetsMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 10, 100, 1000, 30000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ms := genMembers(r, n)
			var s Set
			ref := ref{}
			for _, m := range ms {
				require.Equal(t, !ref[m], s.Add(m), "add %q", m)
				ref[m] = true
			}
			checkInvariants(t, s)
			want := ref.sorted()
			require.Equal(t, want, s.Members())
			for _, m := range want {
				require.True(t, s.Has(m), m)
				require.False(t, s.Has(m+"\x00"), m)
			}
			require.False(t, s.Has("\xff\xff\xff"))
			// pages of 7 from every 97th cursor
			for i := 0; i < len(want); i += 97 {
				got, more := s.Page(want[i], 7)
				end := min(len(want), i+8)
				require.Equal(t, want[i+1:end], got)
				require.Equal(t, end < len(want), more)
			}
			// encoding round-trips and decodes to the same structure's members
			b := mustMarshal(t, s)
			var d Set
			require.NoError(t, d.UnmarshalBinary(b))
			checkInvariants(t, d)
			require.True(t, d.Equal(s))
			require.Equal(t, b, mustMarshal(t, d))
			// a decoded (bulk-built) set keeps working under adds
			extra := genMembers(r, n/2+1)
			for _, m := range extra {
				require.Equal(t, !ref[m], d.Add(m))
				ref[m] = true
			}
			checkInvariants(t, d)
			require.Equal(t, ref.sorted(), d.Members())
		})
	}
}

func TestMergeBothPathsMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, sizes := range [][2]int{{0, 500}, {500, 0}, {5000, 20}, {20, 5000}, {3000, 3000}} {
		t.Run(fmt.Sprint(sizes), func(t *testing.T) {
			x, y := genMembers(r, sizes[0]), genMembers(r, sizes[1])
			a, b := New(x...), New(y...)
			bBefore := b.Members()
			before := toRef(x)
			var want []string
			for _, m := range toRef(y).sorted() {
				if !before[m] {
					want = append(want, m)
				}
			}
			got := a.Merge(b)
			require.Equal(t, want, got)
			checkInvariants(t, a)
			all := toRef(append(slices.Clone(x), y...)).sorted()
			require.Equal(t, all, a.Members())
			require.Equal(t, bBefore, b.Members(), "merge never changes its argument")
			a.Add("after-merge")
			b.Add("after-merge-b")
			require.Equal(t, bBefore, slices.DeleteFunc(b.Members(), func(m string) bool { return m == "after-merge-b" }))
			checkInvariants(t, a)
			checkInvariants(t, b)
		})
	}
}

// Clones share blocks: whichever side changes first, the other must not see
// it, however many clones were taken and in whatever order they change.
func TestCloneCopyOnWriteAtScale(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	base := New(genMembers(r, 20000)...)
	want := base.Members()
	c1 := base.Clone()
	c2 := base.Clone()
	c3 := c2.Clone()
	for _, m := range genMembers(r, 3000) {
		base.Add(m)
	}
	for _, m := range genMembers(r, 3000) {
		c2.Add("c2" + m)
	}
	assert.Equal(t, want, c1.Members())
	assert.Equal(t, want, c3.Members())
	c1.Add("only-c1")
	assert.False(t, base.Has("only-c1"))
	assert.False(t, c3.Has("only-c1"))
	for _, s := range []Set{base, c1, c2, c3} {
		checkInvariants(t, s)
	}
}

func TestHeaderForms(t *testing.T) {
	for _, tt := range []struct{ p, s, want int }{{0, 0, 1}, {15, 14, 1}, {14, 15, 1}, {15, 15, 3}, {16, 0, 3}, {0, 200, 4}} {
		b := appendHeader(nil, tt.p, tt.s)
		assert.Len(t, b, tt.want, "%d/%d", tt.p, tt.s)
		blk := string(append(b, strings.Repeat("x", tt.s)...))
		p, s, j := readEntry(blk, 0)
		assert.Equal(t, [3]int{tt.p, tt.s, tt.want}, [3]int{p, s, j})
	}
}
