// Package acks owns the accounting of acknowledged writes: which peers
// confirmed they hold which of this node's likes, and when a write waiting
// for its level (w) is released. Each peer's health (its breaker, its
// frames unacknowledged) is internal/link's: a write waits for the peers
// the link calls eligible, and stops waiting for one whose breaker opens.
//
// A like gets a dot (origin, seq) when this node logs it; the fast path
// sends it to every peer in frames of contiguous seqs, and each peer, once
// it has merged a frame, acknowledges its seqs. Acknowledgements name runs
// of seqs, not a per-origin high-water mark: a frame dropped on the way
// (a full queue, a cut) reaches the peer by anti-entropy, which carries no
// dots, so a high-water mark would stall behind that gap for good.
//
// A write waits for the eligible peers — members (alive or suspect) whose
// breaker is closed — until Want(level) replicas hold it, or every
// eligible peer has acknowledged or stopped being eligible (left, or its
// breaker opened: Gone), or the driver cancels it at the write timeout.
//
// Tracker is a value driven by events: no I/O, no lock, no clock;
// internal/cluster carries it out.
package acks
