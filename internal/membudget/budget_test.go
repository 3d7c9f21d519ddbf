package membudget

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOverAtTheMarkBackUnderResume(t *testing.T) {
	var mem atomic.Int64
	var logs bytes.Buffer
	cfg := DefaultConfig()
	cfg.Limit = 1000
	b, err := newBudget(cfg, zerolog.New(&logs), mem.Load)
	require.NoError(t, err)
	assert.EqualValues(t, 850, b.Mark())
	steps := []struct {
		used int64
		want bool
	}{{100, false}, {849, false}, {850, true}, {900, true}, {801, true}, {799, false}, {849, false}, {1200, true}}
	for _, s := range steps {
		mem.Store(s.used)
		b.Sample()
		assert.Equal(t, s.want, b.Over(), "at %d", s.used)
		assert.Equal(t, s.used, b.Used())
	}
	assert.Equal(t, 2, strings.Count(logs.String(), "memory over budget"), "logged once per transition")
	assert.Equal(t, 1, strings.Count(logs.String(), "back under budget"))
}

func TestNoLimitNeverOver(t *testing.T) {
	b, err := newBudget(DefaultConfig(), zerolog.Nop(), func() int64 { return 1 << 62 })
	require.NoError(t, err)
	b.Sample()
	assert.False(t, b.Over())
	b.Run(context.Background()) // returns at once
}

// Run samples the real process until its context ends.
func TestRunSamplesTheProcess(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limit, cfg.Interval = 1, time.Millisecond // any process is over one byte
	b, err := New(cfg, zerolog.Nop())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	require.Eventually(t, b.Over, 5*time.Second, time.Millisecond)
	assert.Positive(t, b.Used())
	cancel()
	<-done
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	for name, tweak := range map[string]func(*Config){
		"negative limit":  func(c *Config) { c.Limit = -1 },
		"refuse too low":  func(c *Config) { c.RefuseAt = 0.05 },
		"refuse over one": func(c *Config) { c.RefuseAt = 1.5 },
		"resume":          func(c *Config) { c.ResumeBelow = 0.9 },
		"interval":        func(c *Config) { c.Interval = 0 },
	} {
		c := DefaultConfig()
		tweak(&c)
		assert.ErrorIs(t, c.Validate(), ErrConfig, name)
	}
}

func TestResidentBytesReadsStatm(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"1000 250 100 50 0 400 0\n", 250 * 4096},
		{"1000 0 0 0 0 0 0", 0},
		{"1000", 0},
		{"", 0},
		{"1000 x 1", 0},
		{"1000 -5 1", 0},
	} {
		assert.Equal(t, c.want, residentBytes([]byte(c.in), 4096), "%q", c.in)
	}
}

// What the budget counts is at least the process's resident memory (on
// Linux), which takes in the binary's pages the runtime does not count.
func TestProcessMemoryCountsResidentPages(t *testing.T) {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	rss := residentBytes(raw, int64(os.Getpagesize()))
	require.Positive(t, rss)
	assert.GreaterOrEqual(t, processMemory()(), rss-4<<20) // RSS may shrink a little between the two reads
}

// Past the hard mark (PeersRefuseAt; by default halfway from RefuseAt to
// the limit) the budget is full: likes from peers are refused too, until
// usage falls ResumeBelow under it.
func TestFullAtTheHardMark(t *testing.T) {
	var mem atomic.Int64
	var logs bytes.Buffer
	cfg := DefaultConfig()
	cfg.Limit = 1000
	b, err := newBudget(cfg, zerolog.New(&logs), mem.Load)
	require.NoError(t, err)
	assert.EqualValues(t, 925, b.HardMark(), "halfway from 850 to 1000")
	steps := []struct {
		used       int64
		over, full bool
	}{{100, false, false}, {900, true, false}, {924, true, false}, {925, true, true}, {1100, true, true}, {876, true, true}, {874, true, false}, {700, false, false}}
	for _, s := range steps {
		mem.Store(s.used)
		b.Sample()
		assert.Equal(t, s.over, b.Over(), "over at %d", s.used)
		assert.Equal(t, s.full, b.Full(), "full at %d", s.used)
	}
	assert.Equal(t, 1, strings.Count(logs.String(), "past the hard mark"))
	assert.Equal(t, 1, strings.Count(logs.String(), "back under the hard mark"))

	cfg.PeersRefuseAt = 0.95
	b, err = newBudget(cfg, zerolog.Nop(), mem.Load)
	require.NoError(t, err)
	assert.EqualValues(t, 950, b.HardMark())
	for _, bad := range []float64{0.8, 1.01, -1} {
		cfg.PeersRefuseAt = bad
		assert.ErrorIs(t, cfg.Validate(), ErrConfig, "%g", bad)
		assert.ErrorContains(t, cfg.Validate(), "--memory-peers-refuse-at")
	}
}
