package vclock

import (
	"maps"
	"slices"
)

// Dot identifies one like: the origin that accepted it first and its
// sequence number there (1, 2, ...). An origin is drawn at random at every
// process start, so a restarted node never reuses an old sequence.
type Dot struct {
	Origin uint64
	Seq    uint64
}

// VV is a version vector: per origin, the highest seq up to which every dot
// has been seen. A missing origin means 0. The zero value is empty and ready
// for reads; use New or Clone before writing.
type VV map[uint64]uint64

// New returns an empty vector.
func New() VV { return VV{} }

// Get returns the contiguous seq seen of origin.
func (v VV) Get(origin uint64) uint64 { return v[origin] }

// Clone returns an independent copy.
func (v VV) Clone() VV {
	if v == nil {
		return VV{}
	}
	return maps.Clone(v)
}

// Merge raises v to the pointwise maximum of v and o and returns the
// entries of v that rose (their new values), or nil when none did.
func (v VV) Merge(o VV) VV {
	var raised VV
	for origin, seq := range o {
		if seq > v[origin] {
			v[origin] = seq
			if raised == nil {
				raised = VV{}
			}
			raised[origin] = seq
		}
	}
	return raised
}

// Ordering is the causal relation of two vectors.
type Ordering int

const (
	Equal      Ordering = iota // the same history
	Before                     // v saw a strict subset of o
	After                      // v saw a strict superset of o
	Concurrent                 // each saw something the other did not
)

func (o Ordering) String() string {
	return [...]string{"equal", "before", "after", "concurrent"}[o]
}

// Compare orders v against o.
func (v VV) Compare(o VV) Ordering {
	less, more := false, false
	for origin, seq := range v {
		switch other := o[origin]; {
		case seq < other:
			less = true
		case seq > other:
			more = true
		}
	}
	for origin, other := range o {
		if _, ok := v[origin]; !ok && other > 0 {
			less = true
		}
	}
	switch {
	case less && more:
		return Concurrent
	case less:
		return Before
	case more:
		return After
	}
	return Equal
}

// Range is the dots From..To (inclusive) of one origin.
type Range struct {
	Origin   uint64
	From, To uint64
}

// Len is the number of dots in r.
func (r Range) Len() uint64 { return r.To - r.From + 1 }

// Missing returns, sorted by origin, the ranges o has seen and v has not:
// exactly what v needs from o's node to catch up with it.
func (v VV) Missing(o VV) []Range {
	var out []Range
	for _, origin := range slices.Sorted(maps.Keys(o)) {
		if mine, theirs := v[origin], o[origin]; theirs > mine {
			out = append(out, Range{Origin: origin, From: mine + 1, To: theirs})
		}
	}
	return out
}
