// Package gset owns the grow-only set (G-Set) CRDT that holds the users who
// liked one post.
//
// A Set is a plain value: no locks, no I/O, no clock. Callers that share a Set
// between goroutines guard it themselves (internal/store does). The laws every
// replica relies on, and which the property tests check against a map-based
// reference, are:
//
//	merge is commutative:  a ∪ b == b ∪ a
//	merge is associative:  (a ∪ b) ∪ c == a ∪ (b ∪ c)
//	merge is idempotent:   a ∪ a == a
//	add is merge of a singleton: a.Add(x) == a ∪ {x}
//
// so replicas that have seen the same adds, in any order and any number of
// times, hold the same set. That is what makes one user's like count once
// however often it is retried or re-gossiped.
//
// # Digests
//
// A set's Summary under a Key is the sum mod 2^64 of its members' hashes
// and its size: equal on equal sets whatever their history, so
// anti-entropy compares sets (and hash ranges of them) without sending
// them. The hash is SipHash-2-4 under a 128-bit key derived with HKDF-SHA256
// from the cluster's secret (DeriveKey): to anyone without the secret the
// hashes are random, so two different contents have equal digests with
// probability about 2^-64 per comparison, however their ids were chosen.
// An unkeyed hash gave no such bound: a 4-sum search found two pairs of
// ids with equal sums, which hid a difference between two replicas
// forever (issue #21). In plaintext mode (no secret) the key is PublicKey,
// a constant anyone can compute: digests then give no protection against
// ids chosen by anyone who can send likes or join.
//
// The Set keeps no digest and knows no key: its owner (internal/store)
// holds the key, passes it to the operations that hash, and keeps each
// set's digest up to date from what Add and Merge report new.
//
// # Representation
//
// Every node holds every like, so bytes per member decide what a node
// costs. Members are kept in byte order in blocks of at most 768 bytes of
// front coding: each member stores only what it does not share with the
// member before it, behind a one-byte header for ids under 16 bytes;
// lower-case text UUIDs store their hex digits packed, 16 bytes. A block is
// a byte slice; blocks sit in leaves of at most 64, leaves in one slice.
// has and add binary-search the leaves, then the blocks, on each block's
// first member (stored whole), then scan one block comparing without
// rebuilding members; add splices the new entry into that block in place
// when the block's spare capacity (its size class, or its room in a packed
// leaf) holds it,
// else into a new block (splitting it past 768 bytes, and the leaf past 64
// blocks). So most adds of short ids allocate nothing and leave no garbage
// (a UUID entry, ~17 B, outgrows the spare capacity more often). Count is a
// field. A page from a cursor is a search plus a scan. Merges of sets of
// similar size build blocks in one pass; decoding a snapshot's block form
// (AppendBlocks) adopts the blocks.
//
// Measured (BenchmarkMemory, live heap per member; docs/benchmarks.md):
// 10,000 sets × 100 random 8-byte ids "u0001234": 45 B with the B-tree of
// strings this replaced, 8.0 B now; one set of 1M: 44 → 3.3 B; 10,000 ×
// 100 random UUIDs: 77 → 19.3 B.
//
// Alternatives weighed. A store-wide interned dictionary (user id → uint32,
// sets of sorted uint32) costs 4 B per like plus the dictionary entry
// (the id, its map slot and reverse slice, ≥ 40 B per distinct user), so it
// beats front coding only for long ids that each user repeats on many
// posts; it would also make the set impure (a shared, mutable, never
// shrinking dictionary, ids that differ between nodes) and removal would
// need reference counts. A scratch study (issue 10) measured 9 B of heap
// per like for it on S3 against 4–6 B for front coding. Roaring bitmaps over
// interned ids are as small but lose byte order: a likers page from a
// cursor costs milliseconds. So: front coding, plus the UUID packing that
// takes the common long id to 16 bytes without shared state.
//
// Clone is O(1): the clone shares the blocks and the slices of block
// headers until either side changes, which then copies the headers (24 B
// per block, ~1/100 of the set) once, each clipped to its length: a block
// without spare capacity is never written, only replaced, so neither side
// ever writes into a block the other can see. Merging into an empty set
// copies the other's blocks for the same reason.
//
// Compacted copies a set with each leaf's blocks packed side by side in one
// allocation, each followed by 16 bytes of room. Blocks that grew one add at
// a time leave part-used spans in each size class they passed through, which
// the Go heap cannot return (S2 of docs/benchmarks.md, 10M likes loaded: 131
// MiB of spans in use for 79 MiB of heap allocated); a leaf of several
// blocks packed lands in a larger size class, in fresh spans, so once the
// old blocks are collected their spans are wholly free (a one-block set is
// copied into its own class, filling holes there). The store compacts after a burst
// (internal/memtrim), in the order of each set's LowestBlock address so the
// old spans empty from the bottom up. The price: an add that outgrows a
// packed block's room replaces the block, and a packed leaf stays allocated
// while any of its blocks does, so a set written to long after a compaction
// drifts back toward its uncompacted size until a burst compacts again.
//
// Removal (a later observed-remove set) fits: an entry is spliced out of a
// block the way add splices one in, re-coding the entry that follows
// against its new predecessor; under-full blocks merge with a neighbour.
// Per-member tags (dots) would live in a parallel structure keyed the same
// way.
package gset
