package acks

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
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
	// Bounds MinTimeout to MaxTimeout: 1ms to 5s.
	Timeout time.Duration
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{Default: Count(2), Timeout: 200 * time.Millisecond}
}

// MinTimeout and MaxTimeout bound Config.Timeout (--write-timeout; the
// HTTP server's write deadline is 10s). Validate checks them, and
// cmd/likesd's flag takes its bounds from here. MaxLevel bounds Default.
const (
	MinTimeout = time.Millisecond
	MaxTimeout = 5 * time.Second
)

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("acks: invalid config")

// Validate reports the first invalid field by its flag.
func (c Config) Validate() error {
	switch {
	case c.Default.IsDefault():
		return fmt.Errorf("%w: --write-acks is not set", ErrConfig)
	case c.Timeout < MinTimeout || c.Timeout > MaxTimeout:
		return fmt.Errorf("%w: --write-timeout must be from %s to %s, got %s", ErrConfig, MinTimeout, MaxTimeout, c.Timeout)
	}
	return nil
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

// Tracker is the accounting of this node's writes: which peers hold which
// of its likes, whose write is released, and each peer's breaker. It is a
// value fed with events and the time; it does no I/O and holds no lock.
type Tracker struct {
	cfg     Config
	members map[string]bool // reachable by membership: alive or suspect
	bySeq   map[uint64]*waiter
	byID    map[uint64]*waiter
	lastID  uint64

	released []Released
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
		cfg: cfg, members: map[string]bool{},
		bySeq: map[uint64]*waiter{}, byID: map[uint64]*waiter{},
	}
}

// SetMembers says which peers are members (alive or suspect): a waiter
// stops waiting for a peer that is not one.
func (t *Tracker) SetMembers(names []string) {
	clear(t.members)
	for _, n := range names {
		t.members[n] = true
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
// saw another member; eligible are the peers the write may wait for (the
// link's: members whose breaker is closed). When no wait is needed (w=1,
// or no peer to wait for) it returns the Result and done; otherwise the
// waiter's id, and the Result comes later from Take or Cancel.
func (t *Tracker) Register(seqs []uint64, l Level, clustered bool, eligible []string) (id uint64, r Result, done bool) {
	want := t.Want(l, clustered, len(eligible))
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

// Want is the replicas level l asks for with eligible peers: what
// Register would wait for.
func (t *Tracker) Want(l Level, clustered bool, eligible int) int {
	if l.IsDefault() {
		l = t.cfg.Default
		if !clustered {
			l = One
		}
	}
	return l.Want(1+eligible, clustered)
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

// Acked records that peer holds this node's likes first..last.
func (t *Tracker) Acked(peer string, first, last uint64) {
	if last < first {
		return
	}
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

// Gone says peer's breaker opened: no waiter waits for it any more.
func (t *Tracker) Gone(peer string) {
	for _, w := range t.sortedWaiters() {
		if pa := w.peers[peer]; pa != nil && !pa.gone && pa.count < len(w.seqs) {
			pa.gone = true
			t.check(w)
		}
	}
}

// Waiting is the number of writes waiting for acknowledgements.
func (t *Tracker) Waiting() int { return len(t.byID) }

// Take returns the waiters released since the last Take.
func (t *Tracker) Take() []Released {
	r := t.released
	t.released = nil
	return r
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
