// Package breaker owns the decision of whether to send to one peer: a
// circuit breaker that opens after Failures consecutive failures, stays
// open for Cooldown, then lets probes through (half-open) until the first
// result closes it again or restarts the cooldown.
//
// It is a pure state machine in the manner of etcd's raft: no goroutines,
// no mutex, no clock of its own. Every method takes the time; the caller
// keeps one Breaker per peer under its own lock and logs the Transitions
// the methods return. Each Transition is returned once, by the call that
// made it, so it is logged once.
//
// # Why not sony/gobreaker
//
// gobreaker reads time.Now itself, holds its own mutex, and learns the
// outcome of a request from the wrapper or the done callback of the
// request it let through, discarding outcomes of requests made before its
// last change of state. Our signals fit none of that: a failed send, a
// frame not acknowledged in time and an ack received arrive
// asynchronously, from different goroutines, and are not tied to one
// request the breaker admitted; and the cluster's deterministic
// simulation must replay them against a fake clock and get the same
// transitions every run. A small state machine that takes `now` and the
// signals as plain calls does both, and its rules fit on one screen.
//
// # Rules
//
//   - Closed: Allow says yes. Failure counts; the Failures-th in a row
//     opens the breaker. Success resets the count.
//   - Open: Allow says no until Cooldown has passed since it opened; then
//     the breaker turns HalfOpen and Allow says yes. A Failure while
//     cooling down changes nothing but the count. Probe (the peer answered
//     a ping) turns it HalfOpen at once, without waiting out the cooldown.
//   - HalfOpen: Allow says yes to every caller; the first result decides.
//     A Failure reopens it and restarts the cooldown; a Success closes it.
//   - A Success closes the breaker from any state, even Open and cooling
//     down: an ack proves the peer answers, so there is no reason to keep
//     holding sends back. A late ack for a frame sent before the breaker
//     opened does this too; a caller that wants otherwise drops such acks
//     before calling Success. It takes Failures more failures to reopen,
//     so a peer that answers only now and then flaps at most that slowly.
//
// An Open breaker whose cooldown has passed reads as HalfOpen from State
// at once, but becomes HalfOpen, with its Transition, only in the call
// that acts on it (Allow). So the Transitions a caller logs always form a
// path: each one's From is the previous one's To.
package breaker
