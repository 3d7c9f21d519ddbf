// Package store owns this node's replica of the likes: post id → grow-only
// set of user ids (internal/gset), safe for heavy concurrent use.
//
// Posts are spread over independently locked shards, so likes on different
// posts rarely contend and no global lock sits on the hot path. The store
// never hands out its internal sets: reads return copies or counts.
//
// The store knows nothing of the network. A local Like and a remote Merge
// both report what was new to this replica, and the caller decides what to
// pass on (internal/api hands a local like to the cluster's Replicate with
// what Like reported). A reader that must see a given like (read your
// writes) waits for it with WaitHas, which the add of that like releases.
//
// The store also owns how the replica sits in memory: after a burst,
// Compact (compact.go) rewrites every set into packed fresh memory so the
// heap can return what the burst left part-used (run by internal/memtrim).
package store
