// Package acks owns the accounting of acknowledged writes: which peers
// confirmed they hold which of this node's likes, when a write waiting for
// its level (w) is released, and each peer's circuit breaker, fed by the
// same acknowledgements.
//
// A like gets a dot (origin, seq) when this node logs it; the fast path
// sends it to every peer in frames of contiguous seqs, and each peer, once
// it has merged a frame, acknowledges its seqs. Acknowledgements name runs
// of seqs, not a per-origin high-water mark: a frame dropped on the way
// (a full queue, a cut) reaches the peer by anti-entropy, which carries no
// dots, so a high-water mark would stall behind that gap for good.
//
// A write waits for the eligible peers — members (alive or suspect) whose
// breaker is not open — until Want(level) replicas hold it, or every
// eligible peer has acknowledged or stopped being eligible, or the driver
// cancels it at the write timeout. A frame unacknowledged after the
// timeout is a failure of its peer; consecutive failures open its breaker,
// so a stopped peer costs no write any latency until a probe after the
// cool-down is acknowledged.
//
// Tracker is a value driven by events and the time: no I/O, no lock, no
// clock; internal/cluster carries it out.
package acks
