package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/breaker"
	"github.com/likesd/likesd/internal/link"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/vclock"
)

// writes carries out acks.Tracker and link.Machine: it logs the likes of
// a write and registers its waiter atomically (an ack may come back before
// the writer would otherwise have registered), releases waiters, feeds the
// links with frames, sends, probes and acks, and ticks them. One mutex
// guards both; no network call is made under it.
type writes struct {
	writesDeps // set by newWrites, read-only after

	// mu guards tr, lk, waiting, held and linksDone.
	mu      sync.Mutex
	tr      *acks.Tracker
	lk      *link.Machine
	waiting map[uint64]chan acks.Result // by waiter id
	held    heldLikes                   // repeats.go
	// carryMu orders the links' actions: taken before mu is released, so
	// actions are carried out in the order the machine gave them.
	carryMu sync.Mutex
	// linksDone is closed once the links closed at shutdown all ended.
	linksDone chan struct{}

	stats struct {
		met, accepted, abandoned, acksSent, acksStreamed, acksReceived, ackErrors, opened atomic.Uint64
		notDurable, acksRefused                                                           atomic.Uint64
	}
}

// writesDeps is what writes takes from the node, which wires it in New.
// carry and notes run after w.mu is released (carry under carryMu, in the
// order the machine gave the actions), view under w.mu (the member
// table's lock is a leaf), and urge never blocks.
type writesDeps struct {
	log     zerolog.Logger
	origin  uint64                                                                 // this node's origin: acks of others' likes are not ours
	timeout time.Duration                                                          // Config.Writes.Timeout
	carry   func(acts []link.Action)                                               // Node.carry
	notes   func(acts []link.Action)                                               // Node.logNotes
	view    func() (members []string, targets []link.Target, processes []memberID) // Node.memberView
	urge    func(peer string)                                                      // syncDriver.urge: repair a peer whose breaker closed
}

func newWrites(cfg Config, d writesDeps) *writes {
	return &writes{
		writesDeps: d,
		tr:         acks.New(cfg.Writes), lk: link.New(cfg.linkConfig()),
		waiting: map[uint64]chan acks.Result{}, held: newHeldLikes(), linksDone: make(chan struct{}),
	}
}

// Replicate logs likes this node holds for the fast path and waits, within
// ctx and the write timeout, until level is met: this node counts once
// its replica's likes are durable, each peer once it acknowledged (after
// its own sync). added[i] says whether
// likes[i] was new here: at level 1 a like that was already here is not
// sent again; at higher levels it is, and its acknowledgements count (a
// retry of a like answered 202 waits for the same guarantee), unless every
// like of the call was already here and acknowledged by as many replicas
// as the level asks now (repeats.go): then it is answered at once. The dot of
// likes[0] is returned when it was logged (Seq 0 otherwise); likes logged
// by one call have consecutive seqs.
func (n *Node) Replicate(ctx context.Context, level acks.Level, likes []store.Like, added []bool) (acks.Result, vclock.Dot) {
	w := n.writes
	explicit := n.cfg.Writes.Explicit && n.cfg.Writes.Default != acks.One
	clustered := len(n.cfg.Seeds) > 0 || explicit || (n.sync != nil && n.sync.sawPeer.Load())
	resolved := level
	if resolved.IsDefault() {
		resolved = n.cfg.Writes.Default
		if !clustered {
			resolved = acks.One
		}
	}
	log := likes
	if resolved == acks.One {
		log = make([]store.Like, 0, len(likes))
		for i, l := range likes {
			if added[i] {
				log = append(log, l)
			}
		}
	}
	now := time.Now()
	w.mu.Lock()
	if resolved != acks.One {
		if held := w.held.heldBy(likes, added); held > 0 {
			if want := w.tr.Want(resolved, clustered, w.lk.NumEligible(now)); held >= want {
				w.mu.Unlock()
				res := acks.Result{Replicas: held, Want: want}
				w.count(res)
				return res, vclock.Dot{}
			}
		}
	}
	var dot vclock.Dot
	var seqs []uint64
	if len(log) > 0 {
		first := n.logLikes(log, resolved == acks.One)
		if len(log) == len(likes) || added[0] {
			dot = vclock.Dot{Origin: n.origin, Seq: first}
		}
		seqs = make([]uint64, len(log))
		for i := range seqs {
			seqs[i] = first + uint64(i)
		}
	}
	id, res, done := w.tr.Register(seqs, resolved, clustered, w.lk.Eligible(now))
	var ch chan acks.Result
	if !done {
		ch = make(chan acks.Result, 1)
		w.waiting[id] = ch
	}
	w.mu.Unlock()
	deadline := now.Add(writeTimeout(n.cfg.Writes.Timeout, len(log)))
	if !done {
		// A waiting write has the log framed now rather than at the next
		// flush tick (flushLoop spaces such flushes by kickGap).
		n.kickFlush()
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		select {
		case res = <-ch:
		case <-timer.C:
			res = w.cancel(id, ch)
		case <-ctx.Done(): // the client went away: nobody hears this answer
			res = w.cancel(id, ch)
			w.stats.abandoned.Add(1)
			return res, dot
		}
	}
	// This node counts as a replica only once its disk holds the likes (at
	// once in memory); its sync ran while the peers were asked.
	if !n.localDurable(ctx, deadline) {
		res.Replicas--
		w.stats.notDurable.Add(1)
	}
	w.mu.Lock()
	w.held.record(log, res.Replicas)
	w.mu.Unlock()
	w.count(res)
	return res, dot
}

// expired is a context that has ended: WaitDurable with it only checks.
var expired = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// localDurable reports whether every like this node holds is durable by
// deadline: at once without a wait (or a context) when it already is.
func (n *Node) localDurable(ctx context.Context, deadline time.Time) bool {
	if n.replica.WaitDurable(expired) == nil {
		return true
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return n.replica.WaitDurable(ctx) == nil
}

// writeTimeout is how long a write of k likes waits: a bulk import's likes
// span many frames, and each peer must acknowledge every one, so it gets
// the timeout once more per 1,000 likes, up to 5s (the bound of the
// timeout itself): within the HTTP server's write deadline.
func writeTimeout(base time.Duration, k int) time.Duration {
	return min(base*time.Duration(1+k/1000), 5*time.Second)
}

func (w *writes) cancel(id uint64, ch chan acks.Result) acks.Result {
	w.mu.Lock()
	res, ok := w.tr.Cancel(id)
	delete(w.waiting, id)
	w.mu.Unlock()
	if !ok { // released meanwhile
		return <-ch
	}
	return res
}

func (w *writes) count(res acks.Result) {
	if res.Met() {
		w.stats.met.Add(1)
	} else {
		w.stats.accepted.Add(1)
	}
}

// settleLocked hands released waiters their result (w.mu is held).
func (w *writes) settleLocked() {
	for _, r := range w.tr.Take() {
		if ch, ok := w.waiting[r.ID]; ok {
			ch <- r.Result
			delete(w.waiting, r.ID)
		}
	}
}

// report logs breaker transitions (once each) and urges repair with a peer
// whose breaker closed; it runs without w.mu, so a slow log never stalls
// writes.
func (w *writes) report(transitions []link.Transition) {
	for _, t := range transitions {
		ev := w.log.Info()
		switch t.To {
		case breaker.Open:
			w.stats.opened.Add(1)
			ev = w.log.Warn()
		case breaker.Closed:
			// Likes it missed while open were not sent: repair them now.
			w.urge(t.Peer)
		}
		ev.Str("peer", t.Peer).Str("from", t.From.String()).Str("to", t.To.String()).Msg("peer breaker " + t.To.String())
	}
}

// update runs op under w.mu: a peer whose breaker opened is waited for no
// more, released waiters get their result, and after the unlock the links'
// actions are carried out, in order, and breaker transitions reported.
func (w *writes) update(op func(w *writes, now time.Time)) {
	now := time.Now()
	w.mu.Lock()
	op(w, now)
	acts, transitions := w.lk.Take()
	for _, t := range transitions {
		if t.To == breaker.Open {
			w.tr.Gone(t.Peer)
		}
	}
	w.settleLocked()
	if w.lk.Done() {
		select {
		case <-w.linksDone:
		default:
			close(w.linksDone)
		}
	}
	w.carryMu.Lock()
	w.mu.Unlock()
	w.carry(acts)
	w.carryMu.Unlock()
	// Logged holding nothing: the next update waits for carryMu holding
	// w.mu, so a log line that stalls under carryMu would stall writes.
	w.notes(acts)
	w.report(transitions)
}

func (w *writes) acked(peer string, runs []ackRun) {
	w.update(func(w *writes, now time.Time) {
		for _, r := range runs {
			if r.origin == w.origin {
				w.lk.Acked(peer, r.first, r.last(), now)
				w.tr.Acked(peer, r.first, r.last())
			}
		}
	})
}

// peer is what the links know of peer.
func (w *writes) peer(name string) link.PeerState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lk.State(name, time.Now())
}

// pending is the frames queued to peers, in backlogs or in flight.
func (w *writes) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lk.Pending()
}

// membersTick bounds how stale the tracker's member list may be.
const membersTick = 20 * time.Millisecond

// memberView is the member table as the links and the tracker take it
// (the table's lock is a leaf: it may be read under w.mu):
// members (alive or suspect), the fast path's targets, and the processes
// of members (repeats.go).
func (n *Node) memberView() (members []string, targets []link.Target, processes []memberID) {
	for _, p := range n.members.peers(stateAlive, stateSuspect) {
		members, processes = append(members, p.name), append(processes, idOf(p))
	}
	if n.cfg.FastPath == FastPathDirect {
		for _, p := range n.members.sendTargets(time.Now(), n.cfg.gossipToTheDeadTime()) {
			targets = append(targets, link.Target{Name: p.name, Addr: linkKey(p), Ref: p})
		}
	}
	return members, targets, processes
}

// run ticks the links and the tracker: membership, sends that hang, probes,
// and frames left unacknowledged.
func (w *writes) run(ctx context.Context) {
	// Membership reaches the tracker within a tick; unacknowledged frames
	// are noticed within a quarter of the timeout; a link's stall or probe
	// is due at the machine's next deadline.
	every := min(max(w.timeout/4, time.Millisecond), membersTick)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var next time.Time
		w.update(func(w *writes, now time.Time) {
			// Read under w.mu, as sendDirect does: views are applied in
			// the order they were taken.
			members, targets, processes := w.view()
			w.tr.SetMembers(members)
			w.lk.SetMembers(members, targets, now) // no targets in gossip mode
			w.lk.Tick(now)
			w.held.setMembers(processes) // under w.mu, as update runs op
			next = w.lk.NextDeadline()
		})
		d := every
		if !next.IsZero() {
			d = min(d, max(time.Until(next), time.Millisecond))
		}
		t.Reset(d)
	}
}

// kickFlush has the flush loop frame the log now: a write is waiting.
func (n *Node) kickFlush() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// acker sends acknowledgements of applied frames back to their origins:
// per destination, what accumulates while one send is in flight goes in
// the next, so acks are batched by the network's own pace and never wait
// on the applying goroutine.
type acker struct {
	// Set by New, read-only after.
	name    string // this node's name, the acks' sender
	log     zerolog.Logger
	sendAck func(to string, msg []byte) error // Node.sendAck; blocks on the network, never called under mu
	// sends is the node's WaitGroup of send goroutines (Node.sends): each
	// send loop is counted in it, so Close waits for them.
	sends *sync.WaitGroup
	// sent and errs are the node's counters (writes.stats.acksSent and
	// ackErrors), read by Stats.
	sent, errs *atomic.Uint64

	// mu guards pending, sending and stopped.
	mu      sync.Mutex
	pending map[string][]ackRun
	sending map[string]bool
	stopped bool // Close: no new sends (an ack from a late sync goes nowhere)
}

// stop makes add a no-op, so no send starts once Close waits for them.
func (a *acker) stop() {
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
}

// maxPendingRuns bounds the runs waiting for one destination; past it the
// oldest are dropped (their writes time out as 202).
const maxPendingRuns = 4096

func (a *acker) add(to string, r ackRun) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	if a.pending == nil {
		a.pending, a.sending = map[string][]ackRun{}, map[string]bool{}
	}
	runs := a.pending[to]
	if k := len(runs); k > 0 && runs[k-1].origin == r.origin && runs[k-1].first+runs[k-1].count == r.first {
		runs[k-1].count += r.count
	} else {
		runs = append(runs, r)
		if len(runs) > maxPendingRuns {
			runs = runs[1:]
			a.errs.Add(1)
		}
	}
	a.pending[to] = runs
	if !a.sending[to] {
		a.sending[to] = true
		a.sends.Add(1)
		go a.send(to)
	}
}

func (a *acker) send(to string) {
	defer a.sends.Done()
	for {
		a.mu.Lock()
		runs := a.pending[to]
		delete(a.pending, to)
		if len(runs) == 0 {
			delete(a.sending, to)
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		if err := a.sendAck(to, encodeAck(a.name, runs)); err != nil {
			a.errs.Add(1)
			a.log.Debug().Err(err).Str("peer", to).Msg("ack not sent")
			continue
		}
		a.sent.Add(1)
	}
}
