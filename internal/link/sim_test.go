package link_test

import (
	"container/heap"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/breaker"
	"github.com/likesd/likesd/internal/link"
)

// The whole write path, simulated: nodes that each drive a link.Machine
// and an acks.Tracker as internal/cluster does, on a simulated network
// (latency, cuts both ways and one way, refused and black-holed
// connections, slow links, TCP timeouts), a simulated membership view
// (alive, suspect, dead, recently dead, moved) and a simulated clock.
// Nodes are paused, restarted with their store kept, moved to a new
// address and closed. Every schedule is one seed: -sim.seed=S replays it.

// defaultSchedules is how many schedules a plain go test runs.
var defaultSchedules = 1000

var (
	simSchedules = flag.Int("sim.schedules", 0, "random schedules TestSimulation runs (0: 1000, 100 with -short, 30 under -race)")
	simSeed      = flag.Uint64("sim.seed", 0, "run only this schedule seed (0: all)")
)

// regressionSeeds are schedules that once failed; they run every time.
var regressionSeeds = []uint64{}

// faults the schedules draw from.
const (
	faultCut     = iota // two ways, black-holed or refused
	faultOneWay         // one way: frames one way, acks and probe answers the other
	faultPause          // a process stops (SIGSTOP), then resumes
	faultRestart        // a process dies and comes back, its store kept
	faultSlow           // a link's latency grows by tens to hundreds of ms
	faultBurst          // a burst of writes larger than the queue
	faultMove           // a process comes back at a new address
	faultFalse          // a node's membership calls a live peer dead for a while
	faultFlaky          // a cut that comes and goes every few hundred ms
	faultSynLoss        // connections are flushed and new ones hang; pings and open streams work
	faultKinds
)

var faultNames = [...]string{"cut", "one-way", "pause", "restart", "slow", "burst", "move", "false-death", "flaky", "syn-loss"}

type procState uint8

const (
	up procState = iota
	paused
	down
)

type cutMode uint8

const (
	open      cutMode = iota
	blackhole         // packets vanish: dials and writes hang until TCPTimeout
	refuse            // connections are refused or reset at once
)

type status uint8

const (
	alive status = iota
	suspect
	dead
)

// seen is one node's membership view of a peer.
type seen struct {
	st    status
	since time.Duration // when it was declared dead
	addr  string
}

type dot struct {
	origin int
	seq    uint64
}

type event struct {
	at  time.Duration
	seq int
	n   *simNode // the process that handles it (nil: the network)
	inc int      // n's incarnation when it was scheduled
	fn  func()
}

type events []*event

func (e events) Len() int { return len(e) }
func (e events) Less(i, j int) bool {
	if e[i].at != e[j].at {
		return e[i].at < e[j].at
	}
	return e[i].seq < e[j].seq
}
func (e events) Swap(i, j int) { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)   { *e = append(*e, x.(*event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

// simLink is the driver's side of one link: its stream, its sends.
type simLink struct {
	id        uint64
	peer      string
	addr      string
	stream    int // a connected stream's number; 0: none (the next send dials)
	sends     []*simSend
	probes    int // in flight
	forgotten bool
	lastProbe time.Duration // when the machine last asked for a probe
	capped    time.Duration // when MaxProbes were last in flight
}

// current is the send the machine has in flight on l (not abandoned).
func (l *simLink) current() *simSend {
	for _, s := range l.sends {
		if !s.abandoned {
			return s
		}
	}
	return nil
}

type simSend struct {
	id        uint64
	l         *simLink
	from      *simNode
	inc       int
	frame     link.Frame
	writing   bool // on an open stream, not a dial
	abandoned bool // the machine reset its stream and moved on
	hanging   bool // waits for the network to heal, or TCPTimeout
	decided   bool // its outcome is on its way to the machine
	missed    bool // a probe while it was in flight went unanswered
	start     time.Duration
}

type waiter struct {
	seqs []uint64
	want int
}

type simNode struct {
	i       int
	name    string
	addr    string
	inc     int // incarnation: a restart starts a new one
	state   procState
	since   time.Duration // when state last changed
	m       *link.Machine
	tr      *acks.Tracker
	store   map[dot]bool // durable: kept across restarts
	stored  int          // likes ever stored, for the check that none is forgotten
	seq     uint64       // durable too: seqs are never reused
	view    []seen       // by node index
	links   map[uint64]*simLink
	cur     map[string]*simLink // the latest link opened to each peer
	waiters map[uint64]waiter
	held    []*event      // events that reached it while paused
	tickAt  time.Duration // the ticker's next tick
	dueAt   time.Duration // a tick at the machine's NextDeadline
	closed  bool
	br      map[string]breaker.State // each peer's breaker, as its transitions say
	open    int                      // links opened and not forgotten
	listed  map[string]bool          // members and targets, as last set
	gone    bool                     // down with its host: no RST, packets vanish
	lastOf  map[uint64]uint64        // the last seq of the frame each write queued, by its first
}

type simStats struct {
	nodes, writes, likes, met, unmet, sends, sent, failed, resetHere int
	acks, probes, answered, resets, breakerResets, opens, forgets    int
	urges, moved, opened, halfOpened, closedBr, dropped, arrivals    int
	joined, skipped, maxQueued                                       int
	faults                                                           [faultKinds]int
	simDur                                                           time.Duration
}

func (a *simStats) add(b simStats) {
	a.nodes += b.nodes
	a.writes += b.writes
	a.likes += b.likes
	a.met += b.met
	a.unmet += b.unmet
	a.sends += b.sends
	a.sent += b.sent
	a.failed += b.failed
	a.resetHere += b.resetHere
	a.acks += b.acks
	a.probes += b.probes
	a.answered += b.answered
	a.resets += b.resets
	a.breakerResets += b.breakerResets
	a.opens += b.opens
	a.forgets += b.forgets
	a.urges += b.urges
	a.moved += b.moved
	a.opened += b.opened
	a.halfOpened += b.halfOpened
	a.closedBr += b.closedBr
	a.dropped += b.dropped
	a.arrivals += b.arrivals
	a.joined += b.joined
	a.skipped += b.skipped
	a.maxQueued = max(a.maxQueued, b.maxQueued)
	for k := range b.faults {
		a.faults[k] += b.faults[k]
	}
	a.simDur += b.simDur
}

// met is a write released as acknowledged at its level.
type metWrite struct {
	origin int
	seqs   []uint64
	want   int
}

type sim struct {
	t     *testing.T
	seed  uint64
	rng   *rand.Rand
	now   time.Duration
	epoch time.Time

	cfg          link.Config
	acfg         acks.Config
	tickEvery    time.Duration
	latency      time.Duration // one way, on a healthy link
	tcpTimeout   time.Duration
	probeTimeout time.Duration
	suspectAfter time.Duration
	deadAfter    time.Duration
	recentlyDead time.Duration
	pad          int // bytes a like takes in a frame

	nodes    []*simNode
	byAddr   map[string]*simNode
	oldAddr  map[string]cutMode // addresses nobody holds any more
	cut      map[[2]int]cutMode // from, to
	slow     map[[2]int]time.Duration
	falseTil map[[2]int]time.Duration // observer, peer: called dead until
	synLoss  map[[2]int]bool          // dials hang
	addrs    int

	evs      events
	evSeq    int
	writeGap time.Duration // background writes, one every writeGap on average; 0: none
	writing  bool
	stopped  bool // the schedule failed: stop everything

	st  simStats
	met []metWrite
}

func (s *sim) clock() time.Time { return s.epoch.Add(s.now) }

func (s *sim) fail(format string, args ...any) {
	s.t.Helper()
	if !s.stopped {
		s.stopped = true
		s.t.Errorf("seed %d at %s: %s", s.seed, s.now, fmt.Sprintf(format, args...))
	}
}

func (s *sim) dur(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

func newSim(t *testing.T, seed uint64) *sim {
	s := &sim{
		t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x11ad)),
		epoch:  time.Unix(1_700_000_000, 0),
		byAddr: map[string]*simNode{}, oldAddr: map[string]cutMode{},
		cut: map[[2]int]cutMode{}, slow: map[[2]int]time.Duration{}, falseTil: map[[2]int]time.Duration{},
		synLoss: map[[2]int]bool{},
	}
	c := link.DefaultConfig()
	c.Queue = []int{2, 4, 8, 16, 64}[s.rng.IntN(5)]
	c.BatchBytes = 1024 << s.rng.IntN(3)
	c.RetryInterval = s.dur(5*time.Millisecond, 100*time.Millisecond)
	c.Timeout = s.dur(40*time.Millisecond, 300*time.Millisecond)
	c.Breaker.Failures = 1 + s.rng.IntN(4)
	c.Breaker.Cooldown = s.dur(50*time.Millisecond, time.Second)
	c.Join = join
	if err := c.Validate(); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	s.cfg = c
	s.acfg = acks.DefaultConfig()
	s.acfg.Timeout = c.Timeout
	s.tickEvery = min(c.Timeout/4, 20*time.Millisecond)
	s.latency = s.dur(100*time.Microsecond, 2*time.Millisecond)
	s.tcpTimeout = []time.Duration{300 * time.Millisecond, time.Second, 3 * time.Second}[s.rng.IntN(3)]
	s.probeTimeout = c.RetryInterval * time.Duration(1+s.rng.IntN(40))
	s.suspectAfter = s.dur(100*time.Millisecond, 500*time.Millisecond)
	s.deadAfter = s.suspectAfter + s.dur(200*time.Millisecond, 2*time.Second)
	s.recentlyDead = s.dur(time.Second, 5*time.Second)
	s.pad = 20 + s.rng.IntN(200)
	return s
}

// A frame's Data: origin (1 byte), first seq (8), count (4), then pad
// bytes a like. join joins two frames of adjacent seqs of one origin.
func encode(origin int, first uint64, count, pad int) []byte {
	b := make([]byte, 13+count*pad)
	b[0] = byte(origin)
	binary.BigEndian.PutUint64(b[1:], first)
	binary.BigEndian.PutUint32(b[9:], uint32(count))
	return b
}

func decode(b []byte) (origin int, first uint64, count int) {
	return int(b[0]), binary.BigEndian.Uint64(b[1:]), int(binary.BigEndian.Uint32(b[9:]))
}

func join(a, b []byte, limit int) ([]byte, bool) {
	ao, af, ac := decode(a)
	bo, bf, bc := decode(b)
	if ao != bo || af+uint64(ac) != bf || len(a)+len(b)-13 > limit {
		return nil, false
	}
	j := make([]byte, len(a)+len(b)-13)
	copy(j, a)
	binary.BigEndian.PutUint32(j[9:], uint32(ac+bc))
	return j, true
}

// after schedules fn in d, handled by n (nil: by the network). An event
// for a process that died or restarted since is lost; one for a paused
// process waits until it resumes.
func (s *sim) after(d time.Duration, n *simNode, fn func()) {
	s.evSeq++
	e := &event{at: s.now + d, seq: s.evSeq, n: n, fn: fn}
	if n != nil {
		e.inc = n.inc
	}
	heap.Push(&s.evs, e)
}

func (s *sim) run(d time.Duration) {
	end := s.now + d
	for len(s.evs) > 0 && s.evs[0].at <= end && !s.stopped {
		e := heap.Pop(&s.evs).(*event)
		s.now = e.at
		if n := e.n; n != nil {
			if n.inc != e.inc || n.state == down {
				continue
			}
			if n.state == paused {
				n.held = append(n.held, e)
				continue
			}
		}
		e.fn()
	}
	s.now = max(s.now, end)
}

func (s *sim) lat(a, b int) time.Duration {
	d := s.latency + s.slow[[2]int{a, b}]
	return d + time.Duration(s.rng.Int64N(int64(d)/4+1))
}

// start brings n up at its address with a new machine and tracker; its
// store and seqs are what it had.
func (s *sim) start(n *simNode) {
	n.inc++
	n.state, n.since, n.closed = up, s.now, false
	n.m = link.New(s.cfg)
	n.tr = acks.New(s.acfg)
	n.links, n.cur, n.waiters, n.held = map[uint64]*simLink{}, map[string]*simLink{}, map[uint64]waiter{}, nil
	n.br, n.open = map[string]breaker.State{}, 0
	s.byAddr[n.addr] = n
	delete(s.oldAddr, n.addr)
	for _, o := range s.nodes { // a write hung on a connection to its last life is reset
		for _, id := range sortedIDs(o.links) {
			for _, x := range o.links[id].sends {
				if x.hanging && x.writing && x.l.addr == n.addr && o.state != down {
					s.decide(x, link.Failed, s.dur(100*time.Microsecond, time.Millisecond))
				}
			}
		}
	}
	for j, p := range s.nodes { // it joins: it learns the current view
		n.view[j] = s.truth(n.i, p)
	}
	s.setMembers(n)
	inc := n.inc
	var tick func()
	tick = func() { // the driver's ticker: every tickEvery
		if n.inc != inc || s.stopped {
			return
		}
		n.tickAt = s.now + s.tickEvery
		s.after(s.tickEvery, nil, tick)
		if n.state == up {
			n.m.Tick(s.clock())
			s.glue(n)
		}
	}
	n.tickAt = s.now + s.tickEvery
	s.after(s.tickEvery, nil, tick)
}

// truth is what o's membership would say of p now.
func (s *sim) truth(o int, p *simNode) seen {
	if until, ok := s.falseTil[[2]int{o, p.i}]; ok && s.now < until {
		return seen{st: dead, since: s.now, addr: s.nodes[o].view[p.i].addr}
	}
	if p.state == up {
		return seen{st: alive, addr: p.addr}
	}
	v := s.nodes[o].view[p.i]
	switch away := s.now - p.since; {
	case away >= s.deadAfter:
		return seen{st: dead, since: p.since + s.deadAfter, addr: v.addr}
	case away >= s.suspectAfter:
		return seen{st: suspect, addr: v.addr}
	}
	return seen{st: alive, addr: v.addr}
}

// gossip lets each running node's view catch up with the truth, some
// sooner than others, every 100ms.
func (s *sim) gossip() {
	if s.stopped {
		return
	}
	s.after(100*time.Millisecond, nil, s.gossip)
	for _, o := range s.nodes {
		if o.state != up {
			continue
		}
		changed := false
		for _, p := range s.nodes {
			if p == o {
				continue
			}
			v, tv := o.view[p.i], s.truth(o.i, p)
			if tv.st == dead && v.st == dead {
				tv.since = v.since
			}
			if v != tv && s.rng.IntN(2) == 0 {
				o.view[p.i] = tv
				changed = true
			}
		}
		if changed {
			s.setMembers(o)
		}
	}
}

func (s *sim) setMembers(n *simNode) {
	var members []string
	var targets []link.Target
	n.listed = map[string]bool{}
	for _, p := range s.nodes {
		v := n.view[p.i]
		if p == n || v.st == dead && s.now-v.since >= s.recentlyDead {
			continue
		}
		n.listed[p.name] = true
		if v.st != dead {
			members = append(members, p.name)
		}
		targets = append(targets, link.Target{Name: p.name, Addr: v.addr})
	}
	n.tr.SetMembers(members)
	n.m.SetMembers(members, targets, s.clock())
	s.glue(n)
	for _, p := range s.nodes {
		if n.m.State(p.name, s.clock()) == (link.PeerState{Breaker: breaker.Closed, Phase: "none"}) {
			delete(n.br, p.name) // forgotten whole, or closed anyway
		}
	}
}

// glue carries out what n's machine asks, as the cluster's driver will:
// actions to the network, a breaker that opened to the tracker, released
// writes to the checks.
func (s *sim) glue(n *simNode) {
	acts, trs := n.m.Take()
	for _, x := range trs {
		if from := n.br[x.Peer]; x.From != from || x.From == x.To {
			s.fail("%s: %s's breaker went %s to %s, was %s", n.name, x.Peer, x.From, x.To, from)
		}
		n.br[x.Peer] = x.To
		for _, id := range sortedIDs(n.links) { // every stream to it is reset
			l := n.links[id]
			if x.To == breaker.Open && l.peer == x.Peer && !l.forgotten && l.current() != nil &&
				!slices.ContainsFunc(acts, func(a link.Action) bool { return a.Kind == link.Reset && a.Breaker && a.Link == l.id }) {
				s.fail("%s: %s's breaker opened with send %d in flight on link %d, and no reset (closed %v, state %+v)",
					n.name, x.Peer, l.current().id, l.id, n.closed, n.m.State(x.Peer, s.clock()))
			}
		}
		switch x.To {
		case breaker.Open:
			s.st.opened++
			n.tr.Gone(x.Peer)
		case breaker.HalfOpen:
			s.st.halfOpened++
		case breaker.Closed:
			s.st.closedBr++
		}
	}
	for _, a := range acts {
		s.perform(n, a)
	}
	for _, r := range n.tr.Take() {
		w, ok := n.waiters[r.ID]
		if !ok {
			s.fail("%s: waiter %d released twice or unknown", n.name, r.ID)
			return
		}
		delete(n.waiters, r.ID)
		s.released(n, w.seqs, r.Result)
	}
	s.check(n)
	if d := n.m.NextDeadline(); !d.IsZero() {
		at := max(d.Sub(s.epoch), s.now)
		if at < n.tickAt && at != n.dueAt {
			n.dueAt = at
			inc := n.inc
			s.after(at-s.now, n, func() {
				if n.inc == inc {
					n.m.Tick(s.clock())
					s.glue(n)
				}
			})
		}
	}
}

func (s *sim) perform(n *simNode, a link.Action) {
	switch a.Kind {
	case link.Open:
		if n.links[a.Link] != nil {
			s.fail("%s: link %d opened twice", n.name, a.Link)
			return
		}
		l := &simLink{id: a.Link, peer: a.Peer, addr: a.Addr}
		n.links[a.Link], n.cur[a.Peer] = l, l
		n.open++
		s.st.opens++
	case link.Send:
		l := n.links[a.Link]
		switch {
		case l == nil || l.forgotten:
			s.fail("%s: send %d on link %d, not open", n.name, a.ID, a.Link)
			return
		case l.peer != a.Peer:
			s.fail("%s: send to %s on %s's link", n.name, a.Peer, l.peer)
			return
		case l.current() != nil:
			s.fail("%s: send %d to %s while send %d is in flight and not abandoned", n.name, a.ID, a.Peer, l.current().id)
			return
		}
		if a.Frame.Count > 0 {
			o, f, c := decode(a.Frame.Data)
			if o != n.i || f != a.Frame.First || f+uint64(c)-1 != a.Frame.Last || c != a.Frame.Count {
				s.fail("%s: frame %+v says origin %d seqs %d+%d", n.name, a.Frame, o, f, c)
				return
			}
		}
		if len(a.Frame.Data) > s.cfg.BatchBytes {
			s.fail("%s: a send of %d bytes, over BatchBytes %d", n.name, len(a.Frame.Data), s.cfg.BatchBytes)
		}
		snd := &simSend{id: a.ID, l: l, from: n, inc: n.inc, frame: a.Frame, writing: l.stream != 0, start: s.now}
		l.sends = append(l.sends, snd)
		s.st.sends++
		if a.Frame.Count > 0 && a.Frame.Last != n.lastOf[a.Frame.First] {
			s.st.joined++
		}
		s.startSend(snd)
	case link.Probe:
		l := n.links[a.Link]
		if l == nil || l.forgotten {
			s.fail("%s: probe on link %d, not open", n.name, a.Link)
			return
		}
		l.probes++
		l.lastProbe = s.now
		s.st.probes++
		if l.probes > link.MaxProbes {
			s.fail("%s: %d probes of %s in flight", n.name, l.probes, l.peer)
		}
		if l.probes == link.MaxProbes {
			l.capped = s.now
		}
		under := l.current()
		to := s.byAddr[l.addr]
		ok := to != nil && to.state == up && s.cut[[2]int{n.i, to.i}] == open && s.cut[[2]int{to.i, n.i}] == open
		d := s.probeTimeout
		if ok {
			d = s.lat(n.i, to.i) + s.lat(to.i, n.i)
			s.st.answered++
		}
		id := a.ID
		s.after(d, n, func() {
			if l.probes == link.MaxProbes {
				l.capped = s.now
			}
			l.probes--
			c := l.current()
			if !ok && c != nil && c == under {
				c.missed = true
			}
			n.m.ProbeDone(l.peer, l.id, id, ok, c != nil && c.writing, s.clock())
			s.glue(n)
		})
	case link.Reset:
		l := n.links[a.Link]
		if l == nil {
			s.fail("%s: reset of link %d, never opened", n.name, a.Link)
			return
		}
		r := link.ResetHere
		if a.Breaker {
			r = link.Failed
			s.st.breakerResets++
		} else {
			c := l.current()
			if c == nil {
				s.fail("%s: reset of %s's link with no send to abandon", n.name, l.peer)
				return
			}
			if c.writing && !c.missed {
				s.fail("%s: a write to %s abandoned, no probe of it unanswered", n.name, l.peer)
			}
			for _, x := range l.sends {
				x.abandoned = true
			}
			s.st.resets++
		}
		// The stream goes; a write on it ends at once, a dial is left
		// to finish on its own (within TCPTimeout).
		l.stream = 0
		for _, x := range l.sends {
			if x.writing && !x.decided {
				s.decide(x, r, s.dur(0, 2*time.Millisecond))
			}
		}
	case link.Forget:
		l := n.links[a.Link]
		if l == nil || l.forgotten {
			s.fail("%s: forget of link %d, not open", n.name, a.Link)
			return
		}
		l.forgotten = true
		n.open--
		s.st.forgets++
	case link.Urge:
		s.st.urges++
	case link.Note:
		if a.Note == link.NoteMoved {
			s.st.moved++
		}
	}
}

type pathState uint8

const (
	pathOK pathState = iota
	pathHang
	pathRefused
)

// path is what a send from n to addr meets now.
func (s *sim) path(n *simNode, addr string, writing bool) (pathState, *simNode) {
	to := s.byAddr[addr]
	if to == nil {
		if s.oldAddr[addr] == blackhole {
			return pathHang, nil
		}
		return pathRefused, nil
	}
	switch c := s.cut[[2]int{n.i, to.i}]; {
	case c == blackhole, !writing && s.synLoss[[2]int{n.i, to.i}]:
		return pathHang, to
	case to.state == down && to.gone:
		return pathHang, to
	case c == refuse, to.state == down:
		return pathRefused, to
	case s.cut[[2]int{to.i, n.i}] != open:
		// Data flows, the TCP acks do not: a write fits the socket's
		// buffer and is delivered (the peer's acks are lost), a dial
		// never completes.
		if writing {
			return pathOK, to
		}
		return pathHang, to
	case to.state == paused:
		// The kernel takes a write into its buffers; a dial's handshake
		// waits for the process.
		if writing && s.rng.IntN(2) == 0 {
			return pathOK, to
		}
		return pathHang, to
	}
	return pathOK, to
}

func (s *sim) startSend(x *simSend) {
	switch p, to := s.path(x.from, x.l.addr, x.writing); p {
	case pathOK:
		s.proceed(x, to, 0)
	case pathRefused:
		if x.writing {
			x.l.stream = 0
		}
		s.decide(x, link.Failed, s.dur(100*time.Microsecond, time.Millisecond))
	case pathHang:
		x.hanging = true
		s.after(s.tcpTimeout, nil, func() {
			if x.hanging && !x.decided {
				x.hanging = false
				if x.writing {
					x.l.stream = 0
				}
				s.decide(x, link.Failed, 0)
			}
		})
	}
}

// proceed carries x to to: a dial (two round trips: connect and
// handshake), the write, then the frame on the wire.
func (s *sim) proceed(x *simSend, to *simNode, wait time.Duration) {
	from := x.from
	d := wait + s.dur(0, 200*time.Microsecond)
	if !x.writing {
		d += 2 * (s.lat(from.i, to.i) + s.lat(to.i, from.i))
	}
	if sl := s.slow[[2]int{from.i, to.i}]; sl > 0 {
		d += s.dur(0, 2*sl) // a full window
	}
	toInc := to.inc
	s.after(d, nil, func() {
		if x.decided {
			return // reset meanwhile: the rest of the frame never left
		}
		if !x.writing && x.l.stream == 0 && !x.l.forgotten {
			s.addrs++
			x.l.stream = s.addrs
		}
		frame, origin, originInc := x.frame, from, x.inc
		s.after(s.lat(from.i, to.i), to, func() {
			if to.inc != toInc {
				return // its connection died with it
			}
			s.arrive(to, origin, originInc, frame)
		})
		s.decide(x, link.Sent, 0)
	})
}

// arrive stores a frame's likes at to and acknowledges them.
func (s *sim) arrive(to, origin *simNode, originInc int, f link.Frame) {
	s.st.arrivals++
	if f.Count == 0 {
		return
	}
	o, first, count := decode(f.Data)
	for q := first; q < first+uint64(count); q++ {
		if d := (dot{o, q}); !to.store[d] {
			to.store[d] = true
			to.stored++
		}
	}
	if s.cut[[2]int{to.i, origin.i}] != open {
		return
	}
	last := first + uint64(count) - 1
	s.after(s.dur(0, time.Millisecond)+s.lat(to.i, origin.i), origin, func() {
		if origin.inc != originInc {
			return
		}
		s.st.acks++
		origin.m.Acked(to.name, first, last, s.clock())
		origin.tr.Acked(to.name, first, last)
		s.glue(origin)
	})
}

// decide ends x with r, reported to its machine in d.
func (s *sim) decide(x *simSend, r link.Result, d time.Duration) {
	if x.decided {
		return
	}
	x.decided, x.hanging = true, false
	n := x.from
	s.after(d, n, func() {
		if n.inc != x.inc {
			return
		}
		i := slices.Index(x.l.sends, x)
		if i < 0 {
			s.fail("%s: send %d answered twice", n.name, x.id)
			return
		}
		x.l.sends = slices.Delete(x.l.sends, i, i+1)
		switch r {
		case link.Sent:
			s.st.sent++
		case link.Failed:
			s.st.failed++
		case link.ResetHere:
			s.st.resetHere++
		}
		n.m.SendDone(x.l.peer, x.l.id, x.id, r, s.clock())
		s.glue(n)
	})
}

// recheck lets sends that hang go on where the network healed, and fail
// where the peer now refuses.
func (s *sim) recheck() {
	for _, n := range s.nodes {
		if n.state == down {
			continue // its sends died with it
		}
		for _, id := range sortedIDs(n.links) {
			for _, x := range n.links[id].sends {
				if !x.hanging || x.decided {
					continue
				}
				switch p, to := s.path(n, x.l.addr, x.writing); p {
				case pathOK:
					x.hanging = false
					s.proceed(x, to, s.dur(0, 200*time.Millisecond)) // a retransmission
				case pathRefused:
					s.decide(x, link.Failed, s.dur(100*time.Microsecond, time.Millisecond))
				}
			}
		}
	}
}

func sortedIDs(m map[uint64]*simLink) []uint64 {
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// write is a client's write of a few likes at n, at level l.
func (s *sim) write(n *simNode, l acks.Level) {
	k := 1 + s.rng.IntN(4)
	seqs := make([]uint64, k)
	for i := range seqs {
		n.seq++
		seqs[i] = n.seq
		n.store[dot{n.i, n.seq}] = true
		n.stored++
	}
	s.st.writes++
	s.st.likes += k
	now := s.clock()
	var want []string
	for _, p := range s.nodes {
		if v := n.view[p.i]; p != n && v.st != dead && n.br[p.name] == breaker.Closed {
			want = append(want, p.name)
		}
	}
	eligible := n.m.Eligible(now)
	if !slices.Equal(eligible, want) {
		s.fail("%s: eligible %v, members with a closed breaker %v", n.name, eligible, want)
	}
	if k := n.m.NumEligible(now); k != len(eligible) {
		s.fail("%s: NumEligible %d, Eligible %v", n.name, k, eligible)
	}
	id, r, done := n.tr.Register(seqs, l, true, eligible)
	if done {
		s.released(n, seqs, r)
	} else {
		n.waiters[id] = waiter{seqs: seqs, want: r.Want}
		s.after(s.acfg.Timeout, n, func() { // the write's timeout: 202
			if r, ok := n.tr.Cancel(id); ok {
				w := n.waiters[id]
				delete(n.waiters, id)
				s.released(n, w.seqs, r)
			}
		})
	}
	n.lastOf[seqs[0]] = seqs[k-1]
	n.m.Queue(link.Frame{Data: encode(n.i, seqs[0], k, s.pad), First: seqs[0], Last: seqs[k-1], Count: k}, now)
	s.glue(n)
}

var levels = []acks.Level{acks.One, acks.Count(2), acks.Count(3), acks.All, acks.Quorum, {}}

// writer writes at a random running node every writeGap or so.
func (s *sim) writer() {
	if s.stopped || !s.writing {
		return
	}
	s.after(s.dur(0, 2*s.writeGap), nil, s.writer)
	var ok []*simNode
	for _, n := range s.nodes {
		if n.state == up && !n.closed {
			ok = append(ok, n)
		}
	}
	if len(ok) > 0 {
		s.write(ok[s.rng.IntN(len(ok))], levels[s.rng.IntN(len(levels))])
	}
}

// holders counts the nodes holding every seq of origin's write.
func (s *sim) holders(origin int, seqs []uint64) int {
	k := 0
	for _, n := range s.nodes {
		all := true
		for _, q := range seqs {
			if !n.store[dot{origin, q}] {
				all = false
				break
			}
		}
		if all {
			k++
		}
	}
	return k
}

// released checks a write's outcome against the stores: a write answered
// as held by k replicas is held by k nodes, now.
func (s *sim) released(n *simNode, seqs []uint64, r acks.Result) {
	h := s.holders(n.i, seqs)
	if r.Replicas > h {
		s.fail("%s: write %v released with %d replicas (want %d), held by %d", n.name, seqs, r.Replicas, r.Want, h)
	}
	if r.Met() {
		s.st.met++
		s.met = append(s.met, metWrite{origin: n.i, seqs: seqs, want: r.Want})
	} else {
		s.st.unmet++
	}
}

// check holds after every step of n: bounded queues, sends and probes,
// and the machine's counts agree with what the driver sees.
func (s *sim) check(n *simNode) {
	now := s.clock()
	if n.m.Pending() < 0 {
		s.fail("%s: pending %d", n.name, n.m.Pending())
	}
	current, pending := 0, 0
	for _, p := range s.nodes {
		if p == n {
			continue
		}
		st := n.m.State(p.name, now)
		if !n.listed[p.name] && st != (link.PeerState{Breaker: breaker.Closed, Phase: "none"}) {
			s.fail("%s: %s is neither member nor target, yet %+v", n.name, p.name, st)
		}
		s.st.maxQueued = max(s.st.maxQueued, st.Queued*100/s.cfg.Queue)
		if st.Queued > 2*s.cfg.Queue || st.Inflight > 1+link.MaxAbandoned {
			s.fail("%s: %s has %d queued (bound %d), %d sends in flight", n.name, p.name, st.Queued, 2*s.cfg.Queue, st.Inflight)
		}
		if st.Phase == "none" {
			continue
		}
		l := n.cur[p.name]
		if l == nil || l.forgotten {
			s.fail("%s: %s's link is %s, the driver has none", n.name, p.name, st.Phase)
			return
		}
		current++
		if l.probes >= link.MaxProbes {
			l.capped = s.now // the machine skips a probe while so many are in flight
		}
		slack := s.cfg.RetryInterval + s.tickEvery
		switch resumed := s.now-n.since < slack; {
		case resumed:
		case st.Phase == "sending" && s.now-l.current().start > slack:
			s.fail("%s: a send to %s in flight for %s, and no probe", n.name, p.name, s.now-l.current().start)
		case (st.Phase == "stalled" || st.Phase == "down") && s.now-l.lastProbe > slack && s.now-l.capped > slack:
			s.fail("%s: %s is %s, last probed %s ago (ri %s tick %s, probes %d, capped %s, since %s state %d, next %s)", n.name, p.name, st.Phase, s.now-l.lastProbe, s.cfg.RetryInterval, s.tickEvery, l.probes, l.capped, n.since, n.state, n.m.NextDeadline().Sub(s.epoch))
		}
		if st.Inflight != len(l.sends) {
			s.fail("%s: %s has %d sends in flight, the driver %d", n.name, p.name, st.Inflight, len(l.sends))
		}
		pending += st.Queued
		if l.current() != nil {
			pending++
		}
	}
	if open := n.open; open == current && n.m.Pending() != pending || n.m.Pending() < pending {
		s.fail("%s: pending %d, queued and in flight %d (links %d, current %d)", n.name, n.m.Pending(), pending, open, current)
	}
	if n.closed && n.m.Done() != (n.open == 0) {
		s.fail("%s: closed, done %v with %d links not forgotten", n.name, n.m.Done(), n.open)
	}
}

func (s *sim) crash(n *simNode, gone bool) {
	s.retire(n)
	n.state, n.since, n.gone = down, s.now, gone
	for _, o := range s.nodes { // its connections are reset by its kernel
		for _, id := range sortedIDs(o.links) {
			l := o.links[id]
			if l.addr != n.addr {
				continue
			}
			l.stream = 0
			for _, x := range l.sends {
				if !x.decided && !gone && s.cut[[2]int{o.i, n.i}] != blackhole {
					s.decide(x, link.Failed, s.dur(100*time.Microsecond, time.Millisecond))
				}
			}
		}
	}
}

// retire adds up what n's machine did before it goes.
func (s *sim) retire(n *simNode) {
	st := n.m.Stats()
	s.st.dropped += int(st.Dropped)
	s.st.skipped += int(st.Skipped)
}

func (s *sim) pause(n *simNode) { n.state, n.since = paused, s.now }

func (s *sim) resume(n *simNode) {
	if n.state != paused {
		return
	}
	n.state, n.since = up, s.now
	held := n.held
	n.held = nil
	for _, e := range held {
		s.evSeq++
		e.at, e.seq = s.now, s.evSeq
		heap.Push(&s.evs, e)
	}
	s.recheck()
}

// heal ends every fault.
func (s *sim) heal() {
	clear(s.cut)
	clear(s.slow)
	clear(s.falseTil)
	clear(s.synLoss)
	for _, n := range s.nodes {
		switch n.state {
		case paused:
			s.resume(n)
		case down:
			s.start(n)
		}
	}
	s.recheck()
}

func (s *sim) running() []*simNode {
	var out []*simNode
	for _, n := range s.nodes {
		if n.state == up {
			out = append(out, n)
		}
	}
	return out
}

func (s *sim) pick() *simNode { return s.nodes[s.rng.IntN(len(s.nodes))] }

// schedule runs one seeded schedule and checks the invariants.
func schedule(t *testing.T, seed uint64) simStats {
	s := newSim(t, seed)
	k := 3 + s.rng.IntN(3)
	for i := range k {
		s.addrs++
		n := &simNode{i: i, name: fmt.Sprintf("n%d", i), addr: fmt.Sprintf("10.0.0.%d", s.addrs), store: map[dot]bool{}, view: make([]seen, k), lastOf: map[uint64]uint64{}}
		s.nodes = append(s.nodes, n)
	}
	for _, n := range s.nodes {
		for _, p := range s.nodes {
			n.view[p.i] = seen{addr: p.addr}
		}
	}
	for _, n := range s.nodes {
		s.start(n)
	}
	s.gossip()
	s.writeGap = s.dur(10*time.Millisecond, 100*time.Millisecond)
	s.writing = true
	s.writer()
	s.run(500 * time.Millisecond)

	for range 4 + s.rng.IntN(6) {
		if s.stopped {
			break
		}
		kind := s.rng.IntN(faultKinds)
		s.st.faults[kind]++
		hold := s.dur(200*time.Millisecond, 8*time.Second)
		a := s.pick()
		b := s.nodes[(a.i+1+s.rng.IntN(k-1))%k]
		mode := blackhole
		if s.rng.IntN(3) == 0 {
			mode = refuse
		}
		switch kind {
		case faultCut:
			// a against the rest, or against b alone
			for _, p := range s.nodes {
				if p != a && (p == b || s.rng.IntN(2) == 0) {
					s.cut[[2]int{a.i, p.i}], s.cut[[2]int{p.i, a.i}] = mode, mode
				}
			}
			s.run(hold)
			clear(s.cut)
			s.recheck()
		case faultOneWay:
			s.cut[[2]int{a.i, b.i}] = mode
			s.run(hold)
			clear(s.cut)
			s.recheck()
		case faultPause:
			s.pause(a)
			s.run(hold)
			s.resume(a)
		case faultRestart:
			s.crash(a, s.rng.IntN(2) == 0)
			s.run(hold)
			s.start(a)
		case faultSlow:
			extra := s.dur(20*time.Millisecond, 300*time.Millisecond)
			for _, p := range s.nodes {
				if p != a && (p == b || s.rng.IntN(2) == 0) {
					s.slow[[2]int{a.i, p.i}], s.slow[[2]int{p.i, a.i}] = extra, extra
				}
			}
			for range s.rng.IntN(3 * s.cfg.Queue) {
				s.write(a, levels[s.rng.IntN(len(levels))])
			}
			s.run(hold)
			clear(s.slow)
		case faultBurst:
			if s.rng.IntN(2) == 0 { // into a queue that does not move
				s.pause(b)
				s.run(s.dur(0, 2*s.cfg.RetryInterval))
			}
			for range s.cfg.Queue * (2 + s.rng.IntN(3)) {
				s.write(a, levels[s.rng.IntN(len(levels))])
			}
			s.run(hold)
			s.resume(b)
		case faultMove:
			s.crash(a, s.rng.IntN(2) == 0)
			s.run(s.dur(0, hold))
			delete(s.byAddr, a.addr)
			s.oldAddr[a.addr] = mode
			s.addrs++
			a.addr = fmt.Sprintf("10.0.0.%d", s.addrs)
			s.start(a)
			s.run(hold)
		case faultFalse:
			s.falseTil[[2]int{a.i, b.i}] = s.now + hold
			s.run(hold)
		case faultFlaky:
			// On a slow link too, maybe, with bursts: the backlog builds
			// up across outages.
			if s.rng.IntN(2) == 0 {
				extra := s.dur(5*time.Millisecond, 100*time.Millisecond)
				s.slow[[2]int{a.i, b.i}], s.slow[[2]int{b.i, a.i}] = extra, extra
			}
			bursts := s.rng.IntN(2) == 0
			for end := s.now + hold; s.now < end; {
				s.cut[[2]int{a.i, b.i}], s.cut[[2]int{b.i, a.i}] = mode, mode
				if bursts {
					for range s.cfg.Queue {
						s.write(a, levels[s.rng.IntN(len(levels))])
					}
				}
				s.run(s.dur(20*time.Millisecond, 500*time.Millisecond))
				clear(s.cut)
				s.recheck()
				s.run(s.dur(20*time.Millisecond, 500*time.Millisecond))
			}
			clear(s.slow)
		case faultSynLoss:
			// A middlebox forgets every connection of a's: the next write
			// on one is reset, and new ones hang; pings still go.
			for _, p := range s.nodes {
				if p != a && (p == b || s.rng.IntN(2) == 0) {
					s.synLoss[[2]int{a.i, p.i}], s.synLoss[[2]int{p.i, a.i}] = true, true
					for _, x := range []*simNode{a, p} {
						for _, l := range x.links {
							if l.addr == a.addr || l.addr == p.addr {
								l.stream = 0
							}
						}
					}
				}
			}
			s.run(hold)
			clear(s.synLoss)
			s.recheck()
		}
		s.run(s.dur(0, 4*time.Second))
	}
	if !s.stopped {
		s.liveness()
	}
	if !s.stopped {
		s.closeAll()
	}
	for _, n := range s.nodes {
		if n.state != down {
			s.retire(n)
		}
	}
	// Nothing a node stored is forgotten, and every write acknowledged at
	// w is still held by w nodes.
	for _, n := range s.nodes {
		if len(n.store) != n.stored {
			s.fail("%s holds %d likes, stored %d", n.name, len(n.store), n.stored)
		}
	}
	for _, w := range s.met {
		if h := s.holders(w.origin, w.seqs); h < w.want {
			s.fail("write %v of n%d acknowledged at %d is held by %d", w.seqs, w.origin, w.want, h)
		}
	}
	s.st.nodes, s.st.simDur = k, s.now
	return s.st
}

// liveness heals every fault and lets the cluster run fault-free: every
// like written then reaches every node by the fast path, every breaker
// closes, and a w=2 write at each node is acknowledged.
func (s *sim) liveness() {
	s.writing = false
	s.heal()
	s.run(s.tcpTimeout + s.cfg.Breaker.Cooldown + s.deadAfter + 2*time.Second)
	for _, n := range s.nodes { // membership has converged
		for _, p := range s.nodes {
			n.view[p.i] = s.truth(n.i, p)
		}
		s.setMembers(n)
	}
	var late []dot // written once the links had a moment to come back
	start := s.now
	for i := 0; s.now < start+2*time.Second; i++ {
		n := s.nodes[i%len(s.nodes)]
		from := n.seq + 1
		s.write(n, acks.One)
		if s.now > start+time.Second {
			for q := from; q <= n.seq; q++ {
				late = append(late, dot{n.i, q})
			}
		}
		s.run(s.dur(time.Millisecond, 20*time.Millisecond))
	}
	s.run(time.Second)
	for _, d := range late {
		for _, n := range s.nodes {
			if !n.store[d] {
				s.fail("fault-free: %s lacks n%d's like %d, written after the faults healed; %s", n.name, d.origin, d.seq, s.describe(s.nodes[d.origin]))
				return
			}
		}
	}
	now := s.clock()
	for _, n := range s.nodes {
		var others []string
		for _, p := range s.nodes {
			if p != n {
				others = append(others, p.name)
				if st := n.m.State(p.name, now); st.Breaker != breaker.Closed || st.Phase != "idle" || st.Queued != 0 {
					s.fail("fault-free: %s sees %s as %+v", n.name, p.name, st)
				}
			}
		}
		if got := n.m.Eligible(now); !slices.Equal(got, others) {
			s.fail("fault-free: %s finds %v eligible, not %v", n.name, got, others)
		}
		if n.m.Pending() != 0 {
			s.fail("fault-free: %s has %d frames pending", n.name, n.m.Pending())
		}
		met := s.st.met
		s.write(n, acks.Count(2))
		s.run(s.acfg.Timeout)
		if s.st.met != met+1 {
			s.fail("fault-free: a w=2 write at %s was not acknowledged; %s", n.name, s.describe(n))
		}
	}
}

// closeAll closes every node with frames in flight, one peer maybe
// paused meanwhile: each is done once its sends end, within TCPTimeout.
func (s *sim) closeAll() {
	var stuck *simNode
	if s.rng.IntN(2) == 0 {
		stuck = s.pick()
		s.pause(stuck)
	}
	for _, n := range s.running() {
		for range s.rng.IntN(2 * s.cfg.Queue) {
			s.write(n, levels[s.rng.IntN(len(levels))])
		}
	}
	s.run(s.dur(0, 2*s.cfg.RetryInterval))
	for _, n := range s.running() {
		n.closed = true
		n.m.Close(s.clock())
		s.glue(n)
	}
	s.run(s.tcpTimeout + time.Second)
	if stuck != nil {
		s.resume(stuck)
		stuck.closed = true
		stuck.m.Close(s.clock())
		s.glue(stuck)
		s.run(s.tcpTimeout + time.Second)
	}
	for _, n := range s.nodes {
		if !n.m.Done() {
			s.fail("%s closed %s ago and not done; %s", n.name, s.tcpTimeout+time.Second, s.describe(n))
			continue
		}
		for _, l := range n.links {
			if len(l.sends) > 0 {
				s.fail("%s: done with %d sends to %s unanswered", n.name, len(l.sends), l.peer)
			}
		}
		if n.m.Pending() != 0 {
			s.fail("%s: done with %d frames pending", n.name, n.m.Pending())
		}
	}
}

// describe is n's links, for a failure's message.
func (s *sim) describe(n *simNode) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%v) pending %d:", n.name, n.state, n.m.Pending())
	for _, p := range s.nodes {
		if p != n {
			fmt.Fprintf(&b, " %s %+v view %+v;", p.name, n.m.State(p.name, s.clock()), n.view[p.i])
		}
	}
	return b.String()
}

// TestSimulation runs seeded random schedules of the whole write path —
// link machines and ack trackers glued as the cluster glues them, on a
// simulated network, membership and clock, with cuts, pauses, restarts,
// slow links, bursts, moves and false deaths — and checks after every
// step: a write released as acknowledged at w is held by w nodes; no
// queue, backlog, send or probe count passes its bound; the machine's
// counts agree with the driver's; one send at a time per link besides
// abandoned ones, each answered once. At the end: nothing stored is
// forgotten; once the faults heal, every like reaches every node, every
// breaker closes and a w=2 write is acknowledged; a closed machine is
// done once its sends end. -sim.schedules=N runs more; -sim.seed=S
// replays one.
func TestSimulation(t *testing.T) {
	seeds := slices.Clone(regressionSeeds)
	if *simSeed != 0 {
		seeds = []uint64{*simSeed}
	} else {
		n := *simSchedules
		if n == 0 {
			n = defaultSchedules
			if testing.Short() {
				n = min(n, 100)
			}
		}
		for i := range n {
			seeds = append(seeds, uint64(i)+1)
		}
	}
	var total simStats
	ran := 0
	for _, seed := range seeds {
		total.add(schedule(t, seed))
		ran++
		if t.Failed() {
			break
		}
	}
	var kinds []string
	for k, n := range total.faults {
		kinds = append(kinds, fmt.Sprintf("%s=%d", faultNames[k], n))
	}
	t.Logf("simulation: %d schedules, %d nodes, %.1f h simulated; %d writes (%d likes): %d acknowledged at their level, %d not; "+
		"%d sends (%d sent, %d failed, %d reset here), %d frames arrived, %d acks, %d probes (%d answered), %d resets (%d by a breaker), %d frames dropped; "+
		"%d sends joined frames, %d frames skipped by an open breaker, fullest queue and backlog %d%% of Queue; "+
		"links: %d opened, %d forgotten, %d moved; breakers: %d opened, %d half-open, %d closed; %d urges; faults: %s",
		ran, total.nodes, total.simDur.Hours(), total.writes, total.likes, total.met, total.unmet,
		total.sends, total.sent, total.failed, total.resetHere, total.arrivals, total.acks, total.probes, total.answered,
		total.resets, total.breakerResets, total.dropped, total.joined, total.skipped, total.maxQueued, total.opens, total.forgets, total.moved,
		total.opened, total.halfOpened, total.closedBr, total.urges, strings.Join(kinds, " "))
	// A run long enough to mean something went through every path.
	if ran >= 100 && !t.Failed() {
		for what, n := range map[string]int{
			"joined sends": total.joined, "abandoned sends": total.resets, "breaker resets": total.breakerResets,
			"half-open breakers": total.halfOpened, "closed breakers": total.closedBr, "urges": total.urges,
			"moved peers": total.moved, "dropped frames": total.dropped, "skipped frames": total.skipped,
			"failed sends": total.failed, "sends reset here": total.resetHere, "writes not acknowledged": total.unmet,
		} {
			if n == 0 {
				t.Errorf("%d schedules and no %s: the simulation no longer reaches them", ran, what)
			}
		}
		if total.maxQueued <= 100 {
			t.Errorf("%d schedules and no queue and backlog past Queue", ran)
		}
	}
}
