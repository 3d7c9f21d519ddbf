// Package vclock owns the identity of a like in the cluster: its Dot, the
// origin (a process start) that accepted it first and its sequence number
// there, counting from 1. The cluster's write path gives each like it logs
// a dot, the API returns it in a like's version token, and the log on disk
// (internal/wal) records it.
//
// Dots are what version vectors are made of, hence the name. The version
// vectors and out-of-order seen sets that once lived here were never wired
// to anything and were deleted (#21); the unlike issue (#22) may bring a
// version vector back, beside Dot.
package vclock
