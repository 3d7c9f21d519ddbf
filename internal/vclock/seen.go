package vclock

// Seen records every dot received, in any order, per origin: a contiguous
// prefix (what the VV reports) plus the intervals received beyond a gap.
// The zero value is not usable: call NewSeen.
type Seen struct {
	prefix VV
	// beyond holds, per origin, sorted disjoint intervals above prefix+1.
	beyond map[uint64][]span
}

type span struct{ from, to uint64 }

// NewSeen returns a record of no dots.
func NewSeen() Seen { return Seen{prefix: VV{}, beyond: map[uint64][]span{}} }

// VV returns a copy of the contiguous history seen.
func (s Seen) VV() VV { return s.prefix.Clone() }

// Contiguous returns origin's contiguous seq.
func (s Seen) Contiguous(origin uint64) uint64 { return s.prefix[origin] }

// Has reports whether d was added.
func (s Seen) Has(d Dot) bool {
	if d.Seq == 0 {
		return false
	}
	if d.Seq <= s.prefix[d.Origin] {
		return true
	}
	for _, sp := range s.beyond[d.Origin] {
		if d.Seq >= sp.from && d.Seq <= sp.to {
			return true
		}
	}
	return false
}

// Add records the dots of r and returns the sub-ranges that were new, in
// order. Seq 0 is not a dot and is ignored.
func (s Seen) Add(r Range) []Range {
	if r.From == 0 {
		r.From = 1
	}
	if r.To < r.From {
		return nil
	}
	origin := r.Origin
	base := s.prefix[origin]
	if r.To <= base {
		return nil
	}
	from := max(r.From, base+1)
	// New parts are the gaps of [from, r.To] between existing spans.
	var fresh []Range
	cur := from
	spans := s.beyond[origin]
	for _, sp := range spans {
		if sp.to < cur {
			continue
		}
		if sp.from > r.To {
			break
		}
		if sp.from > cur {
			fresh = append(fresh, Range{Origin: origin, From: cur, To: sp.from - 1})
		}
		cur = max(cur, sp.to+1)
	}
	if cur <= r.To {
		fresh = append(fresh, Range{Origin: origin, From: cur, To: r.To})
	}
	if len(fresh) == 0 {
		return nil
	}
	// Insert [from, r.To] and coalesce.
	merged := make([]span, 0, len(spans)+1)
	ins := span{from, r.To}
	placed := false
	for _, sp := range spans {
		switch {
		case sp.to+1 < ins.from:
			merged = append(merged, sp)
		case ins.to+1 < sp.from:
			if !placed {
				merged = append(merged, ins)
				placed = true
			}
			merged = append(merged, sp)
		default:
			ins = span{min(ins.from, sp.from), max(ins.to, sp.to)}
		}
	}
	if !placed {
		merged = append(merged, ins)
	}
	// A span starting right after the prefix extends it.
	if merged[0].from == base+1 {
		s.prefix[origin] = merged[0].to
		merged = merged[1:]
	}
	if len(merged) == 0 {
		delete(s.beyond, origin)
	} else {
		s.beyond[origin] = merged
	}
	return fresh
}

// Advance records that every dot up to vv was seen (a snapshot covered
// them) and returns the entries of the VV that rose.
func (s Seen) Advance(vv VV) VV {
	var raised VV
	for origin, seq := range vv {
		if seq <= s.prefix[origin] {
			continue
		}
		s.Add(Range{Origin: origin, From: 1, To: seq})
		if raised == nil {
			raised = VV{}
		}
		raised[origin] = s.prefix[origin]
	}
	return raised
}

// Forget drops everything recorded of origin (an origin retired by the
// caller).
func (s Seen) Forget(origin uint64) {
	delete(s.prefix, origin)
	delete(s.beyond, origin)
}

// HasGap reports whether dots of origin arrived beyond a missing one.
func (s Seen) HasGap(origin uint64) bool { return len(s.beyond[origin]) > 0 }
