// Package membudget owns the node's memory budget: it knows the memory the
// node may use (its container's limit, or --memory-limit), samples what
// the process uses in the background, and says, with one atomic load,
// whether the node is past the mark at which it refuses new likes.
//
// Only new likes grow the replica: reads, repeats and likes from peers
// (which a peer already holds: refusing them would only leave the cluster
// unequal) go on. The check on the request path is Budget.Over, lock-free
// and O(1); the sampler reads runtime/metrics (not runtime.ReadMemStats,
// which stops the world) and the process's resident pages
// (/proc/self/statm), whichever is more, on its own schedule.
package membudget
