// Package link owns what a node knows of each peer it replicates to: the
// fast path's outbound queue and backlog of frames, the frames sent and not
// yet acknowledged, the peer's circuit breaker fed by both, and when to
// probe the peer and retry. It is the one model of a peer's health: the
// write path waits only for peers it calls eligible, and the cluster's
// status shows its state.
//
// Machine is a value driven by events and the time, returning actions, as
// etcd's raft is: it does no I/O, holds no lock, reads no clock and starts
// no goroutine. Its driver (internal/cluster) feeds it what happened — a
// frame queued, a send done, a probe answered, an acknowledgement, the
// member list, a tick — and carries out what it asks in Take — send this
// frame, probe this peer, reset the stream under a send, open or forget a
// link, urge repair.
//
// Per peer, one send is in flight at a time, in queue order. A send still
// in flight after RetryInterval has the peer probed every RetryInterval.
// A probe answered while a send hangs tells a slow or stuck connection
// from a peer that is away: the send is abandoned (its stream reset) and
// the next frame goes, and if probes went unanswered first, what queued
// meanwhile becomes a backlog sent newest first and only when no fresh
// frame waits. A send that fails means the peer is gone: what is queued is
// dropped (left to anti-entropy) until a probe is answered. Unanswered
// probes alone drop nothing: on a starved machine they time out while
// sends still succeed. Queue and backlog are bounded; past the bound the
// oldest frame is dropped and counted.
//
// The breaker counts a failure for a failed send, and for a peer whose
// oldest unacknowledged frame is older than Timeout when it acknowledged
// nothing for as long (at most one a Timeout); an open breaker stops
// frames to the peer and makes it ineligible, its cool-down lets a frame
// probe it, and an acknowledgement closes it. A probe answered after a
// failed send turns an open breaker half-open at once.
package link
