// Package vclock owns the identities of likes in the cluster and what each
// node has seen of them.
//
// A Dot names one like: the origin (a process start) that accepted it first
// and its sequence number there, counting from 1. A version vector (VV) says,
// per origin, the highest sequence number up to which a node has seen every
// like. Seen records dots that arrive out of order, so a VV only ever claims
// contiguous history.
//
// Everything here is a value with methods: no locks, no I/O, no clock. The
// laws, property-tested against naive references, are that VV merge is the
// pointwise maximum (commutative, associative, idempotent), that Compare
// agrees with it, and that Seen's VV is exactly the contiguous prefix of the
// dots added, whatever their order.
package vclock
