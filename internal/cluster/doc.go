// Package cluster owns this node's membership in the likesd cluster and the
// replication of likes between nodes. It is the only package that imports
// hashicorp/memberlist.
//
// Every like a node accepts first gets a dot (origin, seq): the origin is
// drawn at random at each process start, so a restarted node never reuses
// an old sequence. Likes with their dots wait in a bounded log.
//
// Two paths carry likes:
//
//   - The fast path frames the log's new likes (contiguous seqs of one
//     origin) and either sends them straight to every alive peer over
//     memberlist's reliable channel (direct, the default) or queues them as
//     memberlist broadcasts that receivers forward once (gossip).
//   - The repair path: memberlist's periodic push/pull carries only version
//     vectors (a few hundred bytes at any state size), merged on every
//     exchange. A node behind a peer asks each origin for exactly the
//     missing ranges, served from its log; a new node, one too far behind,
//     or one missing likes of a gone origin gets a chunked snapshot instead.
//
// Membership is read from this node's own member table (members.go), fed
// by copies taken in memberlist's callbacks: never from memberlist's nodes,
// which it rewrites in place. Tests run nodes on internal/faultnet, through
// Config.Transport, to cut and isolate them.
//
// Callbacks from memberlist never block: messages go to a bounded inbox,
// dropped and counted when it is full (the repair path covers them). The
// wire format lives in codec.go alone.
package cluster
