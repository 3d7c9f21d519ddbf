// Package cluster owns this node's membership in the likesd cluster and the
// movement of likes between nodes. It is the only package that imports
// hashicorp/memberlist.
//
// Every like a node accepts gets a dot (origin, seq): the origin is drawn
// at random at each process start, so a restarted node never reuses an old
// sequence. Likes with their dots wait in a bounded log (skipped by a
// node with no peer to send to, for likes no write waits on).
//
// Two paths carry likes:
//
//   - The fast path frames the log's new likes and either sends them
//     straight to every alive peer (direct, the default: one TCP stream per
//     peer on memberlist's port, stream.go, an authenticated session under
//     the cluster's keyring, session.go, on which the peer's acks come
//     back) or queues them as memberlist broadcasts that receivers forward
//     once (gossip). It is best effort; acks (writes.go) say what arrived.
//     What to send each peer, when to probe it and when to give up on it
//     is decided by internal/link's pure machine; direct.go carries out
//     its actions.
//   - Anti-entropy (sync.go) drives internal/antientropy, the pure state
//     machine that compares content digests with one peer at a time and
//     repairs exactly what differs. It is what makes replicas converge,
//     what makes a new node synced (and so ready), and what a leaving node
//     hands off through. One goroutine owns the state machine; sends go
//     through per-peer goroutines so a dead peer stalls nobody, on the
//     peer's session (the fast path's, or one dialed for them) when the
//     peer speaks sessions.
//
// Membership is read from this node's own member table (members.go), fed
// by copies taken in memberlist's callbacks: never from memberlist's nodes,
// which it rewrites in place. Tests run nodes on internal/faultnet, through
// Config.Transport, to cut and isolate them.
//
// What each file owns:
//
//   - node.go: the Node, its lifecycle (Start, Close and the hand-off), the
//     log of this node's likes and the flush that frames it, the loop
//     that applies peers' messages, and its counters (Stats) with their
//     series (Metrics; internal/metrics exposes them).
//   - config.go: Config, its defaults and bounds.
//   - members.go: the member table, fed by memberlist's events, and joins.
//   - delegate.go: memberlist's delegate callbacks, handed off at once.
//   - writes.go: a write's wait for its level, the acks it waits on (acks
//     and link machines under one lock), and the acker that sends acks.
//   - repeats.go: repeats of acknowledged likes answered without a resend.
//   - direct.go: the fast path's links carried out: sends and probes.
//   - stream.go: the streams on memberlist's port: framing, accept, dial.
//   - session.go: a stream's authenticated handshake and its AEAD.
//   - sync.go: the driver of internal/antientropy: sessions, sends, urges.
//   - codec.go: frames and acks on the wire.
//   - guard.go: every like from peers checked before it is merged.
//
// Callbacks from memberlist never block: messages go to bounded queues,
// dropped and counted when full (anti-entropy repairs what they carried).
// The wire format of frames lives in codec.go; anti-entropy's in
// internal/antientropy.
package cluster
