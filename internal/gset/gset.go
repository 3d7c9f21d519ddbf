package gset

import (
	"bytes"
	"slices"
	"unsafe"
)

// Block and leaf sizes. A block is a run of front-coded members in byte
// order; a leaf is a slice of blocks; a set is a slice of leaves. Lookups
// binary-search the leaves, then the blocks, by each one's first member (the
// first entry of a block is always stored whole), then scan one block.
const (
	// maxBlock bounds a block's bytes: scanning one is the linear part of
	// has and add, and an add moves its tail. 768 B is ~100 short ids: a
	// scan of a few hundred ns, and per-block overhead (a 24-byte slice
	// header and size-class rounding) under 1 B per member. At 512, a load
	// of ~100 short ids per post, every post growing at once, ended with
	// every set splitting: the size classes the sets left held part-used
	// spans no set came back to (53 of 126 MiB of spans in use at the end
	// of 10M likes, against 5 at 1024), and the load's peak was 1.67× the
	// settled RSS against 1.38× at 768 (docs/benchmarks.md). Larger blocks
	// cost has and add a longer scan (LikeHotPost +23 % at 768).
	maxBlock = 768
	// maxLeaf bounds a leaf's blocks, so a block split moves at most a few
	// hundred bytes of headers, and a leaf split moves the leaves' headers
	// (a 1M-member set has ~250 leaves).
	maxLeaf = 64
)

// Set is a grow-only set of strings kept in byte order. The zero value is an
// empty set ready to use. Copying a Set by assignment aliases it: use Clone
// for an independent copy.
type Set struct {
	// leaves hold the blocks. While shared is false, a block with spare
	// capacity (cap > len) is this set's alone and an add may write into
	// it; a block without may be seen by a Clone and is replaced, never
	// written. While shared is true, no block is written: unshare first
	// clips every block to its length. The leaves slices are edited in
	// place unless shared is set.
	leaves [][][]byte
	n      int
	// shared marks leaves as seen by a Clone: the next change copies the
	// slices of block headers (not the blocks) first, clipping every block
	// to its length so that neither copy writes into a shared one.
	shared bool
}

// New returns a set holding members.
func New(members ...string) Set {
	var s Set
	for _, m := range members {
		s.Add(m)
	}
	return s
}

// firstAbove reports whether blk's first member is greater than m.
func firstAbove(blk []byte, m string) bool {
	// A block's first entry shares nothing: for short and medium headers its
	// bytes follow the header and compare as they are.
	if h := blk[0]; h < uuidBase {
		return string(blk[1:1+int(h&15)]) > m
	} else if h == mediumBase && blk[1] < 0x80 {
		return string(blk[2:2+int(blk[1])]) > m
	}
	e := readEntry(blk, 0)
	if !e.packed {
		return string(blk[e.off:e.end]) > m
	}
	var buf [uuidLen]byte
	return string(e.appendRest(buf[:0], blk)) > m
}

func lcp[A, B string | []byte](a A, b B) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// locate returns the block m belongs in: the last one whose first member is
// ≤ m, or the very first block. The set must not be empty.
func (s *Set) locate(m string) (li, bi int) {
	lo, hi := 1, len(s.leaves)
	for lo < hi { // first leaf whose first key > m
		mid := int(uint(lo+hi) >> 1)
		if firstAbove(s.leaves[mid][0], m) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	li = lo - 1
	leaf := s.leaves[li]
	lo, hi = 1, len(leaf)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if firstAbove(leaf[mid], m) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return li, lo - 1
}

// spot is where a missing member goes in a block.
type spot struct {
	at    int // offset of the first entry greater than m, or len(blk)
	match int // bytes m shares with the entry before at (0 if none)
	next  entry
	nlcp  int // bytes the entry at at (when there is one) shares with m
}

// seek looks m up in blk without rebuilding members: it tracks how many
// bytes the last member below m shares with m, which with each entry's
// shared-prefix length is enough to compare the next entry to m.
func seek(blk []byte, m string) (sp spot, found bool) {
	match := 0
	var buf [uuidLen]byte
	for at := 0; at < len(blk); {
		// Short and medium headers are decoded inline: they are nearly every
		// entry, and this loop is most of what an add costs.
		var p, end int
		var rest []byte
		if h := blk[at]; h < uuidBase {
			p, end = int(h>>4), at+1+int(h&15)
			rest = blk[at+1 : end]
		} else if h >= mediumBase && h < longHeader && blk[at+1] < 0x80 {
			p, end = int(h-mediumBase), at+2+int(blk[at+1])
			rest = blk[at+2 : end]
		} else {
			e := readEntry(blk, at)
			p, end = e.p, e.end
			if p == match {
				rest = e.appendRest(buf[:0], blk)
			}
		}
		if p > match { // agrees with the previous member past match: below m
			at = end
			continue
		}
		if p < match { // first difference is above the previous member's: above m
			return spot{at: at, match: match, next: readEntry(blk, at), nlcp: p}, false
		}
		k, below, equal := cmpRest(rest, m[match:])
		if equal {
			return spot{}, true
		}
		if below {
			match += k
			at = end
			continue
		}
		return spot{at: at, match: match, next: readEntry(blk, at), nlcp: match + k}, false
	}
	return spot{at: len(blk), match: match}, false
}

// cmpRest compares a member's rest with m's: the bytes they share, and
// whether the member is below m or equal to it.
func cmpRest[T string | []byte](rest T, mrest string) (k int, below, equal bool) {
	k = lcp(rest, mrest)
	if k == len(rest) && k == len(mrest) {
		return k, false, true
	}
	return k, k == len(rest) || (k < len(mrest) && rest[k] < mrest[k]), false
}

// splice returns blk with m inserted at sp, the following entry re-coded
// against m: in place when blk has spare capacity and room enough, else in
// a new block with the spare capacity of its size class. The caller must
// have unshared the set: only then is a block with spare capacity its own.
func splice(blk []byte, m string, sp spot) []byte {
	var b1, b2, b3 [80]byte
	newE := appendEntry(b1[:0], m, sp.match)
	var nextE, tail []byte
	if sp.at < len(blk) {
		// the next member whole: what it shares with m, then its rest
		next := append(b2[:0], m[:sp.nlcp]...)
		rest := sp.next.appendRest(b3[:0], blk)
		next = append(next, rest[sp.nlcp-sp.next.p:]...)
		nextE = appendEntry(b3[:0], next, sp.nlcp)
		tail = blk[sp.next.end:]
	}
	size := sp.at + len(newE) + len(nextE) + len(tail)
	// cap == len marks a block that may be shared: never written.
	if cap(blk) > len(blk) && max(size, len(blk)) <= cap(blk) {
		old := len(blk)
		blk = blk[:max(size, old)]
		copy(blk[sp.at+len(newE)+len(nextE):], tail) // memmove: may overlap
		copy(blk[sp.at:], newE)
		copy(blk[sp.at+len(newE):], nextE)
		return blk[:size]
	}
	nb := slices.Grow([]byte(nil), size) // capacity rounded up to the size class
	nb = append(nb, blk[:sp.at]...)
	nb = append(nb, newE...)
	nb = append(nb, nextE...)
	return append(nb, tail...)
}

// splitBlock cuts blk at the first entry at or past its middle (or its last
// entry); that entry is re-coded whole to start the right half. blk has at
// least two entries. Both halves are new blocks.
func splitBlock(blk []byte) (left, right []byte) {
	var buf [64]byte
	key := buf[:0]
	for at := 0; ; {
		e := readEntry(blk, at)
		key = e.appendRest(key[:e.p], blk)
		if at > 0 && (at >= len(blk)/2 || e.end == len(blk)) {
			var hb [80]byte
			first := appendEntry(hb[:0], key, 0)
			right = slices.Grow([]byte(nil), len(first)+len(blk)-e.end)
			right = append(append(right, first...), blk[e.end:]...)
			left = append(slices.Grow([]byte(nil), at), blk[:at]...)
			return left, right
		}
		at = e.end
	}
}

func singleBlock(m string) []byte {
	var buf [80]byte
	e := appendEntry(buf[:0], m, 0)
	return append(slices.Grow([]byte(nil), len(e)), e...)
}

// clipped copies leaves, each block clipped to its length: the copy may
// then be changed without writing into a block another set can see.
func clipped(leaves [][][]byte) [][][]byte {
	out := make([][][]byte, len(leaves))
	for i, l := range leaves {
		out[i] = make([][]byte, len(l))
		for j, blk := range l {
			out[i][j] = blk[:len(blk):len(blk)]
		}
	}
	return out
}

// packSlack is the room Compacted leaves after each block inside its
// leaf's allocation: the first few adds to a block after a compaction (two
// or three short ids, often one UUID) write in place instead of replacing
// it and leaving its old bytes in the leaf's allocation.
const packSlack = 16

// Compacted returns a copy of s that shares no memory with it, each leaf's
// blocks packed into one fresh allocation, each followed by packSlack bytes
// of room. A set grown one add at a time leaves the size classes its blocks
// grew through with part-used spans that the heap cannot return; copies in
// the same classes would only fill those holes. A packed leaf of several
// blocks goes to a larger class and fresh spans, so once the old blocks are
// collected their spans are wholly free (see internal/memtrim). A packed
// block's capacity ends at its room, so an add that outgrows it replaces
// the block; the leaf's allocation lives while any of its blocks does.
func (s Set) Compacted() Set {
	leaves := make([][][]byte, len(s.leaves))
	for i, l := range s.leaves {
		size := 0
		for _, blk := range l {
			size += len(blk) + packSlack
		}
		packed := make([]byte, size)
		leaves[i] = make([][]byte, len(l))
		at := 0
		for j, blk := range l {
			copy(packed[at:], blk)
			leaves[i][j] = packed[at : at+len(blk) : at+len(blk)+packSlack]
			at += len(blk) + packSlack
		}
	}
	return Set{leaves: leaves, n: s.n}
}

// Bytes is the length of s's blocks together (not counting size-class
// rounding, room to grow, or the slices that hold them).
func (s Set) Bytes() int {
	n := 0
	for _, l := range s.leaves {
		for _, blk := range l {
			n += len(blk)
		}
	}
	return n
}

// LowestBlock is the address of s's lowest block in memory, 0 for an empty
// set: store.Compact rewrites sets in this order, so that the heap's spans
// empty from the bottom up, each wholly once the sets holding a block in it
// have moved, and are reused for the copies that follow. Only an order: the
// Go heap does not move objects, and nothing is read through it.
func (s Set) LowestBlock() uintptr {
	var low uintptr
	for _, l := range s.leaves {
		for _, blk := range l {
			if at := uintptr(unsafe.Pointer(unsafe.SliceData(blk))); low == 0 || at < low {
				low = at
			}
		}
	}
	return low
}

// unshare gives s its own slices of block headers after a Clone. The blocks
// stay shared, clipped so that they are replaced rather than written.
func (s *Set) unshare() {
	if !s.shared {
		return
	}
	s.leaves, s.shared = clipped(s.leaves), false
}

// Add inserts m and reports whether it was new to the set.
func (s *Set) Add(m string) bool {
	if s.n == 0 {
		*s = Set{leaves: [][][]byte{{singleBlock(m)}}, n: 1}
		return true
	}
	li, bi := s.locate(m)
	blk := s.leaves[li][bi]
	sp, found := seek(blk, m)
	if found {
		return false
	}
	if s.shared {
		s.unshare()
		blk = s.leaves[li][bi]
	}
	nb := splice(blk, m, sp)
	if len(nb) <= maxBlock {
		s.leaves[li][bi] = nb
	} else {
		s.replaceBlock(li, bi, nb)
	}
	s.n++
	return true
}

// replaceBlock puts oversized nb (which has at least two entries: splice
// made it) at leaves[li][bi], split in two, splitting the leaf too when it
// grows past maxLeaf.
func (s *Set) replaceBlock(li, bi int, nb []byte) {
	left, right := splitBlock(nb)
	leaf := s.leaves[li]
	leaf[bi] = left
	leaf = slices.Insert(leaf, bi+1, right)
	if len(leaf) <= maxLeaf {
		s.leaves[li] = leaf
		return
	}
	half := len(leaf) / 2
	s.leaves[li] = leaf[:half:half]
	s.leaves = slices.Insert(s.leaves, li+1, slices.Clone(leaf[half:]))
}

// Has reports whether m is in the set.
func (s Set) Has(m string) bool {
	if s.n == 0 {
		return false
	}
	li, bi := s.locate(m)
	_, found := seek(s.leaves[li][bi], m)
	return found
}

// Len is the number of members.
func (s Set) Len() int { return s.n }

// scan calls fn for each member from the start of block (li, bi) on, in byte
// order, until fn returns false. key is only valid during the call.
func (s Set) scan(li, bi int, fn func(key []byte) bool) {
	var buf [64]byte
	key := buf[:0]
	for ; li < len(s.leaves); li, bi = li+1, 0 {
		leaf := s.leaves[li]
		for ; bi < len(leaf); bi++ {
			blk := leaf[bi]
			for at := 0; at < len(blk); {
				if h := blk[at]; h < uuidBase { // short entry, inline
					n := int(h & 15)
					key = append(key[:h>>4], blk[at+1:at+1+n]...)
					at += 1 + n
				} else {
					e := readEntry(blk, at)
					key = e.appendRest(key[:e.p], blk)
					at = e.end
				}
				if !fn(key) {
					return
				}
			}
		}
	}
}

// scanAfter is scan from the first member strictly greater than after.
func (s Set) scanAfter(after string, fn func(key []byte) bool) {
	if s.n == 0 {
		return
	}
	li, bi := s.locate(after)
	past := false
	s.scan(li, bi, func(key []byte) bool {
		if !past {
			if string(key) <= after {
				return true
			}
			past = true
		}
		return fn(key)
	})
}

// Merge adds every member of o to s and returns, in byte order, the members
// that were new to s. Merging o into s never changes o.
func (s *Set) Merge(o Set) []string {
	if o.n == 0 {
		return nil
	}
	if s.n == 0 { // copy o's blocks whole: o's owner may write into them later
		*s = o.Compacted()
		return o.Members()
	}
	var added []string
	if o.n < s.n/16 { // a few members into a large set: one add each
		o.scan(0, 0, func(key []byte) bool {
			if m := string(key); s.Add(m) {
				added = append(added, m)
			}
			return true
		})
		return added
	}
	// Comparable sizes: one pass over both, building fresh blocks. o's
	// members are laid out flat first, so only the new ones allocate.
	var flat []byte
	ends := make([]int, 0, o.n)
	o.scan(0, 0, func(key []byte) bool {
		flat = append(flat, key...)
		ends = append(ends, len(flat))
		return true
	})
	theirs := func(i int) []byte {
		if i == 0 {
			return flat[:ends[0]]
		}
		return flat[ends[i-1]:ends[i]]
	}
	var b builder
	i := 0
	s.scan(0, 0, func(key []byte) bool {
		for ; i < len(ends); i++ {
			t := theirs(i)
			c := bytes.Compare(t, key)
			if c > 0 {
				break
			}
			if c < 0 {
				add(&b, t)
				added = append(added, string(t))
			}
		}
		add(&b, key)
		return true
	})
	for ; i < len(ends); i++ {
		add(&b, theirs(i))
		added = append(added, string(theirs(i)))
	}
	*s = b.set()
	return added
}

// builder builds a set from members given in strictly increasing order,
// filling blocks and leaves whole.
type builder struct {
	leaves [][][]byte
	leaf   [][]byte
	blk    []byte
	prev   []byte
	n      int
}

func add[T string | []byte](b *builder, m T) {
	mark := len(b.blk)
	if mark == 0 {
		b.blk = appendEntry(b.blk, m, 0)
	} else if b.blk = appendEntry(b.blk, m, lcp(b.prev, m)); len(b.blk) > maxBlock {
		b.blk = b.blk[:mark]
		b.flushBlock()
		b.blk = appendEntry(b.blk, m, 0)
	}
	b.prev = append(b.prev[:0], m...)
	b.n++
}

func (b *builder) flushBlock() {
	if len(b.blk) == 0 {
		return
	}
	b.leaf = append(b.leaf, append(slices.Grow([]byte(nil), len(b.blk)), b.blk...))
	b.blk = b.blk[:0]
	if len(b.leaf) == maxLeaf {
		b.leaves = append(b.leaves, b.leaf)
		b.leaf = nil
	}
}

func (b *builder) set() Set {
	b.flushBlock()
	if len(b.leaf) > 0 {
		b.leaves = append(b.leaves, slices.Clip(b.leaf))
	}
	return Set{leaves: slices.Clip(b.leaves), n: b.n}
}

// Walk calls fn for every member in byte order until fn returns false.
func (s Set) Walk(fn func(m string) bool) {
	s.scan(0, 0, func(key []byte) bool { return fn(string(key)) })
}

// Ascend calls fn for each member strictly greater than after, in byte
// order, until fn returns false. A cursor is always strictly exclusive, so
// the empty string (which sorts first) is reached only through Walk.
func (s Set) Ascend(after string, fn func(m string) bool) {
	s.scanAfter(after, func(key []byte) bool { return fn(string(key)) })
}

// Page returns up to limit members strictly greater than after, in byte order, and
// whether more members follow the last one returned.
func (s Set) Page(after string, limit int) (members []string, more bool) {
	if limit <= 0 {
		return nil, false
	}
	n := min(limit, s.n)
	c := collector{flat: make([]byte, 0, 16*n), ends: make([]int, 0, n)}
	s.scanAfter(after, func(key []byte) bool {
		if len(c.ends) == limit {
			more = true
			return false
		}
		c.add(key)
		return true
	})
	return c.strings(), more
}

// collector gathers members into one buffer, so a page of them costs two
// allocations rather than one per member.
type collector struct {
	flat []byte
	ends []int
}

func (c *collector) add(key []byte) {
	c.flat = append(c.flat, key...)
	c.ends = append(c.ends, len(c.flat))
}

func (c *collector) strings() []string {
	all := string(c.flat)
	out := make([]string, len(c.ends))
	start := 0
	for i, end := range c.ends {
		out[i] = all[start:end]
		start = end
	}
	return out
}

// Members returns every member in byte order.
func (s Set) Members() []string {
	c := collector{ends: make([]int, 0, s.n)}
	s.scan(0, 0, func(key []byte) bool {
		c.add(key)
		return true
	})
	return c.strings()
}

// Clone returns an independent copy. It is O(1): the copies share blocks,
// and whichever changes first copies the block headers. Clone marks s as
// shared, so it needs the same exclusive access as Add.
func (s *Set) Clone() Set {
	if s.n == 0 {
		return Set{}
	}
	s.shared = true
	return *s
}
