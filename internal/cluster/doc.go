// Package cluster owns this node's membership in the likesd cluster and the
// replication of likes between nodes. It is the only package that imports
// hashicorp/memberlist.
//
// Two paths carry likes:
//
//   - The fast path: likes new to this node are batched into compact frames
//     and queued as memberlist broadcasts, piggybacked on gossip. memberlist
//     never forwards user messages, so a receiver re-broadcasts, once, the
//     likes that were new to it; every like reaches every node.
//   - The repair path: memberlist's periodic push/pull carries this node's
//     state, and the receiver merges it on every exchange (not only on join),
//     so a node that lost broadcasts or was cut off heals within one
//     push/pull interval of talking again.
//
// Callbacks from memberlist never block: received frames go to a bounded
// inbox, dropped and counted when it is full (the repair path covers them).
// The wire format lives in codec.go alone.
package cluster
