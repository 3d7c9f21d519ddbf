package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/rs/zerolog"
)

// Decider decides when to trim from samples of the runtime's cumulative
// count of bytes allocated. It is a plain value: no clock, no I/O.
type Decider struct {
	cfg       Config
	started   bool
	lastAt    time.Time // the previous sample
	lastAlloc uint64
	busyAt    time.Time // the last busy sample
	burst     uint64    // bytes allocated in busy samples since the last trim
	busy      bool      // the last sample allocated above QuietRate
	burstAt   time.Time // the first busy sample after QuietFor without one
}

// MaxBurstHold is how long into a burst HoldLimit stays true: a bulk
// import or a full sync of 10M likes takes well under it, and a node under
// steady load above QuietRate, which never trims, does not run its
// collector hot under BurstLimit for longer.
const MaxBurstHold = time.Minute

// NewDecider returns a Decider for a valid cfg.
func NewDecider(cfg Config) *Decider { return &Decider{cfg: cfg} }

// Observe feeds the count of bytes allocated so far, read at now, and
// reports whether to trim now. A sample is busy when allocation since the
// one before ran above QuietRate, or when the gap since it is over twice
// Interval (a stalled process cannot tell a burst from quiet); only busy
// samples add to the burst, so steady light traffic never adds up to one.
func (d *Decider) Observe(now time.Time, allocated uint64) bool {
	if !d.started || allocated < d.lastAlloc {
		d.started, d.lastAt, d.busyAt, d.burstAt, d.lastAlloc, d.burst, d.busy = true, now, now, now, allocated, 0, false
		return false
	}
	gap, delta := now.Sub(d.lastAt), allocated-d.lastAlloc
	d.busy = float64(delta) > float64(d.cfg.QuietRate)*max(gap.Seconds(), 0)
	if d.busy || gap > 2*d.cfg.Interval {
		if now.Sub(d.busyAt) >= d.cfg.QuietFor {
			d.burstAt = now
		}
		d.busyAt = now
		d.burst += delta
	}
	d.lastAt, d.lastAlloc = now, allocated
	if d.cfg.QuietFor == 0 || d.burst < d.cfg.MinBurst || now.Sub(d.busyAt) < d.cfg.QuietFor {
		return false
	}
	d.burst = 0
	return true
}

// Busy reports whether allocation ran above QuietRate at the last sample
// Observe was fed (Run then holds the memory limit near what the heap
// needs; see BurstLimit). A stalled sample adds to the burst but is not
// busy: a node starved by the GC must not hold the limit for that.
func (d *Decider) Busy() bool { return d.busy }

// HoldLimit reports whether Run should hold BurstLimit: the last sample was
// busy, less than MaxBurstHold into its burst. A burst starts at a busy
// sample after QuietFor without one (or at the first sample), so a steady
// load holds the limit once, for MaxBurstHold, and not again until it has
// been quiet for QuietFor.
func (d *Decider) HoldLimit() bool { return d.busy && d.lastAt.Sub(d.burstAt) < MaxBurstHold }

// Trimmed tells d that a trim ended with allocated bytes allocated so far,
// of which own were allocated by the trim itself (a compaction copies the
// replica): those do not start another burst. The rest, what others
// allocated meanwhile, counts as usual at the next Observe.
func (d *Decider) Trimmed(allocated, own uint64) {
	if allocated < d.lastAlloc {
		return // the counter went back: the next Observe starts over
	}
	d.lastAlloc += min(own, allocated-d.lastAlloc)
}

// Compactor rewrites long-lived data into fresh memory, so that a trim
// frees the spans the old copies leave (the replica: store.Store.Compact).
// It calls pause now and then as it copies, on the goroutine that called
// Compact (Run collects and returns free pages there, so emptied spans are
// reused for the copies that follow, and cancels ctx once the process is
// over the burst's peak), and returns how many items it rewrote and the
// bytes it copied.
type Compactor interface {
	Compact(ctx context.Context, pause func()) (items int, copied uint64)
}

// RoomToCompact reports whether a compaction fits under the runtime's
// memory limit (limit, as debug.SetMemoryLimit reports it), given the
// memory the limit counts (mapped, not released to the OS) and the live
// heap: while it runs, its copies (at most the live heap) may sit beside
// the old blocks, whose spans are freed only once every block in them has
// moved. Without that room the GC would thrash against the limit and a
// container could be killed, so the trim only collects and returns memory.
func RoomToCompact(used, live uint64, limit int64) bool {
	return limit > 0 && used <= uint64(limit) && live <= uint64(limit)-used
}

// WorthCompacting reports whether the free slots in part-used spans after
// a collection (unused) are enough of the live heap to pay for copying the
// replica: a quarter. So a node whose replica barely changed, or was
// compacted since, does not copy it again for a burst of reads (a peer's
// full sync from it) or of writes into room the last compaction left.
func WorthCompacting(unused, live uint64) bool {
	return unused > 0 && unused >= live/4
}

// Memory is what BurstLimit needs of the runtime's memory, in bytes.
type Memory struct {
	Used    uint64 // mapped and not returned to the OS: what the process holds
	Live    uint64 // the heap the last collection marked live
	InUse   uint64 // the heap's spans in use: objects, and the free slots among them
	Unused  uint64 // the free slots among spans in use: the holes a compaction frees
	NonHeap uint64 // the runtime's own: stacks, GC metadata, the rest
}

// BurstLimit is the soft memory limit (debug.SetMemoryLimit) Run holds
// while allocation runs above QuietRate, for at most MaxBurstHold of a
// burst (Decider.HoldLimit): the heap's spans in use or its
// GOGC goal (gogc, in percent), whichever is larger, the runtime's own
// memory, and a slack of a sixteenth of the live heap, at least 2 MiB, for
// the heap's growth between two samples. Never above base, the limit
// configured (--memory-limit); base itself when GOGC is off (gogc < 0),
// which asks for no collections, or over maxHeldGOGC.
//
// Without it, spans the heap freed during a burst stay resident until the
// background scavenger, paced to 1% of a CPU, returns them (a few MiB a
// second): 33 to 46 MiB of free pages were still resident at the end of
// loading 10M likes (docs/benchmarks.md). Near the limit the runtime
// returns free pages as it allocates instead, and collects sooner: the
// runtime counts the free slots among spans in use as its own overhead, so
// when they are many (the spans in use over the GOGC goal) its goal under
// this limit is the heap plus about the slack, and it collects nearly
// back to back, within its cap of half the CPU. That is the price: S4's
// import of 10M UUID likes took 32-35 s with it against 24-30 s without,
// for a peak 40 MiB lower.
func BurstLimit(m Memory, gogc int, base int64) int64 {
	if gogc < 0 || gogc > maxHeldGOGC {
		return base
	}
	limit := max(m.InUse, m.Live+m.Live*uint64(gogc)/100) + m.NonHeap + max(m.Live/16, burstSlack)
	if base >= 0 && limit >= uint64(base) {
		return base
	}
	return int64(limit)
}

// maxHeldGOGC is the largest GOGC BurstLimit holds a limit for: past it
// the goal is far beyond any heap (and Live×GOGC could overflow).
const maxHeldGOGC = 10_000

// burstSlack is BurstLimit's least slack.
const burstSlack = 2 << 20

// forgiven is how much of the allocation during a compaction that copied
// copied bytes of blocks into items sets is taken for the compaction's own:
// the blocks, a quarter more (room, slice headers, size classes), and
// 256 B a set (its leaf slices and its place in the order). Anything
// beyond, others allocated meanwhile, and it counts toward a burst.
func forgiven(copied uint64, items int) uint64 {
	return copied + copied/4 + 256*uint64(items)
}

const (
	allocsMetric   = "/gc/heap/allocs:bytes"
	releasedMetric = "/memory/classes/heap/released:bytes"
	totalMetric    = "/memory/classes/total:bytes"
	liveMetric     = "/gc/heap/live:bytes"
	unusedMetric   = "/memory/classes/heap/unused:bytes"
	objectsMetric  = "/memory/classes/heap/objects:bytes"
	freeMetric     = "/memory/classes/heap/free:bytes"
	gogcMetric     = "/gc/gogc:percent"
	limitMetric    = "/gc/gomemlimit:bytes"
)

// readMemory reads what BurstLimit needs, and the GOGC percent.
func readMemory() (Memory, int) {
	s := []metrics.Sample{{Name: totalMetric}, {Name: releasedMetric}, {Name: liveMetric}, {Name: unusedMetric},
		{Name: objectsMetric}, {Name: freeMetric}, {Name: gogcMetric}}
	metrics.Read(s)
	total, released, live, unused := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64(), s[3].Value.Uint64()
	inUse := unused + s[4].Value.Uint64()
	heap := released + inUse + s[5].Value.Uint64()
	return Memory{Used: total - min(released, total), Live: live, InUse: inUse, Unused: unused, NonHeap: total - min(heap, total)}, int(int64(s[6].Value.Uint64()))
}

// trim collects, has c compact when that pays and there is room, returns
// free memory to the OS, tells d what the trim allocated, and logs it. It
// reports false when ctx ended first. samples are Run's (allocated,
// released); peak is the most the process used at a busy sample of the
// burst.
//
// A compaction never takes the process past that peak by more than one
// pause's copies: it starts only under it, and stops at the first pause
// that finds the process over it. Its copies go to other size classes than
// the blocks they replace, whose spans free only once every block in them
// has moved, so the process grows while it runs (a 10M-UUID replica's went
// 48 MiB past the load's peak); a set copied stays compacted, so stopping
// early keeps what was done.
func trim(ctx context.Context, d *Decider, c Compactor, samples []metrics.Sample, peak uint64, log zerolog.Logger) bool {
	before := samples[1].Value.Uint64()
	start := time.Now()
	ev := log.Info()
	var own uint64
	if c != nil {
		// Collect and return what is free first, so that what the process
		// uses here is what it holds, to compare with the burst's peak.
		debug.FreeOSMemory()
		m, _ := readMemory()
		used, live, unused := m.Used, m.Live, m.Unused
		limit := debug.SetMemoryLimit(-1)
		switch {
		case !WorthCompacting(unused, live):
			ev = ev.Uint64("unused_bytes", unused).Str("compaction", "not worth it")
		case !RoomToCompact(used, live, limit):
			log.Warn().Uint64("used_bytes", used).Uint64("live_bytes", live).Int64("memory_limit", limit).
				Msg("no room under the memory limit to compact the replica: only collecting")
		case used >= peak:
			ev = ev.Uint64("used_bytes", used).Uint64("burst_peak_bytes", peak).Str("compaction", "no room under the burst's peak")
		default:
			metrics.Read(samples)
			allocatedBefore := samples[0].Value.Uint64()
			cctx, stop := context.WithCancel(ctx)
			atPeak := false
			items, copied := c.Compact(cctx, func() {
				debug.FreeOSMemory()
				if m, _ := readMemory(); m.Used > peak {
					atPeak = true
					stop()
				}
			})
			stop()
			metrics.Read(samples)
			own = min(samples[0].Value.Uint64()-min(allocatedBefore, samples[0].Value.Uint64()), forgiven(copied, items))
			ev = ev.Uint64("unused_bytes", unused).Int("compacted_sets", items).Uint64("compacted_bytes", copied).
				Bool("stopped_at_burst_peak", atPeak).Dur("compact_took", time.Since(start))
		}
	}
	if ctx.Err() != nil {
		ev.Discard()
		return false // shutting down: the process is about to give it all back
	}
	debug.FreeOSMemory()
	metrics.Read(samples)
	d.Trimmed(samples[0].Value.Uint64(), own)
	ev.Uint64("returned_bytes", samples[1].Value.Uint64()-min(before, samples[1].Value.Uint64())).
		Dur("took", time.Since(start)).Msg("allocation burst over: heap collected and free memory returned to the OS")
	return true
}

// Run samples the runtime every cfg.Interval and trims when the Decider
// says so, until ctx ends (see trim; c may be nil: no compaction). It
// returns at once when trimming is off (QuietFor 0). trimmed, when not nil,
// is called after each trim (a metric or a test).
//
// Run owns the process's soft memory limit while it runs (one Run per
// process): it holds BurstLimit during bursts and the configured limit
// otherwise; a limit someone else sets meanwhile becomes the configured
// one (best effort: one set between Run's read and its own set is lost).
func Run(ctx context.Context, cfg Config, log zerolog.Logger, c Compactor, trimmed func()) {
	if cfg.QuietFor == 0 {
		return
	}
	d := NewDecider(cfg)
	samples := []metrics.Sample{{Name: allocsMetric}, {Name: releasedMetric}, {Name: limitMetric}}
	metrics.Read(samples)
	base := int64(samples[2].Value.Uint64()) // the configured limit, restored once a burst is over
	held := base
	hold := func(limit int64) {
		if limit != held {
			debug.SetMemoryLimit(limit)
			held = limit
		}
	}
	defer func() { hold(base) }() // the base of the end: one set meanwhile is adopted
	var peak uint64               // the most the process used at a busy sample since the last trim
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for ctx.Err() == nil {
		metrics.Read(samples)
		if now := int64(samples[2].Value.Uint64()); now != held {
			base, held = now, now // set by someone else: the new configured limit
		}
		trimNow := d.Observe(time.Now(), samples[0].Value.Uint64())
		switch {
		case d.Busy() && !trimNow:
			m, gogc := readMemory()
			peak = max(peak, m.Used)
			if d.HoldLimit() {
				hold(BurstLimit(m, gogc, base))
			} else {
				hold(base) // held long enough: a steady load, not a burst
			}
		default:
			hold(base) // a compaction needs the room the configured limit gives
		}
		if trimNow && ctx.Err() == nil {
			ok := trim(ctx, d, c, samples, peak, log)
			peak = 0
			if ok && trimmed != nil {
				trimmed()
			}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}
