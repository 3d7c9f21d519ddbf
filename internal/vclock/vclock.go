package vclock

// Dot identifies one like: the origin that accepted it first and its
// sequence number there (1, 2, ...). An origin is drawn at random at every
// process start, so a restarted node never reuses an old sequence. Seq 0
// means no dot was assigned.
type Dot struct {
	Origin uint64
	Seq    uint64
}
