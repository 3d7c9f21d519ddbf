package memtrim

import (
	"context"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const mib = 1 << 20

var t0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

// feed samples the decider once a second from t0, allocating per[i] bytes
// in second i, and returns the seconds at which it said trim.
func feed(d *Decider, per []uint64) []int {
	var trims []int
	var total uint64
	for i, b := range per {
		total += b
		if d.Observe(t0.Add(time.Duration(i)*time.Second), total) {
			trims = append(trims, i)
		}
	}
	return trims
}

// everySecond is the default Config sampled once a second, as feed does.
func everySecond() Config {
	c := DefaultConfig()
	c.Interval = time.Second
	return c
}

func seconds(n int, b uint64) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func TestTrimsOnceWhenABurstHasBeenQuietLongEnough(t *testing.T) {
	d := NewDecider(everySecond()) // 10 s quiet, 64 MiB burst, 4 MiB/s
	per := append(append(seconds(1, 0), seconds(5, 100*mib)...), seconds(30, mib)...)
	// The burst's last second is 5; quiet from 6 on, so 10 s quiet at 15.
	assert.Equal(t, []int{15}, feed(d, per))
}

func TestABusyNodeNeverTrims(t *testing.T) {
	d := NewDecider(everySecond())
	assert.Empty(t, feed(d, seconds(120, 5*mib)), "5 MiB/s all along: never quiet")
}

func TestASmallBurstIsNotWorthATrim(t *testing.T) {
	d := NewDecider(everySecond())
	per := append(seconds(1, 0), 60*mib)
	assert.Empty(t, feed(d, append(per, seconds(60, 0)...)), "60 MiB < MinBurst")
}

func TestAfterATrimAnotherBurstIsNeeded(t *testing.T) {
	d := NewDecider(everySecond())
	per := append(append(seconds(1, 0), 100*mib), seconds(40, mib)...)
	per = append(append(per, 100*mib), seconds(40, 0)...)
	// The first burst is second 1 (trim at 11), the second is second 42
	// (trim at 52).
	assert.Equal(t, []int{11, 52}, feed(d, per))
}

// What a trim allocates (a compaction copies the replica) is not a burst:
// reported through Trimmed, it is never counted; observed as allocation,
// it would have started another trim. Others' allocation during the trim
// still counts.
func TestATrimsOwnAllocationIsNotABurst(t *testing.T) {
	for _, tc := range []struct {
		name   string
		report bool
		others uint64 // allocated by others during each trim
		want   []int
	}{
		{"reported", true, 0, []int{11}},
		{"unreported: each copy is a burst and trims again", false, 0, []int{11, 22, 33, 44, 55}},
		{"others' burst during the trim counts", true, 100 * mib, []int{11, 22, 33, 44, 55}},
	} {
		d := NewDecider(everySecond())
		var total uint64
		var trims []int
		for i := 0; i < 60; i++ {
			if i == 1 {
				total += 100 * mib
			}
			if d.Observe(t0.Add(time.Duration(i)*time.Second), total) {
				trims = append(trims, i)
				total += 200*mib + tc.others // the compaction, within the same second
				if tc.report {
					d.Trimmed(total, 200*mib)
				}
			}
		}
		assert.Equal(t, tc.want, trims, tc.name)
	}
	d := NewDecider(everySecond())
	require.False(t, d.Observe(t0, 500*mib))
	d.Trimmed(10, 200*mib) // a counter that went back: left to Observe
	require.False(t, d.Observe(t0.Add(time.Second), 10))
}

// The limit is held for the first MaxBurstHold of a burst only: a steady
// load above QuietRate holds it once, a dip shorter than QuietFor does not
// start a new burst, and a burst after QuietFor of quiet holds it again.
func TestHoldLimitForTheFirstMaxBurstHoldOfABurst(t *testing.T) {
	cfg := everySecond()
	d := NewDecider(cfg)
	hold := func(per []uint64) []bool { // HoldLimit after each second of per
		var total uint64
		out := make([]bool, len(per))
		for i, b := range per {
			total += b
			d.Observe(t0.Add(time.Duration(i)*time.Second), total)
			out[i] = d.HoldLimit()
		}
		return out
	}
	busy := uint64(8 * mib) // a second over QuietRate
	secs := int(MaxBurstHold / time.Second)
	var per []uint64
	per = append(per, 0)
	per = append(per, seconds(secs/2, busy)...)
	per = append(per, seconds(int(cfg.QuietFor/time.Second)-2, 0)...) // a dip, shorter than QuietFor
	per = append(per, seconds(secs, busy)...)                         // the same burst: past MaxBurstHold in its middle
	per = append(per, seconds(int(cfg.QuietFor/time.Second)+1, 0)...) // quiet: the burst is over
	per = append(per, seconds(3, busy)...)                            // a new burst
	got := hold(per)
	var want []bool
	at := 0
	add := func(n int, v func(i int) bool) {
		for i := 0; i < n; i++ {
			want = append(want, v(at))
			at++
		}
	}
	burstStart := 0 // the first sample starts a burst: a node may start busy
	add(1, func(int) bool { return false })
	add(secs/2, func(int) bool { return true })
	add(int(cfg.QuietFor/time.Second)-2, func(int) bool { return false })
	add(secs, func(i int) bool { return i-burstStart < secs })
	add(int(cfg.QuietFor/time.Second)+1, func(int) bool { return false })
	add(3, func(int) bool { return true })
	require.Equal(t, want, got)
	require.Contains(t, got[:len(got)-3], false, "a steady load stops holding")
}

func TestRoomToCompactIsTheLiveHeapUnderTheLimit(t *testing.T) {
	assert.True(t, RoomToCompact(100*mib, 80*mib, math.MaxInt64), "no limit")
	assert.True(t, RoomToCompact(100*mib, 80*mib, 180*mib))
	assert.False(t, RoomToCompact(100*mib, 81*mib, 180*mib))
	assert.False(t, RoomToCompact(200*mib, 10*mib, 180*mib), "already over")
	assert.False(t, RoomToCompact(1, 1, 0))
	assert.True(t, RoomToCompact(math.MaxInt64-10, 10, math.MaxInt64), "no overflow at the top")
	assert.False(t, RoomToCompact(math.MaxUint64, math.MaxUint64, math.MaxInt64), "no wrap-around")
}

func TestCompactingPaysWhenAQuarterOfTheLiveHeapIsHoles(t *testing.T) {
	assert.True(t, WorthCompacting(50*mib, 80*mib), "S2 after its load: 50 MiB of holes for 80 MiB live")
	assert.True(t, WorthCompacting(20*mib, 80*mib))
	assert.False(t, WorthCompacting(19*mib, 80*mib))
	assert.False(t, WorthCompacting(5*mib, 200*mib), "S4 once compacted")
	assert.False(t, WorthCompacting(0, 0), "an empty heap")
}

func TestForgivenCoversTheCopyAndItsOverheadsOnly(t *testing.T) {
	assert.Equal(t, uint64(100*mib+25*mib+256*1000), forgiven(100*mib, 1000))
	assert.Equal(t, uint64(256*10), forgiven(0, 10))
}

func TestQuietForZeroNeverTrims(t *testing.T) {
	cfg := everySecond()
	cfg.QuietFor = 0
	d := NewDecider(cfg)
	assert.Empty(t, feed(d, append(append(seconds(1, 0), 500*mib), seconds(100, 0)...)))
}

func TestACounterThatGoesBackStartsOver(t *testing.T) {
	d := NewDecider(everySecond())
	require.False(t, d.Observe(t0, 500*mib))
	require.False(t, d.Observe(t0.Add(time.Second), 10), "no underflow into a huge burst")
	for i := 2; i < 60; i++ {
		require.False(t, d.Observe(t0.Add(time.Duration(i)*time.Second), 10))
	}
}

func TestSteadyLightTrafficNeverTrims(t *testing.T) {
	d := NewDecider(everySecond())
	assert.Empty(t, feed(d, seconds(600, 4*mib-1)), "just under 4 MiB/s for 10 min: 2.3 GiB, but never a burst")
}

func TestAStalledSampleCountsAsBusy(t *testing.T) {
	d := NewDecider(everySecond())
	require.False(t, d.Observe(t0, 0))
	// 100 MiB over a 30 s gap is 3.3 MiB/s on average, but the process was
	// stalled: it may have been a burst.
	require.False(t, d.Observe(t0.Add(30*time.Second), 100*mib))
	var trims []int
	for i := 31; i < 60; i++ {
		if d.Observe(t0.Add(time.Duration(i)*time.Second), 100*mib) {
			trims = append(trims, i)
		}
	}
	assert.Equal(t, []int{40}, trims)
}

// sample is one reading of the allocation counter, for the reference.
type sample struct {
	at    time.Duration
	delta uint64 // bytes since the sample before
	gap   time.Duration
}

// referenceTrim decides from the whole history since the last trim:
// busy samples are those above the rate or after a stall; trim when they
// add up to MinBurst and the last of them is QuietFor old.
func referenceTrim(cfg Config, since []sample, now time.Duration) bool {
	var burst uint64
	lastBusy := time.Duration(-1)
	for _, s := range since {
		if s.gap > 2*cfg.Interval || float64(s.delta) > float64(cfg.QuietRate)*s.gap.Seconds() {
			burst += s.delta
			lastBusy = s.at
		}
	}
	return burst >= cfg.MinBurst && lastBusy >= 0 && now-lastBusy >= cfg.QuietFor
}

// On random schedules (uneven gaps, stalls, allocation around the rate)
// the decider trims exactly when the reference says.
func TestTrimsMatchAReferenceOnRandomSchedules(t *testing.T) {
	cfg := everySecond()
	trims := 0
	for seed := uint64(0); seed < 2000; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		d := NewDecider(cfg)
		var total uint64
		var now time.Duration
		var since []sample
		d.Observe(t0, 0)
		for step := 0; step < 300; step++ {
			gap := time.Duration(500+r.IntN(1000)) * time.Millisecond // 0.5 s to 1.5 s
			if r.IntN(30) == 0 {
				gap = time.Duration(1+r.IntN(30)) * time.Second // a stall, or not quite
			}
			var b uint64
			switch r.IntN(12) {
			case 0:
				b = uint64(r.IntN(100)) * mib // a burst
			case 1, 2, 3:
				b = uint64(r.Int64N(int64(2 * float64(cfg.QuietRate) * gap.Seconds()))) // either side of the rate
			default:
				b = uint64(r.IntN(4096)) // idle
			}
			now += gap
			total += b
			since = append(since, sample{at: now, delta: b, gap: gap})
			want := referenceTrim(cfg, since, now)
			got := d.Observe(t0.Add(now), total)
			require.Equal(t, want, got, "seed %d step %d", seed, step)
			if got {
				since = nil
				trims++
			}
		}
	}
	assert.Greater(t, trims, 2000, "the schedules trim often enough to test something")
}

func TestConfigValidateNamesTheFlag(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	off := DefaultConfig()
	off.QuietFor = 0
	require.NoError(t, off.Validate(), "0 turns trimming off")
	for _, tc := range []struct {
		name  string
		tweak func(*Config)
		want  string
	}{
		{"too short", func(c *Config) { c.QuietFor = 500 * time.Millisecond }, "--memory-trim-after"},
		{"too long", func(c *Config) { c.QuietFor = 2 * time.Hour }, "--memory-trim-after"},
		{"tiny burst", func(c *Config) { c.MinBurst = 1 }, "MinBurst"},
		{"tiny rate", func(c *Config) { c.QuietRate = 1 }, "QuietRate"},
		{"interval past quiet", func(c *Config) { c.Interval = time.Minute }, "Interval"},
	} {
		c := DefaultConfig()
		tc.tweak(&c)
		err := c.Validate()
		require.ErrorIs(t, err, ErrConfig, tc.name)
		assert.Contains(t, err.Error(), tc.want, tc.name)
	}
}

var sink [][]byte

// burstUntilTrimmed allocates 32 MiB, again every 3 s until trims shows a
// trim followed one (the first may come before Run's first sample, which
// counts from there).
func burstUntilTrimmed(t *testing.T, trims *atomic.Int32) { burstUntil(t, trims, nil) }

// burstUntil bursts as burstUntilTrimmed does, but allocates nothing more
// once started reports true (a trim began: what others allocate during
// it counts as a new burst).
func burstUntil(t *testing.T, trims *atomic.Int32, started func() bool) {
	t.Helper()
	var burstAt time.Time
	require.Eventually(t, func() bool {
		if trims.Load() >= 1 {
			return true
		}
		if started != nil && started() {
			sink = nil
			return false
		}
		switch since := time.Since(burstAt); {
		case since > 3*time.Second:
			for i := 0; i < 64; i++ {
				sink = append(sink, make([]byte, 512<<10))
			}
			burstAt = time.Now()
		case since > 200*time.Millisecond:
			sink = nil // held across samples: the burst's peak is over what is left
		}
		return false
	}, 60*time.Second, 20*time.Millisecond)
}

// The driver trims after a real burst of allocation, and returns when its
// context ends.
func TestRunTrimsAfterARealBurstAndStopsOnCancel(t *testing.T) {
	require.NoError(t, runConfig.Validate())
	var trims atomic.Int32
	cancel, done := startRun(t, nil, func() { trims.Add(1) })
	burstUntilTrimmed(t, &trims)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// makeHoles leaves holes worth compacting: 64 MiB of small objects, three
// in four let go. Keep the result alive.
func makeHoles() []*[64]byte {
	holes := make([]*[64]byte, 1<<20)
	for i := range holes {
		holes[i] = new([64]byte)
	}
	for i := range holes {
		if i%4 != 0 {
			holes[i] = nil
		}
	}
	return holes
}

// compactor allocates like a compaction of a replica of n bytes would,
// calling pause as store.Compact does: its copies are garbage at the next
// pause, or, with hold, kept until it ends (copies that free nothing).
type compactor struct {
	n       int
	hold    bool
	keep    [][]byte
	calls   atomic.Int32
	paused  atomic.Int32
	stopped atomic.Bool
}

func forcedGCs() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func (c *compactor) Compact(ctx context.Context, pause func()) (int, uint64) {
	c.calls.Add(1)
	copied := 0
	for ; copied < c.n; copied += 8 * mib {
		if ctx.Err() != nil {
			c.stopped.Store(true)
			break
		}
		chunk := make([]byte, 8*mib)
		for i := range chunk { // touched, as a copy is
			chunk[i] = 1
		}
		if !c.hold {
			c.keep = c.keep[:0] // the copy before is garbage
		}
		c.keep = append(c.keep, chunk)
		before := forcedGCs()
		pause()
		if forcedGCs() > before { // the pause collected
			c.paused.Add(1)
		}
	}
	c.keep = nil
	return 1, uint64(copied)
}

// The driver compacts before it trims, lets the compaction pause to
// collect, and does not take the compaction's own allocation (over
// MinBurst) for another burst.
func TestRunCompactsOnceBeforeATrim(t *testing.T) {
	c := &compactor{n: 64 * mib}
	defer runtime.KeepAlive(makeHoles())
	var trims atomic.Int32
	var compactedFirst atomic.Bool
	cancel, done := startRun(t, c, func() { compactedFirst.Store(c.calls.Load() == trims.Add(1)) })
	burstUntil(t, &trims, func() bool { return c.calls.Load() > 0 })
	require.True(t, compactedFirst.Load(), "each trim compacts first")
	require.Equal(t, int32(8), c.paused.Load(), "the compaction paused, and collected, every 8 MiB")
	require.Never(t, func() bool { return trims.Load() > 1 }, 4*runConfig.QuietFor, 50*time.Millisecond,
		"the compaction's 64 MiB is not another burst")
	cancel()
	<-done
}

func TestRunReturnsAtOnceWhenOff(t *testing.T) {
	cfg := DefaultConfig()
	cfg.QuietFor = 0
	done := make(chan struct{})
	go func() { defer close(done); Run(context.Background(), cfg, zerolog.Nop(), nil, nil) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run with trimming off did not return")
	}
}

// Busy is the last sample's: allocation above QuietRate, or a stall.
func TestBusyIsTheLastSamples(t *testing.T) {
	d := NewDecider(DefaultConfig())
	d.Observe(t0, 0)
	assert.False(t, d.Busy(), "the first sample only starts the count")
	d.Observe(t0.Add(100*time.Millisecond), 1*mib)
	assert.True(t, d.Busy(), "1 MiB in 100 ms is over 4 MiB/s")
	d.Observe(t0.Add(200*time.Millisecond), 1*mib+100<<10)
	assert.False(t, d.Busy(), "100 KiB in 100 ms is under")
	d.Observe(t0.Add(2*time.Second), 1*mib+200<<10)
	assert.False(t, d.Busy(), "a stalled sample adds to the burst, but is not busy")
}

func TestBurstLimitIsWhatTheHeapNeedsUnderTheConfiguredLimit(t *testing.T) {
	const none = math.MaxInt64
	m := Memory{Live: 160 * mib, InUse: 170 * mib, NonHeap: 10 * mib}
	assert.Equal(t, int64(200+10+10)*mib, BurstLimit(m, 25, none), "the GOGC goal, the runtime's own, a sixteenth")
	m.InUse = 260 * mib
	assert.Equal(t, int64(260+10+10)*mib, BurstLimit(m, 25, none), "spans in use over the goal: holes the GC cannot return")
	assert.Equal(t, int64(250)*mib, BurstLimit(m, 25, 250*mib), "never above the configured limit")
	assert.Equal(t, int64(none), BurstLimit(Memory{Live: 160 * mib, InUse: 170 * mib, NonHeap: 10 * mib}, -1, none),
		"GOGC off: no limit held, which would ask for collections")
	assert.Equal(t, int64(none), BurstLimit(Memory{Live: 1 << 40, InUse: 1 << 40}, math.MaxInt32, none), "a huge GOGC: none, and no overflow")
	assert.Equal(t, int64(5+5+2)*mib, BurstLimit(Memory{Live: 4 * mib, InUse: 5 * mib, NonHeap: 5 * mib}, 25, none),
		"a small heap gets the least slack")
}

// runUnderLimit sets the process's memory limit to base and starts Run
// with no compactor; the test's cleanups stop Run, then put the limit back
// (cleanups run last first).
func runUnderLimit(t *testing.T, base int64) (trims *atomic.Int32, cancel context.CancelFunc, done chan struct{}) {
	old := debug.SetMemoryLimit(base)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	trims = new(atomic.Int32)
	cancel, done = startRun(t, nil, func() { trims.Add(1) })
	return trims, cancel, done
}

// runConfig trims 1 s after a burst of 8 MiB, sampling every 20 ms.
var runConfig = Config{QuietFor: time.Second, MinBurst: 8 * mib, QuietRate: 4 * mib, Interval: 20 * time.Millisecond}

// startRun runs Run with runConfig until cancel, or the test's end: Run
// owns the process's memory limit, so none may outlive its test.
func startRun(t *testing.T, c Compactor, trimmed func()) (cancel context.CancelFunc, done chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { defer close(done); Run(ctx, runConfig, zerolog.Nop(), c, trimmed) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel, done
}

// Run holds the memory limit under the configured one while a burst runs,
// at least at what the heap holds, and puts the configured limit back once
// the burst is over and when it returns.
func TestRunHoldsTheLimitNearTheHeapDuringABurst(t *testing.T) {
	const base = 1 << 40
	trims, cancel, done := runUnderLimit(t, base)
	var held atomic.Int64
	require.Eventually(t, func() bool {
		for i := 0; i < 16; i++ { // 8 MiB per wait: well over 4 MiB/s
			sink = append(sink, make([]byte, 512<<10))
		}
		sink = nil
		held.Store(debug.SetMemoryLimit(-1))
		return held.Load() < base
	}, 30*time.Second, 10*time.Millisecond, "a burst tightens the limit")
	m, _ := readMemory()
	assert.Greater(t, uint64(held.Load()), m.Live, "never under the live heap")
	require.Eventually(t, func() bool { return trims.Load() >= 1 && debug.SetMemoryLimit(-1) == base },
		30*time.Second, 20*time.Millisecond, "quiet, then a trim, with the configured limit back")
	cancel()
	<-done
	assert.Equal(t, int64(base), debug.SetMemoryLimit(-1))
}

// A limit set by someone else while Run runs becomes the configured one:
// set while Run holds a burst's limit, it is the one put back after.
func TestRunAdoptsALimitSetMeanwhile(t *testing.T) {
	trims, cancel, done := runUnderLimit(t, 1<<40)
	burstUntilTrimmed(t, trims) // Run has read 1<<40, held a burst's limit and put 1<<40 back
	require.Equal(t, int64(1<<40), debug.SetMemoryLimit(-1))
	// Allocate until a burst's limit is held, then set one meanwhile. (A
	// starved Run may take a burst for a stall and hold nothing: keep on.)
	require.Eventually(t, func() bool {
		for i := 0; i < 16; i++ { // 8 MiB per wait: well over 4 MiB/s
			sink = append(sink, make([]byte, 512<<10))
		}
		sink = nil
		if debug.SetMemoryLimit(-1) >= 1<<39 {
			return false
		}
		debug.SetMemoryLimit(1 << 39)
		return true
	}, 30*time.Second, 10*time.Millisecond, "a burst tightens the limit")
	trims.Store(0)
	burstUntilTrimmed(t, trims)
	require.Eventually(t, func() bool { return debug.SetMemoryLimit(-1) == 1<<39 }, 30*time.Second, 20*time.Millisecond,
		"after the burst, the limit set meanwhile is back, not the one Run first read")
	cancel()
	<-done
	assert.Equal(t, int64(1<<39), debug.SetMemoryLimit(-1))
}

// A compaction whose copies free nothing stops at the first pause that
// finds the process past the burst's peak.
func TestRunStopsACompactionAtTheBurstsPeak(t *testing.T) {
	c := &compactor{n: 256 * mib, hold: true}
	defer runtime.KeepAlive(makeHoles())
	var trims atomic.Int32
	cancel, done := startRun(t, c, func() { trims.Add(1) })
	burstUntil(t, &trims, func() bool { return c.calls.Load() > 0 })
	require.Equal(t, int32(1), c.calls.Load())
	require.True(t, c.stopped.Load(), "256 MiB of copies held: stopped before the end")
	// The burst's peak is at most the 32 MiB burst and the 64 MiB of holes
	// over the process's start: a few pauses of 8 MiB past it at most.
	assert.LessOrEqual(t, c.paused.Load(), int32(16), "stopped within a few pauses of the burst's peak")
	cancel()
	<-done
}
