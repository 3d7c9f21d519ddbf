package acks

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/likesd/likesd/internal/breaker"
)

// Config tunes write acknowledgements.
type Config struct {
	// Default is the level of a write that names none (--write-acks).
	// Default 2: a 201 survives the crash of any one node. A node with no
	// seeds that never saw another member (one process on a laptop) has
	// nobody to replicate to, and uses 1 for writes that name no level,
	// unless Explicit.
	Default Level

	// Explicit says Default was chosen (--write-acks given): it then holds
	// on a node with no seeds that has not seen a peer yet, such as a seed
	// restarted without --join, which must not acknowledge alone before
	// its old peers find it again.
	Explicit bool

	// Timeout is how long a write waits for acknowledgements before it is
	// answered 202, and how long a frame may stay unacknowledged before it
	// counts as a failure of its peer (--write-timeout). Default 200ms: a
	// healthy peer acknowledges within a flush and a round trip (about
	// 1–5 ms here, docs/benchmarks.md), and a busy one within tens of
	// milliseconds; shorter answers 202 to a merely slow peer, longer makes
	// every write to a dead peer that slow until its breaker opens.
	// Bounds 1ms to 5s (the HTTP server's write deadline is 10s).
	Timeout time.Duration

	// Breaker tunes each peer's circuit breaker.
	Breaker breaker.Config
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{Default: Count(2), Timeout: 200 * time.Millisecond, Breaker: breaker.DefaultConfig()}
}

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("acks: invalid config")

// Validate reports the first invalid field by its flag.
func (c Config) Validate() error {
	switch {
	case c.Default.IsDefault():
		return fmt.Errorf("%w: --write-acks is not set", ErrConfig)
	case c.Timeout < time.Millisecond || c.Timeout > 5*time.Second:
		return fmt.Errorf("%w: --write-timeout must be from 1ms to 5s, got %s", ErrConfig, c.Timeout)
	}
	return c.Breaker.Validate()
}

// Result is how a write ended: Replicas held it when it was answered
// (this node included), and Want were asked for. Replicas >= Want means
// acknowledged (201/200); fewer means stored but not yet replicated (202).
type Result struct {
	Replicas int
	Want     int
}

// Met reports whether the write reached its level.
func (r Result) Met() bool { return r.Replicas >= r.Want }

// Released is a waiter whose outcome is decided.
type Released struct {
	ID     uint64
	Result Result
}

// PeerTransition is a peer's breaker changing state; the driver logs it.
type PeerTransition struct {
	Peer string
	breaker.Transition
}

// Tracker is the accounting of this node's writes: which peers hold which
// of its likes, whose write is released, and each peer's breaker. It is a
// value fed with events and the time; it does no I/O and holds no lock.
type Tracker struct {
	cfg      Config
	members  map[string]bool // reachable by membership: alive or suspect
	lastTick time.Time
	peers    map[string]*peerState
	bySeq    map[uint64]*waiter
	byID     map[uint64]*waiter
	lastID   uint64

	released    []Released
	transitions []PeerTransition
}

type peerState struct {
	br breaker.Breaker
	// unacked are frames sent to the peer and not yet acknowledged, oldest
	// first: the one signal that tells a stopped peer (its kernel still
	// takes our TCP sends) from a live one.
	unacked []span
	// lastExpiry is when Tick last counted a failure for unacked frames,
	// lastAck when the peer last acknowledged anything.
	lastExpiry, lastAck time.Time
}

type span struct {
	first, last uint64
	at          time.Time
}

type waiter struct {
	id    uint64
	seqs  []uint64 // sorted, distinct
	want  int      // replicas, this node included
	peers map[string]*peerAcks
	full  int // peers that acknowledged every seq
}

type peerAcks struct {
	acked []bool // by index in seqs
	count int
	gone  bool // left, or its breaker opened: no longer waited for
}

// New returns a tracker with no members.
func New(cfg Config) *Tracker {
	return &Tracker{
		cfg: cfg, members: map[string]bool{}, peers: map[string]*peerState{},
		bySeq: map[uint64]*waiter{}, byID: map[uint64]*waiter{},
	}
}

func (t *Tracker) peer(name string) *peerState {
	p, ok := t.peers[name]
	if !ok {
		p = &peerState{br: breaker.New(t.cfg.Breaker)}
		t.peers[name] = p
	}
	return p
}

// SetMembers says which peers are members (alive or suspect), and which
// others the fast path still sends to (retain: members declared dead a
// moment ago). A waiter stops waiting for a peer that is not a member; the
// breaker of a peer in neither list is forgotten.
func (t *Tracker) SetMembers(names, retain []string, now time.Time) {
	clear(t.members)
	for _, n := range names {
		t.members[n] = true
	}
	keep := make(map[string]bool, len(retain))
	for _, n := range retain {
		keep[n] = true
	}
	for name := range t.peers {
		if !t.members[name] && !keep[name] {
			delete(t.peers, name)
		}
	}
	for _, w := range t.sortedWaiters() {
		for name, pa := range w.peers {
			if !t.members[name] && !pa.gone {
				pa.gone = true
			}
		}
		t.check(w)
	}
}

// Register starts waiting for seqs (this node's dots, just logged) to
// reach level l. clustered is false on a node with no seeds that never
// saw another member. When no wait is needed (w=1, or no peer to wait
// for) it returns the Result and done; otherwise the waiter's id, and the
// Result comes later from Take or Cancel.
func (t *Tracker) Register(seqs []uint64, l Level, clustered bool, now time.Time) (id uint64, r Result, done bool) {
	if l.IsDefault() {
		l = t.cfg.Default
		if !clustered {
			l = One
		}
	}
	eligible := t.Eligible(now)
	want := l.Want(1+len(eligible), clustered)
	if want <= 1 || len(eligible) == 0 || len(seqs) == 0 {
		return 0, Result{Replicas: 1, Want: want}, true
	}
	t.lastID++
	w := &waiter{id: t.lastID, seqs: slices.Clone(seqs), want: want, peers: make(map[string]*peerAcks, len(eligible))}
	slices.Sort(w.seqs)
	w.seqs = slices.Compact(w.seqs)
	for _, name := range eligible {
		w.peers[name] = &peerAcks{acked: make([]bool, len(w.seqs))}
	}
	for _, s := range w.seqs {
		t.bySeq[s] = w
	}
	t.byID[w.id] = w
	return w.id, Result{Replicas: 1, Want: want}, false
}

// Want is the replicas level l asks for now: what Register would wait for.
func (t *Tracker) Want(l Level, clustered bool, now time.Time) int {
	if l.IsDefault() {
		l = t.cfg.Default
		if !clustered {
			l = One
		}
	}
	n := 0
	for name := range t.members {
		if p, ok := t.peers[name]; ok && p.br.State(now) != breaker.Closed {
			continue
		}
		n++
	}
	return l.Want(1+n, clustered)
}

// Eligible lists the members whose breaker is closed, sorted: the peers a
// write may wait for. A half-open peer gets probe frames but is not waited
// for until an ack closes its breaker, so a peer that is still dead costs
// no write a timeout at every cool-down.
func (t *Tracker) Eligible(now time.Time) []string {
	var out []string
	for name := range t.members {
		if p, ok := t.peers[name]; ok && p.br.State(now) != breaker.Closed {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Cancel ends a waiter that is still waiting (its write timed out) and
// returns how far it got; ok is false for an id already released.
func (t *Tracker) Cancel(id uint64) (r Result, ok bool) {
	w, ok := t.byID[id]
	if !ok {
		return Result{}, false
	}
	t.remove(w)
	return w.result(), true
}

// Allow reports whether the fast path may send to peer: its breaker is not
// open (an open one that cooled down lets batches through, half-open).
func (t *Tracker) Allow(peer string, now time.Time) bool {
	p := t.peer(peer)
	ok, tr, changed := p.br.Allow(now)
	if changed {
		t.transitions = append(t.transitions, PeerTransition{Peer: peer, Transition: tr})
	}
	return ok
}

// Sent records a frame of this node's likes first..last queued to peer.
func (t *Tracker) Sent(peer string, first, last uint64, now time.Time) {
	p := t.peer(peer)
	p.unacked = append(p.unacked, span{first: first, last: last, at: now})
}

// SendFailed records that a send to peer failed (a refused or timed-out
// connection).
func (t *Tracker) SendFailed(peer string, now time.Time) { t.failure(peer, now) }

// Answered records that peer answered a ping after a failed send: it is
// reachable again, so an open breaker turns half-open at once and the next
// frame probes it; its ack closes the breaker.
func (t *Tracker) Answered(peer string, now time.Time) {
	if tr, changed := t.peer(peer).br.Probe(now); changed {
		t.transitions = append(t.transitions, PeerTransition{Peer: peer, Transition: tr})
	}
}

// Acked records that peer holds this node's likes first..last.
func (t *Tracker) Acked(peer string, first, last uint64, now time.Time) {
	if last < first {
		return
	}
	p := t.peer(peer)
	p.lastAck = now
	if tr, changed := p.br.Success(now); changed {
		t.transitions = append(t.transitions, PeerTransition{Peer: peer, Transition: tr})
	}
	p.unacked = slices.DeleteFunc(p.unacked, func(s span) bool { return s.first >= first && s.last <= last })
	mark := func(w *waiter, s uint64) {
		pa := w.peers[peer]
		if pa == nil || pa.gone {
			return
		}
		i, found := slices.BinarySearch(w.seqs, s)
		if !found || pa.acked[i] {
			return // a duplicate ack
		}
		pa.acked[i] = true
		pa.count++
		if pa.count == len(w.seqs) {
			w.full++
			t.check(w)
		}
	}
	if last-first < uint64(len(t.bySeq)) {
		for s := first; ; s++ {
			if w, ok := t.bySeq[s]; ok {
				mark(w, s)
			}
			if s == last {
				break
			}
		}
		return
	}
	for _, w := range t.sortedWaiters() {
		lo, _ := slices.BinarySearch(w.seqs, first)
		for i := lo; i < len(w.seqs) && w.seqs[i] <= last; i++ {
			if t.byID[w.id] == nil {
				break // released by an earlier seq
			}
			mark(w, w.seqs[i])
		}
	}
}

// Tick counts a failure for a peer whose oldest unacknowledged frame is
// older than Timeout and that acknowledged nothing for as long, and
// forgets its expired frames: at most one failure
// per peer per Timeout, so opening a breaker takes Failures timeouts of
// silence, not a burst of frames lost to one stall. A tick that comes more
// than stallAfter after the last one counts nothing: this node stalled (a
// starved CPU, a GC pause), not necessarily the peer.
func (t *Tracker) Tick(now time.Time) {
	stallAfter := max(t.cfg.Timeout/2, 50*time.Millisecond)
	stalled := !t.lastTick.IsZero() && now.Sub(t.lastTick) > stallAfter
	t.lastTick = now
	names := make([]string, 0, len(t.peers))
	for name := range t.peers {
		names = append(names, name)
	}
	slices.Sort(names) // deterministic order of transitions
	for _, name := range names {
		p := t.peers[name]
		if len(p.unacked) == 0 || now.Sub(p.unacked[0].at) < t.cfg.Timeout {
			continue
		}
		p.unacked = slices.DeleteFunc(p.unacked, func(s span) bool { return now.Sub(s.at) >= t.cfg.Timeout })
		// A peer that acknowledged something within the timeout is slow
		// (its frames queue behind a bulk import), not silent.
		if stalled || now.Sub(p.lastExpiry) < t.cfg.Timeout || now.Sub(p.lastAck) < t.cfg.Timeout {
			continue
		}
		p.lastExpiry = now
		t.failure(name, now)
	}
}

func (t *Tracker) failure(peer string, now time.Time) {
	p := t.peer(peer)
	if tr, changed := p.br.Failure(now); changed {
		t.transitions = append(t.transitions, PeerTransition{Peer: peer, Transition: tr})
	}
	if p.br.State(now) != breaker.Open {
		return
	}
	// An open peer is not waited for and gets nothing: the half-open probe
	// tells when it answers again.
	p.unacked = nil
	for _, w := range t.sortedWaiters() {
		if pa := w.peers[peer]; pa != nil && !pa.gone && pa.count < len(w.seqs) {
			pa.gone = true
			t.check(w)
		}
	}
}

// State is peer's breaker state.
func (t *Tracker) State(peer string, now time.Time) breaker.State {
	if p, ok := t.peers[peer]; ok {
		return p.br.State(now)
	}
	return breaker.Closed
}

// Waiting is the number of writes waiting for acknowledgements.
func (t *Tracker) Waiting() int { return len(t.byID) }

// Take returns the waiters released and the breaker transitions since the
// last Take.
func (t *Tracker) Take() ([]Released, []PeerTransition) {
	r, tr := t.released, t.transitions
	t.released, t.transitions = nil, nil
	return r, tr
}

// check releases w when it has its replicas or can get no more.
func (t *Tracker) check(w *waiter) {
	if t.byID[w.id] == nil {
		return
	}
	if 1+w.full < w.want {
		for _, pa := range w.peers {
			if !pa.gone && pa.count < len(w.seqs) {
				return // still hoping for this one
			}
		}
	}
	t.remove(w)
	t.released = append(t.released, Released{ID: w.id, Result: w.result()})
}

func (t *Tracker) remove(w *waiter) {
	delete(t.byID, w.id)
	for _, s := range w.seqs {
		if t.bySeq[s] == w {
			delete(t.bySeq, s)
		}
	}
}

func (w *waiter) result() Result { return Result{Replicas: 1 + w.full, Want: w.want} }

// sortedWaiters lists the waiters by id, so iteration is deterministic.
func (t *Tracker) sortedWaiters() []*waiter {
	ws := make([]*waiter, 0, len(t.byID))
	for _, w := range t.byID {
		ws = append(ws, w)
	}
	slices.SortFunc(ws, func(a, b *waiter) int { return cmp.Compare(a.id, b.id) })
	return ws
}
