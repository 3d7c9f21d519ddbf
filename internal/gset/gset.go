package gset

import (
	"github.com/google/btree"
)

// degree of the B-tree: 32 keeps nodes within a few cache lines of string
// headers while keeping the tree shallow for sets of millions of users.
const degree = 32

// Set is a grow-only set of strings kept in byte order. The zero value is an
// empty set ready to use. Copying a Set by assignment aliases it: use Clone
// for an independent copy.
type Set struct {
	t      *btree.BTreeG[string]
	digest uint64 // sum of MemberHash over the members, kept by Add
}

func less(a, b string) bool { return a < b }

// New returns a set holding members.
func New(members ...string) Set {
	var s Set
	for _, m := range members {
		s.Add(m)
	}
	return s
}

func (s *Set) init() {
	if s.t == nil {
		s.t = btree.NewG(degree, less)
	}
}

// Add inserts m and reports whether it was new to the set.
func (s *Set) Add(m string) bool {
	s.init()
	_, existed := s.t.ReplaceOrInsert(m)
	if !existed {
		s.digest += MemberHash(m)
	}
	return !existed
}

// Digest is the sum, mod 2^64, of MemberHash over the members: equal sets
// have equal digests whatever the order they were built in, and Add keeps
// it in O(1).
func (s Set) Digest() uint64 { return s.digest }

// Has reports whether m is in the set.
func (s Set) Has(m string) bool {
	return s.t != nil && s.t.Has(m)
}

// Len is the number of members.
func (s Set) Len() int {
	if s.t == nil {
		return 0
	}
	return s.t.Len()
}

// Merge adds every member of o to s and returns, in byte order, the members
// that were new to s. Merging o into s never changes o.
func (s *Set) Merge(o Set) []string {
	var added []string
	o.Walk(func(m string) bool {
		if s.Add(m) {
			added = append(added, m)
		}
		return true
	})
	return added
}

// Walk calls fn for every member in byte order until fn returns false.
func (s Set) Walk(fn func(m string) bool) {
	if s.t != nil {
		s.t.Ascend(fn)
	}
}

// Ascend calls fn for each member strictly greater than after, in byte
// order, until fn returns false. A cursor is always strictly exclusive, so
// the empty string (which sorts first) is reached only through Walk.
func (s Set) Ascend(after string, fn func(m string) bool) {
	if s.t == nil {
		return
	}
	s.t.AscendGreaterOrEqual(after, func(m string) bool {
		if m == after {
			return true
		}
		return fn(m)
	})
}

// Page returns up to limit members strictly greater than after, in byte order, and
// whether more members follow the last one returned.
func (s Set) Page(after string, limit int) (members []string, more bool) {
	if limit <= 0 {
		return nil, false
	}
	members = make([]string, 0, min(limit, s.Len()))
	s.Ascend(after, func(m string) bool {
		if len(members) == limit {
			more = true
			return false
		}
		members = append(members, m)
		return true
	})
	return members, more
}

// Members returns every member in byte order.
func (s Set) Members() []string {
	out := make([]string, 0, s.Len())
	s.Walk(func(m string) bool {
		out = append(out, m)
		return true
	})
	return out
}

// Clone returns an independent copy. It is O(1): the copies share nodes
// copy-on-write. Clone mutates s's internal bookkeeping, so it needs the
// same exclusive access as Add.
func (s *Set) Clone() Set {
	if s.t == nil {
		return Set{}
	}
	return Set{t: s.t.Clone(), digest: s.digest}
}

// Equal reports whether s and o hold the same members.
func (s Set) Equal(o Set) bool {
	if s.Len() != o.Len() {
		return false
	}
	equal := true
	var i int
	theirs := o.Members()
	s.Walk(func(m string) bool {
		if theirs[i] != m {
			equal = false
			return false
		}
		i++
		return true
	})
	return equal
}
