// Package faultcheck judges one run of the real-process fault test
// (test/faults): from what the client saw (every like it sent, every
// acknowledgement, every count it read), what the rig did (which process
// lives ended by kill -9, which nodes were cut off from every peer, when the
// faults healed) and what every node held at the end, it reports lost,
// phantom and diverged likes, counts that went down, and the time from heal
// to identical replicas.
//
// It is pure: no network, no processes, no clock. The rig records a
// [History] and calls [Check]; the per-run [Report]s add up into a
// [Summary] whose [Summary.Line] is the one line `make faults` prints.
//
// Loss is split by cause, because likesd acknowledges a like once this node
// holds it and replicates it afterwards (asynchronously):
//
//   - async: every node that acknowledged the like was killed (kill -9)
//     within the async window after its acknowledgement. A system that
//     replicates after acknowledging may lose these; issue 8 (semi-sync
//     writes) removes them, and strict mode fails on them.
//   - cutoff: every acknowledging node was cut off from all its peers from
//     the acknowledgement until its kill -9: nobody could have received the
//     like. Also counted only, unless strict.
//   - otherwise the loss is real and the run fails.
//
// Likes answered only with 202 (stored, not yet replicated) are counted
// apart; their loss through a kill of the acknowledging node is expected at
// any distance from the kill and never fails a run.
package faultcheck
