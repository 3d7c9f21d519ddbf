package memtrim

import (
	"context"
	"runtime"
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
}

// NewDecider returns a Decider for a valid cfg.
func NewDecider(cfg Config) *Decider { return &Decider{cfg: cfg} }

// Observe feeds the count of bytes allocated so far, read at now, and
// reports whether to trim now. A sample is busy when allocation since the
// one before ran above QuietRate, or when the gap since it is over twice
// Interval (a stalled process cannot tell a burst from quiet); only busy
// samples add to the burst, so steady light traffic never adds up to one.
func (d *Decider) Observe(now time.Time, allocated uint64) bool {
	if !d.started || allocated < d.lastAlloc {
		d.started, d.lastAt, d.busyAt, d.lastAlloc, d.burst = true, now, now, allocated, 0
		return false
	}
	gap, delta := now.Sub(d.lastAt), allocated-d.lastAlloc
	if gap > 2*d.cfg.Interval || float64(delta) > float64(d.cfg.QuietRate)*max(gap.Seconds(), 0) {
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

// Trimmed tells d that a trim ended at now with allocated bytes allocated
// so far: what the trim itself allocated (a compaction copies the replica)
// does not start another burst.
func (d *Decider) Trimmed(now time.Time, allocated uint64) {
	d.lastAt, d.lastAlloc = now, allocated
}

// Compactor rewrites long-lived data into fresh memory, so that a trim
// frees the spans the old copies leave (the replica: store.Store.Compact).
// It calls pause every few MiB copied (Run collects there, so the old
// copies go before more new ones are made) and returns how many items it
// rewrote, for the log.
type Compactor interface {
	Compact(ctx context.Context, pause func()) int
}

// RoomToCompact reports whether a compaction fits under the runtime's
// memory limit (limit, as debug.SetMemoryLimit reports it): while it runs,
// its copies (at most the live heap) sit beside the old blocks, whose spans
// are freed only once every block in them has moved. Without that room the
// GC would thrash against the limit and a container could be killed, so
// the trim only collects and returns memory.
func RoomToCompact(total, live uint64, limit int64) bool {
	return limit > 0 && total <= uint64(limit) && live <= uint64(limit)-total
}

const (
	allocsMetric   = "/gc/heap/allocs:bytes"
	releasedMetric = "/memory/classes/heap/released:bytes"
	totalMetric    = "/memory/classes/total:bytes"
	liveMetric     = "/gc/heap/live:bytes"
)

// Run samples the runtime every cfg.Interval and trims when the Decider
// says so, until ctx ends: it has c (when not nil) compact, then collects
// and returns free memory, and logs what was returned. It returns at once
// when trimming is off (QuietFor 0). trimmed, when not nil, is called after
// each trim (a metric or a test).
func Run(ctx context.Context, cfg Config, log zerolog.Logger, c Compactor, trimmed func()) {
	if cfg.QuietFor == 0 {
		return
	}
	d := NewDecider(cfg)
	samples := []metrics.Sample{{Name: allocsMetric}, {Name: releasedMetric}}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for ctx.Err() == nil {
		metrics.Read(samples)
		if d.Observe(time.Now(), samples[0].Value.Uint64()) {
			before := samples[1].Value.Uint64()
			start := time.Now()
			compacted := 0
			if c != nil {
				// Collect first: the burst's garbage leaves free spans,
				// still resident, for the copies to reuse.
				runtime.GC()
				room := []metrics.Sample{{Name: totalMetric}, {Name: liveMetric}}
				metrics.Read(room)
				if RoomToCompact(room[0].Value.Uint64(), room[1].Value.Uint64(), debug.SetMemoryLimit(-1)) {
					compacted = c.Compact(ctx, runtime.GC)
				} else {
					log.Warn().Uint64("total_bytes", room[0].Value.Uint64()).Uint64("live_bytes", room[1].Value.Uint64()).
						Int64("memory_limit", debug.SetMemoryLimit(-1)).Msg("no room under the memory limit to compact the replica: only collecting")
				}
			}
			compactTook := time.Since(start)
			debug.FreeOSMemory()
			metrics.Read(samples)
			d.Trimmed(time.Now(), samples[0].Value.Uint64())
			log.Info().Uint64("returned_bytes", samples[1].Value.Uint64()-min(before, samples[1].Value.Uint64())).
				Int("compacted", compacted).Dur("compact_took", compactTook).Dur("took", time.Since(start)).
				Msg("allocation burst over: replica compacted, heap collected and free memory returned to the OS")
			if trimmed != nil {
				trimmed()
			}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}
