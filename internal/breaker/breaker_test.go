package breaker

import (
	"errors"
	"fmt"
	"math/rand" // testing/quick's Generator takes a math/rand (v1) *Rand
	"reflect"
	"testing"
	"testing/quick"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const cooldown = 100 * time.Millisecond

// t0 is the fake clock's start; any fixed instant will do.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testConfig(failures int) Config {
	return Config{Failures: failures, Cooldown: cooldown}
}

// Breakers in each state, opened at t0 where they are open.

func closedWith(failures, counted int) Breaker {
	b := New(testConfig(failures))
	for range counted {
		b.Failure(t0)
	}
	return b
}

func opened(failures int) Breaker { return closedWith(failures, failures) }

func halfOpen(failures int) Breaker {
	b := opened(failures)
	b.Allow(t0.Add(cooldown))
	return b
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{
		Closed: "closed", Open: "open", HalfOpen: "half-open", State(7): "State(7)",
	} {
		assert.Equal(t, want, s.String())
	}
}

func TestNewIsClosed(t *testing.T) {
	b := New(DefaultConfig())
	assert.Equal(t, Closed, b.State(t0))
	assert.Equal(t, 0, b.Failures())
}

func TestTransitions(t *testing.T) {
	cooled := t0.Add(cooldown)
	cooling := t0.Add(cooldown - time.Nanosecond)
	tr := func(from, to State, at time.Time) *Transition { return &Transition{From: from, To: to, At: at} }

	tests := []struct {
		name         string
		b            Breaker
		op           string // "allow", "success", "failure"
		at           time.Time
		wantOK       bool // Allow's answer; ignored for other ops
		wantT        *Transition
		wantState    State
		wantFailures int
	}{
		{"closed allows", closedWith(3, 2), "allow", t0, true, nil, Closed, 2},
		{"closed success resets the count", closedWith(3, 2), "success", t0, false, nil, Closed, 0},
		{"closed failure below threshold counts", closedWith(3, 1), "failure", t0, false, nil, Closed, 2},
		{"closed failure at threshold opens", closedWith(3, 2), "failure", cooling, false, tr(Closed, Open, cooling), Open, 3},
		{"one failure opens when Failures is 1", closedWith(1, 0), "failure", t0, false, tr(Closed, Open, t0), Open, 1},

		{"open cooling refuses", opened(3), "allow", cooling, false, nil, Open, 3},
		{"open cooled turns half-open and allows", opened(3), "allow", cooled, true, tr(Open, HalfOpen, cooled), HalfOpen, 3},
		{"open cooling success closes", opened(3), "success", cooling, false, tr(Open, Closed, cooling), Closed, 0},
		{"open cooled success closes", opened(3), "success", cooled, false, tr(Open, Closed, cooled), Closed, 0},
		{"open cooling failure only counts", opened(3), "failure", cooling, false, nil, Open, 4},
		// Open here was already reported: the restart is no Transition, and
		// the breaker reads Open again (its cooldown restarted).
		{"open cooled failure restarts the cooldown", opened(3), "failure", cooled, false, nil, Open, 4},

		{"half-open allows", halfOpen(3), "allow", cooled, true, nil, HalfOpen, 3},
		{"half-open success closes", halfOpen(3), "success", cooled, false, tr(HalfOpen, Closed, cooled), Closed, 0},
		{"half-open failure reopens", halfOpen(3), "failure", cooled, false, tr(HalfOpen, Open, cooled), Open, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b
			var (
				gotOK      bool
				got        Transition
				gotChanged bool
			)
			switch tt.op {
			case "allow":
				gotOK, got, gotChanged = b.Allow(tt.at)
				assert.Equal(t, tt.wantOK, gotOK, "allow")
			case "success":
				got, gotChanged = b.Success(tt.at)
			case "failure":
				got, gotChanged = b.Failure(tt.at)
			default:
				t.Fatalf("unknown op %q", tt.op)
			}
			if tt.wantT == nil {
				assert.False(t, gotChanged, "unexpected transition %+v", got)
				assert.Equal(t, Transition{}, got)
			} else {
				assert.True(t, gotChanged, "no transition")
				assert.Equal(t, *tt.wantT, got)
			}
			assert.Equal(t, tt.wantState, b.State(tt.at))
			assert.Equal(t, tt.wantFailures, b.Failures())
		})
	}
}

func TestFailedProbeRestartsCooldown(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    Breaker
	}{
		{"from half-open", halfOpen(2)},
		{"from open, cooled", opened(2)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b
			probe := t0.Add(cooldown + 5*time.Millisecond)
			b.Failure(probe)
			ok, _, _ := b.Allow(probe.Add(cooldown - time.Nanosecond))
			assert.False(t, ok, "allowed before the restarted cooldown")
			ok, got, changed := b.Allow(probe.Add(cooldown))
			assert.True(t, ok)
			assert.True(t, changed)
			assert.Equal(t, Transition{From: Open, To: HalfOpen, At: probe.Add(cooldown)}, got)
		})
	}
}

func TestStateIsAPureRead(t *testing.T) {
	for _, b := range []Breaker{closedWith(3, 2), opened(3), halfOpen(3)} {
		before := b
		for _, at := range []time.Time{t0, t0.Add(cooldown - 1), t0.Add(cooldown), t0.Add(time.Hour)} {
			b.State(at)
		}
		assert.Equal(t, before, b)
	}
	b := opened(3)
	assert.Equal(t, Open, b.State(t0.Add(cooldown-1)))
	assert.Equal(t, HalfOpen, b.State(t0.Add(cooldown)), "an open breaker whose cooldown passed reads half-open")
}

func TestClockSteppingBackIsCooling(t *testing.T) {
	b := opened(3)
	ok, _, changed := b.Allow(t0.Add(-time.Hour))
	assert.False(t, ok)
	assert.False(t, changed)
	assert.Equal(t, Open, b.State(t0.Add(-time.Hour)))
}

// The reference model: a transition table as a list of rules, the first
// that matches wins. It shares nothing with Breaker but the State type.

type op uint8

const (
	opAllow op = iota
	opSuccess
	opFailure
	opState
	numOps
)

func (o op) String() string { return [...]string{"allow", "success", "failure", "state"}[o] }

// either matches every value of a rule's condition.
const either = -1

type rule struct {
	from      State
	cooled    int // 1: the cooldown has passed; 0: not; either
	op        op
	threshold int // 1: this failure reaches cfg.Failures; 0: not; either
	to        State
	allow     bool
	restart   bool // the cooldown starts again at now
}

var rules = []rule{
	{Closed, either, opAllow, either, Closed, true, false},
	{Closed, either, opSuccess, either, Closed, false, false},
	{Closed, either, opFailure, 0, Closed, false, false},
	{Closed, either, opFailure, 1, Open, false, true},
	{Open, 0, opAllow, either, Open, false, false},
	{Open, 1, opAllow, either, HalfOpen, true, false},
	{Open, either, opSuccess, either, Closed, false, false},
	{Open, 0, opFailure, either, Open, false, false},
	{Open, 1, opFailure, either, Open, false, true},
	{HalfOpen, either, opAllow, either, HalfOpen, true, false},
	{HalfOpen, either, opSuccess, either, Closed, false, false},
	{HalfOpen, either, opFailure, either, Open, false, true},
}

type model struct {
	limit    int
	state    State
	fails    int
	openedAt time.Time
}

func bit(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (m *model) cooled(now time.Time) bool {
	return m.state == Open && !now.Before(m.openedAt.Add(cooldown))
}

func (m *model) view(now time.Time) State {
	if m.cooled(now) {
		return HalfOpen
	}
	return m.state
}

// apply runs o at now and returns Allow's answer and the transition made.
func (m *model) apply(o op, now time.Time) (bool, *Transition) {
	if o == opState {
		return false, nil
	}
	switch o {
	case opSuccess:
		m.fails = 0
	case opFailure:
		m.fails++
	}
	cooled, threshold := bit(m.cooled(now)), bit(m.fails >= m.limit)
	for _, r := range rules {
		if r.from != m.state || r.op != o ||
			(r.cooled != either && r.cooled != cooled) ||
			(r.threshold != either && r.threshold != threshold) {
			continue
		}
		if r.restart {
			m.openedAt = now
		}
		var t *Transition
		if r.to != m.state {
			t = &Transition{From: m.state, To: r.to, At: now}
		}
		m.state = r.to
		return r.allow, t
	}
	panic(fmt.Sprintf("no rule for %v %v", m.state, o))
}

type step struct {
	Op      op
	Advance time.Duration
}

// script is a random run: a threshold and a list of steps, with time
// advances that often land just before, on and after the cooldown.
type script struct {
	Failures int
	Steps    []step
}

var _ quick.Generator = script{}

func (script) Generate(r *rand.Rand, size int) reflect.Value {
	advances := []time.Duration{0, 0, time.Millisecond, cooldown - time.Nanosecond, cooldown, cooldown + time.Nanosecond}
	s := script{Failures: 1 + r.Intn(4), Steps: make([]step, r.Intn(4*size+1))}
	for i := range s.Steps {
		a := time.Duration(r.Int63n(int64(2 * cooldown)))
		if r.Intn(2) == 0 {
			a = advances[r.Intn(len(advances))]
		}
		s.Steps[i] = step{Op: op(r.Intn(int(numOps))), Advance: a}
	}
	return reflect.ValueOf(s)
}

var quickConfig = &quick.Config{MaxCount: 2000}

func check(t *testing.T, f any) { t.Helper(); require.NoError(t, quick.Check(f, quickConfig)) }

// run applies s to a Breaker and calls visit after each step with what
// the Breaker answered.
func run(s script, visit func(i int, now time.Time, b *Breaker, ok bool, t *Transition) bool) bool {
	b := New(testConfig(s.Failures))
	now := t0
	for i, st := range s.Steps {
		now = now.Add(st.Advance)
		var (
			ok      bool
			t       Transition
			changed bool
		)
		switch st.Op {
		case opAllow:
			ok, t, changed = b.Allow(now)
		case opSuccess:
			t, changed = b.Success(now)
		case opFailure:
			t, changed = b.Failure(now)
		case opState:
			b.State(now)
		}
		var tp *Transition
		if changed {
			tp = &t
		} else if t != (Transition{}) {
			return false // a Transition with changed false must be zero
		}
		if !visit(i, now, &b, ok, tp) {
			return false
		}
	}
	return true
}

func TestPropertyMatchesReference(t *testing.T) {
	check(t, func(s script) bool {
		m := model{limit: s.Failures}
		return run(s, func(i int, now time.Time, b *Breaker, ok bool, got *Transition) bool {
			wantOK, want := m.apply(s.Steps[i].Op, now)
			return ok == wantOK && reflect.DeepEqual(got, want) &&
				b.State(now) == m.view(now) && b.Failures() == m.fails
		})
	})
}

func TestPropertyTransitionsFormAPath(t *testing.T) {
	check(t, func(s script) bool {
		last := Closed
		return run(s, func(_ int, now time.Time, b *Breaker, _ bool, got *Transition) bool {
			if got == nil {
				return true
			}
			valid := got.From != got.To && got.From == last && got.At.Equal(now) && b.State(now) == got.To
			last = got.To
			return valid
		})
	})
}

// Repeating a call at the same instant never reports a transition twice.
func TestPropertyTransitionReportedOnce(t *testing.T) {
	check(t, func(s script) bool {
		return run(s, func(i int, now time.Time, b *Breaker, _ bool, got *Transition) bool {
			switch s.Steps[i].Op {
			case opAllow:
				_, _, changed := b.Allow(now)
				return !changed
			case opSuccess:
				_, changed := b.Success(now)
				return !changed
			case opFailure:
				// Repeats may open a closed breaker that the step only
				// counted, once; after that they change nothing.
				changes := bit(got != nil)
				for range s.Failures + 1 {
					if _, changed := b.Failure(now); changed {
						changes++
					}
				}
				return changes <= 1 && b.State(now) == Open
			}
			return true
		})
	})
}

func TestPropertyOpenHoldsForCooldown(t *testing.T) {
	check(t, func(s script, wait uint32) bool {
		return run(s, func(_ int, now time.Time, b *Breaker, _ bool, got *Transition) bool {
			if got == nil || got.To != Open {
				return true
			}
			probe := *b // a copy, so the run goes on as scripted
			early := time.Duration(wait) % cooldown
			if ok, _, _ := probe.Allow(now.Add(early)); ok {
				return false
			}
			ok, t, changed := probe.Allow(now.Add(cooldown))
			return ok && changed && t == Transition{From: Open, To: HalfOpen, At: now.Add(cooldown)}
		})
	})
}

func TestDefaultConfigIsValid(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
}

func TestValidate(t *testing.T) {
	with := func(f func(*Config)) Config { c := DefaultConfig(); f(&c); return c }
	for _, tt := range []struct {
		name    string
		cfg     Config
		wantErr string // "" for valid; else the flag and bound named
	}{
		{"failures at lower bound", with(func(c *Config) { c.Failures = MinFailures }), ""},
		{"failures at upper bound", with(func(c *Config) { c.Failures = MaxFailures }), ""},
		{"failures zero", with(func(c *Config) { c.Failures = 0 }), "--breaker-failures must be from 1 to 1000, got 0"},
		{"failures negative", with(func(c *Config) { c.Failures = -1 }), "--breaker-failures must be from 1 to 1000, got -1"},
		{"failures above", with(func(c *Config) { c.Failures = 1001 }), "--breaker-failures must be from 1 to 1000, got 1001"},
		{"cooldown at lower bound", with(func(c *Config) { c.Cooldown = MinCooldown }), ""},
		{"cooldown at upper bound", with(func(c *Config) { c.Cooldown = MaxCooldown }), ""},
		{"cooldown zero", with(func(c *Config) { c.Cooldown = 0 }), "--breaker-cooldown must be from 10ms to 5m0s, got 0s"},
		{"cooldown below", with(func(c *Config) { c.Cooldown = MinCooldown - 1 }), "--breaker-cooldown must be from 10ms to 5m0s, got 9.999999ms"},
		{"cooldown above", with(func(c *Config) { c.Cooldown = MaxCooldown + 1 }), "--breaker-cooldown must be from 10ms to 5m0s, got 5m0.000000001s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrConfig))
			assert.Equal(t, "breaker: invalid config: "+tt.wantErr, err.Error())
		})
	}
}

// Probe turns an Open breaker HalfOpen before its cooldown; it changes no
// other state, and only a Success closes the breaker after it.
func TestProbeTurnsOpenHalfOpenAtOnce(t *testing.T) {
	now := time.Unix(1000, 0)
	b := New(Config{Failures: 1, Cooldown: time.Hour})
	_, changed := b.Probe(now)
	assert.False(t, changed, "closed stays closed")
	b.Failure(now)
	require.Equal(t, Open, b.State(now))
	tr, changed := b.Probe(now.Add(time.Second))
	require.True(t, changed)
	assert.Equal(t, Transition{From: Open, To: HalfOpen, At: now.Add(time.Second)}, tr)
	ok, _, _ := b.Allow(now.Add(time.Second))
	assert.True(t, ok)
	_, changed = b.Probe(now.Add(2 * time.Second))
	assert.False(t, changed, "half-open stays half-open")
	b.Success(now.Add(2 * time.Second))
	assert.Equal(t, Closed, b.State(now.Add(2*time.Second)))
}
