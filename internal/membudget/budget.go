package membudget

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/stat"
)

// Config sets the budget. Start from DefaultConfig.
type Config struct {
	// Limit is the memory the node may use, in bytes: its container's
	// memory.max, or --memory-limit. 0: no budget (Over is always false).
	Limit int64

	// RefuseAt is the fraction of Limit past which new likes are refused.
	// Lower leaves more room for what is already on its way (bulk imports
	// being read, likes from peers, the GC's own growth) before the
	// container's limit kills the process; higher stores more. Default
	// 0.85, from 0.1 to 1 (--memory-refuse-at, in percent).
	RefuseAt float64

	// ResumeBelow is how far under the mark, as a fraction of Limit, usage
	// must fall before new likes are taken again, so the node does not
	// flap at the mark. Default 0.05, from 0 to RefuseAt.
	ResumeBelow float64

	// PeersRefuseAt is the fraction of Limit past which likes from peers
	// (fast-path frames and anti-entropy) are not applied either: the
	// hard mark. Past RefuseAt a node still takes its peers' likes, so
	// replicas stay whole, and those keep coming (a peer's clients, a
	// rejoining node's repair); past this mark it takes none and
	// acknowledges none, so their senders keep them and anti-entropy
	// brings them once memory falls under it again: nothing acknowledged
	// is lost, the cluster's writes answer 202 rather than this node be
	// killed. Higher keeps replicas whole longer; lower leaves more room
	// below the container's limit. 0 (the default): halfway from RefuseAt
	// to the limit (0.925 with the default RefuseAt); else from RefuseAt
	// to 1 (--memory-peers-refuse-at, in percent).
	PeersRefuseAt float64

	// Interval is how often memory is sampled: how far past the mark a
	// burst may get before it is refused. Default 100ms, from 1ms to 10s.
	Interval time.Duration
}

// DefaultConfig returns the defaults documented on Config (no Limit).
func DefaultConfig() Config {
	return Config{RefuseAt: 0.85, ResumeBelow: 0.05, Interval: 100 * time.Millisecond}
}

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("membudget: invalid config")

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Limit < 0:
		return fmt.Errorf("%w: Limit must be 0 (no budget) or positive", ErrConfig)
	case c.RefuseAt < 0.1 || c.RefuseAt > 1:
		return fmt.Errorf("%w: RefuseAt must be from 0.1 to 1, got %g", ErrConfig, c.RefuseAt)
	case c.ResumeBelow < 0 || c.ResumeBelow > c.RefuseAt:
		return fmt.Errorf("%w: ResumeBelow must be from 0 to RefuseAt, got %g", ErrConfig, c.ResumeBelow)
	case c.PeersRefuseAt != 0 && (c.PeersRefuseAt < c.RefuseAt || c.PeersRefuseAt > 1):
		return fmt.Errorf("%w: PeersRefuseAt (--memory-peers-refuse-at) must be 0 (halfway from RefuseAt to the limit) or from RefuseAt (%g) to 1, got %g",
			ErrConfig, c.RefuseAt, c.PeersRefuseAt)
	case c.Interval < time.Millisecond || c.Interval > 10*time.Second:
		return fmt.Errorf("%w: Interval must be from 1ms to 10s, got %v", ErrConfig, c.Interval)
	}
	return nil
}

// Budget is the node's memory budget. Over is safe for concurrent use;
// Run is its only writer.
type Budget struct {
	cfg          Config
	mark, resume int64 // bytes: refuse at mark, take again under resume
	// bytes: refuse peers' likes at hard, take them again under hardResume
	hard, hardResume int64
	read             func() int64
	log              zerolog.Logger

	over atomic.Bool
	full atomic.Bool // past hard: peers' likes refused too
	used atomic.Int64
}

// New returns a budget that reads the process's memory from
// runtime/metrics.
func New(cfg Config, log zerolog.Logger) (*Budget, error) {
	return newBudget(cfg, log, processMemory())
}

func newBudget(cfg Config, log zerolog.Logger, read func() int64) (*Budget, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Budget{cfg: cfg, read: read, log: log.With().Str("component", "membudget").Logger()}
	b.mark = int64(math.Round(float64(cfg.Limit) * cfg.RefuseAt))
	b.resume = b.mark - int64(math.Round(float64(cfg.Limit)*cfg.ResumeBelow))
	b.hard = int64(math.Round(float64(cfg.Limit) * cfg.peersRefuseAt()))
	b.hardResume = b.hard - (b.mark - b.resume)
	return b, nil
}

// peersRefuseAt is PeersRefuseAt, its default resolved.
func (c Config) peersRefuseAt() float64 {
	if c.PeersRefuseAt == 0 {
		return (c.RefuseAt + 1) / 2
	}
	return c.PeersRefuseAt
}

// Over reports whether the node is past its mark: new likes are refused.
func (b *Budget) Over() bool { return b.over.Load() }

// Full reports whether the node is past its hard mark (PeersRefuseAt):
// likes from peers are not applied either. It is on the path of every
// frame from a peer: O(1), never blocks.
func (b *Budget) Full() bool { return b.full.Load() }

// HardMark is the usage, in bytes, past which likes from peers are
// refused.
func (b *Budget) HardMark() int64 { return b.hard }

// Used is the memory the process used at the last sample, in bytes.
func (b *Budget) Used() int64 { return b.used.Load() }

// Limit is the budget's limit in bytes (0: none).
func (b *Budget) Limit() int64 { return b.cfg.Limit }

// Mark is the usage, in bytes, past which new likes are refused.
func (b *Budget) Mark() int64 { return b.mark }

// Readings is what the budget's metrics read at scrape time: a *Budget,
// or a stand-in with chosen values in a test.
type Readings interface {
	Over() bool
	Full() bool
	Used() int64
	Limit() int64
	Mark() int64
	HardMark() int64
}

// Metrics describes the budget's gauges for internal/metrics, each read
// from b at scrape time.
func Metrics(b Readings) []stat.Desc {
	size := func(name, help string, f func() int64) stat.Desc {
		return stat.NewGauge(name, help, func() float64 { return float64(f()) })
	}
	return []stat.Desc{
		stat.NewFlag("likesd_memory_budget_over", "1 while this node is over its memory budget and refuses new likes (507).", b.Over),
		size("likesd_memory_budget_used_bytes", "Memory the Go runtime holds from the OS, as the budget last sampled it.", b.Used),
		size("likesd_memory_budget_limit_bytes", "The memory limit the budget is a share of (the container's, or --memory-limit).", b.Limit),
		size("likesd_memory_budget_refuse_bytes", "Usage past which new likes are refused (--memory-refuse-at of the limit).", b.Mark),
		stat.NewFlag("likesd_memory_budget_full", "1 while this node is past its hard mark and takes no likes from peers either (they wait with their senders).", b.Full),
		size("likesd_memory_budget_peers_refuse_bytes", "Usage past which likes from peers are not applied (--memory-peers-refuse-at of the limit).", b.HardMark),
	}
}

// Run samples the process's memory every Interval until ctx ends. Call it
// once, from the goroutine that owns the budget, and wait for it to
// return. With no Limit it returns at once.
func (b *Budget) Run(ctx context.Context) {
	if b.cfg.Limit == 0 {
		return
	}
	b.log.Info().Int64("limit", b.cfg.Limit).Int64("refuse_at", b.mark).Int64("peers_refuse_at", b.hard).Msg("memory budget on")
	t := time.NewTicker(b.cfg.Interval)
	defer t.Stop()
	for {
		b.Sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample reads the memory once and updates Over, logging a transition.
// Run calls it; tests may too.
func (b *Budget) Sample() {
	if b.cfg.Limit == 0 {
		return
	}
	used := b.read()
	b.used.Store(used)
	was := b.over.Load()
	switch {
	case !was && used >= b.mark:
		b.over.Store(true)
		b.log.Warn().Int64("used", used).Int64("refuse_at", b.mark).Int64("limit", b.cfg.Limit).
			Msg("memory over budget: refusing new likes (507) until usage falls; reads, repeats and likes from peers go on")
	case was && used < b.resume:
		b.over.Store(false)
		b.log.Info().Int64("used", used).Int64("resume_below", b.resume).Msg("memory back under budget: taking new likes again")
	}
	wasFull := b.full.Load()
	switch {
	case !wasFull && used >= b.hard:
		b.full.Store(true)
		b.log.Error().Int64("used", used).Int64("peers_refuse_at", b.hard).Int64("limit", b.cfg.Limit).
			Msg("memory past the hard mark: likes from peers are not applied (nor acknowledged) until usage falls; they stay with their senders and anti-entropy brings them later")
	case wasFull && used < b.hardResume:
		b.full.Store(false)
		b.log.Info().Int64("used", used).Int64("resume_below", b.hardResume).Msg("memory back under the hard mark: applying likes from peers again")
	}
}

// processMemory reads what the Go runtime holds from the OS (all its
// memory classes but the heap it has released), the figure its memory
// limit governs, or the process's resident memory (/proc/self/statm)
// when that is more: the binary's pages and what is not the runtime's are
// resident too, 5-10 MiB that a small budget's margin does not cover
// (likesbench flood: a 64 MiB budget reached 67 MiB of RSS while the
// runtime's figure stayed under its 54 MiB mark).
func processMemory() func() int64 {
	samples := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	statm, _ := os.Open("/proc/self/statm") // nil off Linux: the runtime's figure alone
	buf := make([]byte, 128)
	page := int64(os.Getpagesize())
	return func() int64 {
		metrics.Read(samples) // only Run's goroutine calls it: samples and buf are its own
		total, released := samples[0].Value.Uint64(), samples[1].Value.Uint64()
		used := int64(total - min(released, total))
		if statm != nil {
			if n, err := statm.ReadAt(buf, 0); n > 0 && (err == nil || errors.Is(err, io.EOF)) {
				used = max(used, residentBytes(buf[:n], page))
			}
		}
		return used
	}
}

// residentBytes reads the resident pages, the second field of
// /proc/self/statm, in bytes; 0 when it cannot.
func residentBytes(statm []byte, page int64) int64 {
	fields := strings.Fields(string(statm))
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil || pages < 0 {
		return 0
	}
	return pages * page
}
