package gset

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkInvariants walks the block structure: no empty leaf or block, every
// block's first entry whole, members strictly increasing across blocks and
// leaves, n matching the members.
func checkInvariants(t *testing.T, s Set) {
	t.Helper()
	if s.n == 0 {
		require.Empty(t, s.leaves)
		return
	}
	var prev string
	n := 0
	for li, leaf := range s.leaves {
		require.NotEmpty(t, leaf, "leaf %d", li)
		require.LessOrEqual(t, len(leaf), maxLeaf, "leaf %d", li)
		for bi, blk := range leaf {
			require.NotEmpty(t, blk)
			require.Zero(t, readEntry(blk, 0).p, "block %d/%d starts with a shared prefix", li, bi)
			var key []byte
			for at := 0; at < len(blk); {
				e := readEntry(blk, at)
				require.LessOrEqual(t, e.p, len(key))
				require.LessOrEqual(t, e.end, len(blk))
				key = e.appendRest(key[:e.p], blk)
				at = e.end
				if n > 0 {
					require.Less(t, prev, string(key))
				}
				prev = string(key)
				n++
			}
		}
	}
	require.Equal(t, n, s.n)
}

// genMembers draws n members of mixed shapes: short ids with long shared
// prefixes, UUID-like strings, a few long ones past maxBlock, and bytes 0
// and 0xff, so headers of both forms, splits and leaf splits all happen.
func genMembers(r *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		switch r.IntN(12) {
		case 0:
			out[i] = fmt.Sprintf("%x-%x", r.Uint64(), r.Uint64())
		case 10:
			out[i] = uuid(r)
		case 11: // UUIDs sharing long prefixes, and near-UUIDs beside them
			u := []byte(uuid(r))
			copy(u, "0123abcd-ef")
			if r.IntN(4) == 0 {
				u[35] = 'G'
			}
			out[i] = string(u)
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
			// the block form round-trips and decodes to the same members
			d := mustDecodeBlocks(t, s)
			checkInvariants(t, d)
			require.True(t, d.Equal(s))
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

func TestEntryForms(t *testing.T) {
	const id = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0ff"
	for _, tt := range []struct {
		key       string
		p, header int
		packed    bool
	}{
		{"u0001234", 0, 1, false},
		{"u0001234", 7, 1, false},
		{"u0001234", 8, 1, false},
		{"abcdefghijklmnop", 0, 2, false}, // rest of 16: medium
		{strings.Repeat("x", 40), 26, 2, false},
		{strings.Repeat("x", 40), 27, 3, false}, // prefix 27: long
		{strings.Repeat("x", 300), 0, 3, false},
		{id, 0, 1, true},
		{id, 9, 1, true},
		{id, 35, 1, true},
		{strings.ToUpper(id), 0, 2, false}, // upper-case hex stays raw
		{id[:35] + "g", 0, 2, false},
		{strings.Replace(id, "-", "x", 1), 0, 2, false},
	} {
		blk := appendEntry(nil, tt.key, tt.p)
		e := readEntry(blk, 0)
		assert.Equal(t, tt.p, e.p, tt.key)
		assert.Equal(t, tt.packed, e.packed, tt.key)
		assert.Equal(t, len(blk), e.end, tt.key)
		assert.Equal(t, tt.header, e.off, "%s/%d header bytes", tt.key, tt.p)
		assert.Equal(t, tt.key[tt.p:], string(e.appendRest(nil, blk)), tt.key)
	}
	assert.Equal(t, 17, len(appendEntry(nil, id, 0)), "a UUID packs into 16 bytes and a header")
}

// FuzzOps: any sequence of adds, clones and merges, with members cut from
// the input (short ones, long ones, UUID-shaped ones), matches a map and
// keeps the block invariants.
func FuzzOps(f *testing.F) {
	f.Add([]byte("\x00a\x01bb\x02ccc\x03\x00a"))
	f.Add([]byte("\x040123abcd-ef01-4234-8567-89abcdef0123\x040123abcd-ef01-4234-8567-89abcdef0000"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s, other Set
		r := ref{}
		var clone Set
		var cloneRef []string
		cloned := false
		for len(data) > 0 {
			op := data[0]
			data = data[1:]
			n := min(len(data), int(op>>3))
			m := string(data[:n])
			data = data[n:]
			switch op & 7 {
			case 0, 1, 2:
				require.Equal(t, !r[m], s.Add(m))
				r[m] = true
			case 3:
				other.Add(m)
			case 4:
				got := s.Merge(other)
				for _, a := range got {
					require.False(t, r[a])
					r[a] = true
				}
			case 5:
				if n%2 == 0 {
					clone, cloneRef, cloned = s.Clone(), r.sorted(), true
					break
				}
				// The compacted copy goes on; the old set must not see
				// its changes.
				clone, cloneRef, cloned = s, r.sorted(), true
				s = s.Compacted()
				require.Equal(t, clone.Bytes(), s.Bytes())
			case 6:
				for i := 0; i < 40; i++ { // enough to split blocks
					m2 := fmt.Sprintf("%s%03d", m, i)
					s.Add(m2)
					r[m2] = true
				}
			case 7:
				require.Equal(t, r[m], s.Has(m))
			}
		}
		checkInvariants(t, s)
		require.True(t, slices.Equal(r.sorted(), s.Members()))
		if cloned {
			require.True(t, slices.Equal(cloneRef, clone.Members()), "a clone never sees later changes")
		}
	})
}

// A set that took o's blocks by merging into an empty set must not see o's
// later in-place adds, nor o see its adds.
func TestMergeIntoEmptySharesNothingWritable(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	o := New(genMembers(r, 5000)...)
	want := o.Members()
	var s Set
	s.Merge(o)
	for i := 0; i < 3000; i++ {
		o.Add(fmt.Sprintf("u%07d-o%d", r.IntN(10_000_000), i))
	}
	require.Equal(t, want, s.Members())
	oWant := o.Members()
	for i := 0; i < 3000; i++ {
		s.Add(fmt.Sprintf("u%07d-s%d", r.IntN(10_000_000), i))
	}
	require.Equal(t, oWant, o.Members())
	checkInvariants(t, s)
	checkInvariants(t, o)
}

// A compacted copy holds the same members, digest and bytes, each leaf's
// blocks side by side in one allocation, and neither it nor the original
// sees the other's later adds.
func TestCompactedSharesNothingAndPacksEachLeaf(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{1, 70, 5000, 100_000} {
		s := New(genMembers(r, size)...)
		c := s.Compacted()
		require.True(t, s.Equal(c), "size %d", size)
		require.Equal(t, s.Len(), c.Len())
		require.Equal(t, s.Summary(tk).Digest, c.Summary(tk).Digest)
		require.Equal(t, s.Bytes(), c.Bytes())
		checkInvariants(t, c)
		for _, leaf := range c.leaves {
			for bi, blk := range leaf {
				require.Equal(t, len(blk)+packSlack, cap(blk), "a packed block's room ends before the next block")
				if bi > 0 {
					prev := leaf[bi-1]
					require.Equal(t, unsafe.Add(unsafe.Pointer(unsafe.SliceData(prev)), cap(prev)), unsafe.Pointer(unsafe.SliceData(blk)),
						"a leaf's blocks are packed side by side")
				}
			}
		}
		sWant, cWant := s.Members(), c.Members()
		for i := 0; i < 3000; i++ {
			s.Add(fmt.Sprintf("u%07d-s%d", r.IntN(10_000_000), i))
		}
		require.Equal(t, cWant, c.Members(), "the copy does not see the original's adds")
		var cAdded []string
		for i := 0; i < 3000; i++ {
			m := fmt.Sprintf("u%07d-c%d", r.IntN(10_000_000), i)
			c.Add(m)
			cAdded = append(cAdded, m)
		}
		checkInvariants(t, s)
		checkInvariants(t, c)
		require.Equal(t, len(sWant)+3000, s.Len())
		for _, m := range sWant {
			require.True(t, s.Has(m))
		}
		for _, m := range cAdded {
			require.False(t, s.Has(m), "the original does not see the copy's adds")
			require.True(t, c.Has(m))
		}
	}
	var empty Set
	require.Zero(t, empty.Bytes())
	require.Zero(t, empty.Compacted().Len())
	checkInvariants(t, empty.Compacted())
}

// After a compaction, the first adds to a block write into its room in the
// packed leaf: spread over every block, they allocate nothing.
func TestAddsAfterCompactedWriteInPlace(t *testing.T) {
	s, _ := build(100_000, shortID)
	s = s.Compacted()
	blocks := 0
	for _, l := range s.leaves {
		blocks += len(l)
	}
	// One new member in each block, in order: "u…-x" sorts right after a
	// block's first member, so each lands in a different block.
	var fresh []string
	for _, l := range s.leaves {
		for _, blk := range l {
			fresh = append(fresh, string(readEntry(blk, 0).appendRest(nil, blk))+"-x")
		}
	}
	i := 0
	allocs := testing.AllocsPerRun(len(fresh)-1, func() {
		require.True(t, s.Add(fresh[i]))
		i++
	})
	assert.Zero(t, allocs, "AllocsPerRun rounds down: under one allocation per add")
	checkInvariants(t, s)
	require.Equal(t, 100_000+len(fresh), s.Len())
	require.Greater(t, blocks, 500)
}

// Adds that fill a block's spare capacity write in place: no allocation.
func TestAddInPlaceAllocatesRarely(t *testing.T) {
	s, _ := build(100_000, shortID)
	fresh := make([]string, 2001)
	for i := range fresh {
		fresh[i] = fmt.Sprintf("u%07d-x", (i*7919)%10_000_000)
	}
	i := 0
	allocs := testing.AllocsPerRun(2000, func() {
		s.Add(fresh[i])
		i++
	})
	assert.Zero(t, allocs, "AllocsPerRun rounds down: under one allocation per add")
}
