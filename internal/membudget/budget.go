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
	read         func() int64
	log          zerolog.Logger

	over atomic.Bool
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
	return b, nil
}

// Over reports whether the node is past its mark: new likes are refused.
func (b *Budget) Over() bool { return b.over.Load() }

// Used is the memory the process used at the last sample, in bytes.
func (b *Budget) Used() int64 { return b.used.Load() }

// Limit is the budget's limit in bytes (0: none).
func (b *Budget) Limit() int64 { return b.cfg.Limit }

// Mark is the usage, in bytes, past which new likes are refused.
func (b *Budget) Mark() int64 { return b.mark }

// Run samples the process's memory every Interval until ctx ends. Call it
// once, from the goroutine that owns the budget, and wait for it to
// return. With no Limit it returns at once.
func (b *Budget) Run(ctx context.Context) {
	if b.cfg.Limit == 0 {
		return
	}
	b.log.Info().Int64("limit", b.cfg.Limit).Int64("refuse_at", b.mark).Msg("memory budget on")
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
