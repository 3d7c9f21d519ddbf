// Package memtrim owns handing memory back to the operating system once a
// burst of writes is over.
//
// The Go runtime keeps the heap it grew during a burst (a bulk import, a
// fresh node's full sync) until its background scavenger slowly returns
// the free pages, and the garbage of the burst's last moments until the
// next collection, which an idle node may not run for two minutes. So a
// node's RSS stays near its peak long after the load: on 10M likes loaded
// in 10 s, 20 MiB idle and 8 MiB of garbage (docs/benchmarks.md). A
// Decider watches the runtime's count of bytes allocated; once at least
// MinBurst has been allocated above QuietRate since the last trim and
// allocation has then stayed under QuietRate for QuietFor, it says trim.
// Run then collects and returns free pages, has the replica compact itself
// (store.Store.Compact: every set copied into packed fresh memory, lowest
// address first, collecting and returning free pages after every max(8
// MiB, 1/32 of the replica) so that emptied spans are reused for the next
// copies), and returns every free page (debug.FreeOSMemory). It compacts
// only when the holes in part-used spans are a quarter of the live heap
// and the copies fit under the memory limit, stops compacting at the first
// pause that finds the process over the most it used during the burst (a
// trim never raises the burst's peak by more than one pause's copies), and
// does not count what the compaction allocated as a burst. A busy node
// never trims, nor one serving steady light traffic: only allocation above
// the rate counts toward a burst.
//
// For the first MaxBurstHold of a burst, Run holds the runtime's soft
// memory limit near what the heap needs (BurstLimit: its spans in use or
// its GOGC goal, the runtime's own memory, a little slack; never above
// --memory-limit), so the runtime returns the spans the burst frees as it
// goes instead of keeping them for the background scavenger: the peak of
// a bulk import stays near its settled size. It puts the configured limit
// back once a sample is quiet, before it compacts, and after MaxBurstHold:
// the limit makes the collector run more, which a node under steady load
// must not pay for longer.
package memtrim
