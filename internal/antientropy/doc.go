// Package antientropy owns the decisions of content-verified anti-entropy
// between likesd replicas: what to compare, what to ask for, what to serve,
// when a node counts as synced, and when a departing node has handed off
// everything it holds. It is a pure state machine in the manner of etcd's
// raft: no goroutines, no network, no clock of its own. The driver
// (internal/cluster) feeds it messages, member lists and the time, and
// carries out the Sends it returns. The replica is read and merged through
// the Replica interface, as raft reads its Storage.
//
// # The digest tree
//
// Every replica summarises its likes in the same tree. The top is 65,536
// digest buckets chosen by the post's hash (internal/store keeps them in
// O(1) per like), grouped 16 at a time into four levels above. Below a
// bucket are its posts; below a post, its members split 16 ways by the next
// four bits of their hash, as deep as needed. Each node of the tree has a
// Summary: a sum of 64-bit keyed hashes of what it holds (SipHash-2-4
// under a key derived from the cluster secret, see internal/gset), and a
// count. Under a secret key, equal summaries mean equal content but with
// probability about 2^-64 per comparison, whatever ids were chosen; in
// plaintext mode the key is public, and anyone who can send likes or join
// can choose ids whose sums collide.
//
// # The digest key, and key rotation
//
// Two nodes never compare digests under different keys. Expand requests
// and answers carry the sender's key id (an HKDF output beside the key,
// never the key); a node answers an expand only under its own key id, and
// otherwise refuses (an answer without results naming its id), and the
// initiator compares an answer only under the id its session started
// with, which must still be its replica's. A refusal ends the session
// with ErrKeyMismatch, reported as a KeyMismatch action (the driver logs
// and counts it) and retried later, as a failed session is. A replica
// that re-keys reports key id 0 and starts no session that compares.
// Pulls, pushes and exchanges carry likes only, right under any key, and
// carry no key id: a full sync pulls from any peer.
//
// So during a rotation step, sync pauses between nodes on different
// primary keys; the direct fast path carries likes meanwhile, and sync
// resumes, repairing what it missed, once both sides derive their digest
// key from the same primary.
//
// A node of the version before key ids sends expands without one: it
// gets no answer (it refuses the keyed flag, so it could not read one)
// and no session compares digests with it, except that a leaving one is
// told this node holds nothing, so its hand-off pushes what it holds
// (push answers count what was new, under no key) and can end.
//
// # A session
//
// Every SyncInterval a node starts a session with its next peer: it sends
// the root with its own summary; the peer answers with the summaries of the
// root's children where the roots differ; the initiator compares them with
// its own and, for each child that differs, decides:
//
//   - the peer holds nothing there: push ours, in chunks;
//   - we hold nothing there: pull theirs, in chunks;
//   - both sides together hold at most SmallRange likes there: exchange
//     them in one round trip (we send ours, the peer merges them and
//     answers with what we lacked);
//   - otherwise: descend one level.
//
// So two replicas that differ by d likes repair each other in a few round
// trips and O(d·log n) bytes, whoever the likes came from and whether their
// origin still lives. The responder keeps no state; the initiator keeps the
// session's outstanding requests, and ends it when none is left (success)
// or when the peer stays silent for SessionTimeout (failure).
//
// # Synced, and handing off
//
// A node starts unsynced and reports ready only once synced: after pulling
// everything from a peer that is itself synced (a full sync), or when it is
// provably alone: it was given no one to join, or none of its join
// addresses answered JoinAttempts times and it has never seen another
// member. A cluster whose every member is unsynced (all restarted empty)
// lets the member with the lowest name found it after FoundAfter.
//
// A node that is leaving runs sessions with synced peers that are not
// leaving until one ends in which the peer learnt nothing new from it:
// every like it holds is then held by a synced peer.
package antientropy
