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
package gset
