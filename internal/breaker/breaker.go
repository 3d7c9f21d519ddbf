package breaker

import (
	"fmt"
	"time"
)

// State is where a Breaker stands.
type State uint8

const (
	// Closed lets every send through and counts consecutive failures.
	Closed State = iota
	// Open holds sends back until Cooldown has passed since it opened.
	Open
	// HalfOpen lets sends through as probes; the first result decides.
	HalfOpen
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Transition is a change of state, returned so the caller logs it once.
// From is never To.
type Transition struct {
	From, To State
	At       time.Time
}

// Breaker is one peer's circuit breaker. It is a value with no lock: the
// caller serialises calls. The zero Breaker is not usable; call New.
type Breaker struct {
	cfg Config
	// state is the state as last reported in a Transition: an Open breaker
	// whose cooldown has passed stays Open here until Allow turns it
	// HalfOpen, so that the reported Transitions form a path.
	state State
	// failures counts consecutive failures since the last success, in
	// every state; only in Closed does it decide anything.
	failures int
	// openedAt is when the breaker last opened or a failed probe restarted
	// its cooldown. Meaningful only while state is Open.
	openedAt time.Time
}

// New returns a closed breaker. cfg should have passed Validate; New does
// not check it again because flags are validated where they are parsed.
func New(cfg Config) Breaker {
	return Breaker{cfg: cfg, state: Closed}
}

// State reports the state at now without changing anything: an Open
// breaker whose cooldown has passed reads as HalfOpen.
func (b *Breaker) State(now time.Time) State {
	if b.state == Open && b.cooled(now) {
		return HalfOpen
	}
	return b.state
}

// Allow reports whether a send to the peer may go ahead at now. Closed and
// HalfOpen allow. Open refuses until Cooldown has passed since it opened;
// then it turns HalfOpen (changed is true, t says so) and allows.
func (b *Breaker) Allow(now time.Time) (ok bool, t Transition, changed bool) {
	switch {
	case b.state != Open:
		return true, Transition{}, false
	case !b.cooled(now):
		return false, Transition{}, false
	}
	t, changed = b.move(HalfOpen, now)
	return true, t, changed
}

// Success records that the peer answered (an ack arrived). It resets the
// failure count and closes the breaker from any state, including Open
// still cooling down: an answer proves the peer is there (see the package
// doc for late acks).
func (b *Breaker) Success(now time.Time) (Transition, bool) {
	b.failures = 0
	return b.move(Closed, now)
}

// Probe records that the peer answered a ping after a failed send: an Open
// breaker turns HalfOpen at once, so the next send probes the peer without
// waiting out the cooldown. Only an ack (Success) closes it: a peer that
// answers pings but acknowledges nothing must keep costing no waits.
func (b *Breaker) Probe(now time.Time) (Transition, bool) {
	if b.state != Open {
		return Transition{}, false
	}
	return b.move(HalfOpen, now)
}

// Failure records a failed send or a frame not acknowledged in time.
// Closed: the Failures-th consecutive failure opens the breaker. HalfOpen,
// or Open whose cooldown has passed: the probe failed, so the breaker
// (re)opens and its cooldown restarts at now; an Open breaker was already
// reported Open, so that restart is not a Transition. Open and cooling
// down: only the count changes.
func (b *Breaker) Failure(now time.Time) (Transition, bool) {
	b.failures++
	switch b.state {
	case Closed:
		if b.failures < b.cfg.Failures {
			return Transition{}, false
		}
	case Open:
		if !b.cooled(now) {
			return Transition{}, false
		}
	}
	b.openedAt = now
	return b.move(Open, now)
}

// Failures returns the consecutive failures counted since the last
// success. It keeps counting while the breaker is open, for logs and
// metrics.
func (b *Breaker) Failures() int { return b.failures }

// cooled reports whether Cooldown has passed at now since the breaker
// opened. A now before openedAt (a clock that stepped back) is cooling.
func (b *Breaker) cooled(now time.Time) bool {
	return now.Sub(b.openedAt) >= b.cfg.Cooldown
}

// move sets the state to to and reports the Transition, if it is one.
func (b *Breaker) move(to State, now time.Time) (Transition, bool) {
	if b.state == to {
		return Transition{}, false
	}
	t := Transition{From: b.state, To: to, At: now}
	b.state = to
	return t, true
}
