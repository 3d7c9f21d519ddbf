package link

import (
	"slices"
	"time"

	"github.com/likesd/likesd/internal/breaker"
)

// Frame is one batch of this node's likes for the fast path: its bytes,
// and the seqs First..Last of this node it carries (Count 0: none).
type Frame struct {
	Data        []byte
	First, Last uint64
	Count       int
}

// Target is a peer the fast path sends to. Addr is whatever tells the
// driver how to reach it; a link whose peer's Addr changes is replaced.
// Ref is the driver's, handed back in the link's Open.
type Target struct {
	Name, Addr string
	Ref        any
}

// Result is how a send ended.
type Result uint8

const (
	// Sent: the frame was written.
	Sent Result = iota
	// ResetHere: this node reset the stream under the send (it hung
	// through an outage, or the link ended); the frame is dropped and the
	// peer is not to blame.
	ResetHere
	// Failed: the dial was refused or timed out, the peer closed or reset
	// the connection, a write timed out, or the stream was reset because
	// the peer's breaker opened: the peer is gone.
	Failed
)

// Kind is what an Action asks of the driver.
type Kind uint8

const (
	// Open: a link to Peer at Addr starts; Link names it in what follows.
	Open Kind = iota
	// Send Frame to Peer on link Link; report it with SendDone(Peer, ID).
	Send
	// Probe Peer (a ping); report it with ProbeDone(Peer, ID).
	Probe
	// Reset the stream of link Link to Peer: a send on it returns
	// ResetHere, or Failed when Breaker says its breaker opened.
	Reset
	// Forget link Link to Peer: it ended (the peer is no longer a target,
	// moved, or the machine closed). Close its stream once its sends end.
	Forget
	// Urge repair with Peer: it is reachable again and missed frames.
	Urge
	// Note is a change worth a log line: Note says which.
	Note
)

// Notes of a Note action.
const (
	NoteStalled = "peer does not answer while a send is in flight: probing"
	NoteResumed = "peer answers again: fresh frames first, what queued meanwhile after"
	NoteDown    = "send to peer failed: its frames are dropped (left to repair) until it answers"
	NoteUp      = "peer answers again: frames resume"
	NoteMoved   = "peer moved: a new link"
)

// Action is one thing the driver is to do.
type Action struct {
	Kind    Kind
	Peer    string
	Addr    string // Open
	Ref     any    // Open: the Target's
	Link    uint64 // Open, Send, Reset, Forget
	ID      uint64 // Send, Probe
	Frame   Frame  // Send
	Breaker bool   // Reset: because the peer's breaker opened
	Note    string // Note
}

// Transition is a peer's breaker changing state.
type Transition struct {
	Peer string
	breaker.Transition
}

// Stats counts what the machine did, since New.
type Stats struct {
	Queued, Sent, Failed, Dropped, Skipped, Resets uint64
}

// PeerState is what the machine knows of one peer, for status pages.
type PeerState struct {
	Breaker  breaker.State
	Phase    string // idle, sending, stalled, down, or none (no link)
	Queued   int    // frames in queue and backlog
	Unacked  int    // frames sent and not acknowledged
	Inflight int    // sends in flight, abandoned ones included
}

type phase uint8

const (
	idle    phase = iota // nothing in flight
	sending              // a send in flight for less than RetryInterval, or its peer answers
	stalled              // a send in flight longer: probing
	down                 // a send failed: dropping until a probe is answered
)

var phaseNames = [...]string{"idle", "sending", "stalled", "down"}

type span struct {
	first, last uint64
	at          time.Time
}

// peer is one peer's health and, while it is a target, its link.
type peer struct {
	br      breaker.Breaker
	unacked []span
	// lastExpiry is when Tick last counted a failure for unacked frames,
	// lastAck when the peer last acknowledged anything.
	lastExpiry, lastAck time.Time
	l                   *link
}

// link is the fast path to one peer at one address.
type link struct {
	id       uint64
	peerName string
	addr     string
	queue    []Frame // fresh, oldest first
	backlog  []Frame // queued while the peer did not answer; newest last
	phase    phase
	since    time.Time // when the send in flight began
	sendID   uint64    // the send in flight, when sending or stalled
	// unanswered: a probe went unanswered during this stall.
	unanswered bool
	abandoned  int // sends left in flight
	probes     int // probes in flight
	// epoch tells the probes of this stall or outage from older ones.
	epoch     uint64
	nextProbe time.Time
	closing   bool // finishing its queue, then forgotten
}

// Machine is every peer's link and health on one node. The zero value is
// not usable: start from New.
type Machine struct {
	cfg      Config
	members  map[string]bool // alive or suspect: may be waited for
	peers    map[string]*peer
	links    []*link // closing links of peers that moved, until their sends end
	lastTick time.Time
	lastID   uint64
	closed   bool

	actions     []Action
	transitions []Transition
	stats       Stats
	pending     int // frames queued, in backlogs or in flight (not abandoned)
}

// New returns a machine with no peers.
func New(cfg Config) *Machine {
	return &Machine{cfg: cfg, members: map[string]bool{}, peers: map[string]*peer{}}
}

func (m *Machine) next() uint64 { m.lastID++; return m.lastID }

func (m *Machine) peer(name string) *peer {
	p, ok := m.peers[name]
	if !ok {
		p = &peer{br: breaker.New(m.cfg.Breaker)}
		m.peers[name] = p
	}
	return p
}

func (m *Machine) act(a Action) { m.actions = append(m.actions, a) }

func (m *Machine) note(name, what string) { m.act(Action{Kind: Note, Peer: name, Note: what}) }

// SetMembers says which peers are members (alive or suspect: a write may
// wait for them) and which the fast path sends to (members, and members
// declared dead a moment ago, which may come back). A target gets a link;
// a link whose peer is no longer a target, or moved, finishes its queue
// and is forgotten. A peer in neither list is forgotten whole.
func (m *Machine) SetMembers(members []string, targets []Target, now time.Time) {
	clear(m.members)
	for _, n := range members {
		m.members[n] = true
	}
	keep := make(map[string]string, len(targets))
	for _, t := range targets {
		keep[t.Name] = t.Addr
	}
	for _, name := range m.sortedPeers() {
		p := m.peers[name]
		addr, target := keep[name]
		if p.l != nil && (!target || p.l.addr != addr || m.closed) {
			if target && !m.closed {
				m.note(name, NoteMoved)
			}
			m.retire(name, p, now)
		}
		if !target && !m.members[name] && p.l == nil {
			delete(m.peers, name)
		}
	}
	if m.closed {
		return
	}
	for _, t := range targets {
		p := m.peer(t.Name)
		if p.l == nil {
			p.l = &link{id: m.next(), peerName: t.Name, addr: t.Addr}
			m.act(Action{Kind: Open, Peer: t.Name, Addr: t.Addr, Ref: t.Ref, Link: p.l.id})
		}
	}
}

// retire detaches p's link; it finishes its queue (when its peer
// answers) and is forgotten.
func (m *Machine) retire(name string, p *peer, now time.Time) {
	l := p.l
	p.l = nil
	l.closing = true
	m.links = append(m.links, l)
	m.pumpRetired(name, l, now)
}

// Queue queues f to every target whose breaker lets it through, and
// records it as sent to them; it reports to how many.
func (m *Machine) Queue(f Frame, now time.Time) int {
	if m.closed {
		return 0
	}
	k := 0
	for _, name := range m.sortedPeers() {
		p := m.peers[name]
		if p.l == nil {
			continue
		}
		ok, tr, changed := p.br.Allow(now)
		if changed {
			m.transition(name, tr)
		}
		if !ok {
			m.stats.Skipped++
			continue
		}
		k++
		if f.Count > 0 {
			p.unacked = append(p.unacked, span{first: f.First, last: f.Last, at: now})
		}
		m.stats.Queued++
		m.pending++
		l := p.l
		if l.phase == down {
			m.drop(1) // older than the answer it waits for
			continue
		}
		l.queue = append(l.queue, f)
		if len(l.queue) > m.cfg.Queue {
			l.queue = slices.Delete(l.queue, 0, 1)
			m.drop(1)
		}
		m.pump(name, l, now)
	}
	return k
}

func (m *Machine) drop(k int) {
	m.pending -= k
	m.stats.Dropped += uint64(k)
}

// pump starts the next send on l when none is in flight: the queue's head
// with the frames queued after it that join it, else the newest of the
// backlog.
func (m *Machine) pump(name string, l *link, now time.Time) {
	if l.phase != idle {
		return
	}
	var f Frame
	switch {
	case len(l.queue) > 0:
		f = l.queue[0]
		i := 1
		for ; i < len(l.queue) && m.cfg.Join != nil; i++ {
			j, ok := m.cfg.Join(f.Data, l.queue[i].Data, m.cfg.BatchBytes)
			if !ok {
				break
			}
			f.Data = j
			if l.queue[i].Count > 0 {
				if f.Count == 0 {
					f.First = l.queue[i].First
				}
				f.Last = l.queue[i].Last
				f.Count += l.queue[i].Count
			}
		}
		m.pending -= i - 1 // joined: one frame in flight
		l.queue = slices.Delete(l.queue, 0, i)
	case len(l.backlog) > 0:
		k := len(l.backlog) - 1
		f, l.backlog = l.backlog[k], l.backlog[:k]
	default:
		if l.closing {
			m.forget(name, l)
		}
		return
	}
	l.phase, l.since, l.sendID = sending, now, m.next()
	m.act(Action{Kind: Send, Peer: name, Link: l.id, ID: l.sendID, Frame: f})
}

// pumpRetired moves a retired link on: a link that is down or has nothing
// left ends at once.
func (m *Machine) pumpRetired(name string, l *link, now time.Time) {
	if l.phase == down {
		m.drop(len(l.queue) + len(l.backlog))
		l.queue, l.backlog = nil, nil
		m.forget(name, l)
		return
	}
	if len(l.backlog) > 0 { // it answers, but what waits is stale: repair
		m.drop(len(l.backlog))
		l.backlog = nil
	}
	m.pump(name, l, now)
}

func (m *Machine) forget(name string, l *link) {
	if l.phase != idle && l.phase != down {
		return
	}
	l.phase = idle
	m.links = slices.DeleteFunc(m.links, func(x *link) bool { return x == l })
	m.act(Action{Kind: Forget, Peer: name, Link: l.id})
}

// linkOf finds the link id of peer: its current one or a retired one.
func (m *Machine) linkOf(name string, id uint64) *link {
	if p := m.peers[name]; p != nil && p.l != nil && p.l.id == id {
		return p.l
	}
	for _, l := range m.links {
		if l.id == id {
			return l
		}
	}
	return nil
}

// findSend finds the link that started send id to peer.
func (m *Machine) findSend(name string, id uint64) (l *link, current bool) {
	if p := m.peers[name]; p != nil && p.l != nil && p.l.sendID == id && p.l.phase != idle && p.l.phase != down {
		return p.l, true
	}
	for _, l := range m.links {
		if l.sendID == id && l.phase != idle && l.phase != down {
			return l, true
		}
	}
	return nil, false
}

// SendDone reports how send id to peer ended: the send in flight, or one
// left in flight.
func (m *Machine) SendDone(name string, linkID, id uint64, r Result, now time.Time) {
	switch r {
	case Sent:
		m.stats.Sent++
	case ResetHere:
		m.stats.Dropped++
	case Failed:
		m.stats.Failed++
		m.failure(name, now)
	}
	l, current := m.findSend(name, id)
	if !current {
		if l = m.linkOf(name, linkID); l != nil && l.abandoned > 0 {
			l.abandoned--
		}
		return
	}
	m.pending--
	l.phase = idle
	if r == Failed {
		m.setDown(name, l, now)
		return
	}
	m.resume(name, l, now)
}

// setDown drops what l holds and probes its peer every RetryInterval.
func (m *Machine) setDown(name string, l *link, now time.Time) {
	m.drop(len(l.queue) + len(l.backlog))
	l.queue, l.backlog = l.queue[:0], l.backlog[:0]
	if l.closing {
		m.forget(name, l)
		return
	}
	l.phase = down
	l.epoch++
	m.note(name, NoteDown)
	m.probe(name, l, now)
}

func (m *Machine) probe(name string, l *link, now time.Time) {
	l.nextProbe = now.Add(m.cfg.RetryInterval)
	if l.probes >= MaxProbes {
		return
	}
	l.probes++
	m.act(Action{Kind: Probe, Peer: name, Link: l.id, ID: l.epoch})
}

// ProbeDone reports whether peer answered probe id of link linkID; writing
// says whether the send in flight, if any, is a write on an open stream
// (not a dial).
func (m *Machine) ProbeDone(name string, linkID, id uint64, ok, writing bool, now time.Time) {
	l := m.linkOf(name, linkID)
	if l == nil {
		return
	}
	l.probes--
	if id != l.epoch {
		return // of a stall or outage that ended
	}
	switch l.phase {
	case stalled:
		switch {
		case !ok:
			l.unanswered = true
		case l.abandoned >= MaxAbandoned:
			// enough sends left in flight: wait for this one
		case l.unanswered:
			// It was away and is back: what queued meanwhile waits
			// behind what comes next.
			m.note(name, NoteResumed)
			m.abandon(name, l)
			l.backlog = append(l.backlog, l.queue...)
			l.queue = l.queue[:0]
			if k := len(l.backlog) - m.cfg.Queue; k > 0 {
				l.backlog = slices.Delete(l.backlog, 0, k)
				m.drop(k)
			}
			m.resume(name, l, now)
		case writing:
			// The peer answers and the write is slow (a full socket
			// buffer, a long round trip): it is moving, so it is waited
			// for (its deadline bounds it); resetting it would lose what
			// it carries and start the next on a cold connection.
		default: // the dial is slow or stuck, not the peer
			m.abandon(name, l)
			m.resume(name, l, now)
		}
	case down:
		if !ok {
			return
		}
		m.note(name, NoteUp)
		l.phase = idle
		l.epoch++
		if p := m.peers[name]; p != nil && p.l == l {
			// Its breaker turns half-open, and what it missed crosses by
			// anti-entropy: now.
			if tr, changed := p.br.Probe(now); changed {
				m.transition(name, tr)
			}
		}
		m.act(Action{Kind: Urge, Peer: name})
		m.pump(name, l, now)
	}
}

// resume starts the next send on l, or ends a retired l that has none.
func (m *Machine) resume(name string, l *link, now time.Time) {
	if l.closing {
		m.pumpRetired(name, l, now)
		return
	}
	m.pump(name, l, now)
}

// abandon leaves the send in flight to end on its own, its stream reset.
func (m *Machine) abandon(name string, l *link) {
	m.stats.Resets++
	m.pending--
	l.abandoned++
	l.phase = idle
	l.epoch++
	m.act(Action{Kind: Reset, Peer: name, Link: l.id})
}

// Acked records that peer holds this node's seqs first..last.
func (m *Machine) Acked(name string, first, last uint64, now time.Time) {
	if last < first {
		return
	}
	p, ok := m.peers[name]
	if !ok {
		return
	}
	p.lastAck = now
	if tr, changed := p.br.Success(now); changed {
		m.transition(name, tr)
	}
	p.unacked = slices.DeleteFunc(p.unacked, func(s span) bool { return s.first >= first && s.last <= last })
}

// Tick advances time: sends in flight past RetryInterval have their peer
// probed, probes repeat every RetryInterval, and a peer whose oldest
// unacknowledged frame is older than Timeout, and that acknowledged
// nothing for as long, has a failure counted (at most one a Timeout).
// A tick that comes more than half a Timeout (at least 50ms) after the
// last counts no failure: this node stalled (a starved CPU, a GC pause),
// not necessarily the peer.
func (m *Machine) Tick(now time.Time) {
	stallAfter := max(m.cfg.Timeout/2, 50*time.Millisecond)
	stalled := !m.lastTick.IsZero() && now.Sub(m.lastTick) > stallAfter
	m.lastTick = now
	for _, name := range m.sortedPeers() {
		p := m.peers[name]
		if l := p.l; l != nil {
			m.tickLink(name, l, now)
		}
		if len(p.unacked) == 0 || now.Sub(p.unacked[0].at) < m.cfg.Timeout {
			continue
		}
		p.unacked = slices.DeleteFunc(p.unacked, func(s span) bool { return now.Sub(s.at) >= m.cfg.Timeout })
		// A peer that acknowledged something within the timeout is slow
		// (its frames queue behind a bulk import), not silent.
		if stalled || now.Sub(p.lastExpiry) < m.cfg.Timeout || now.Sub(p.lastAck) < m.cfg.Timeout {
			continue
		}
		p.lastExpiry = now
		m.failure(name, now)
	}
	for _, l := range slices.Clone(m.links) {
		m.tickLink(l.peerName, l, now)
	}
}

func (m *Machine) tickLink(name string, l *link, now time.Time) {
	switch l.phase {
	case sending:
		if now.Sub(l.since) >= m.cfg.RetryInterval {
			l.phase, l.unanswered = stalled, false
			l.epoch++
			m.note(name, NoteStalled)
			m.probe(name, l, now)
		}
	case stalled, down:
		if !now.Before(l.nextProbe) {
			m.probe(name, l, now)
		}
	}
}

// failure counts a failure of peer; an open breaker resets its streams (a
// send on one fails), those of links finishing their queue included, and
// it is waited for no more. A peer forgotten whole (its old link's send
// failing late) stays forgotten.
func (m *Machine) failure(name string, now time.Time) {
	p, ok := m.peers[name]
	if !ok {
		return
	}
	tr, changed := p.br.Failure(now)
	if changed {
		m.transition(name, tr)
	}
	if p.br.State(now) != breaker.Open {
		return
	}
	p.unacked = nil
	if !changed {
		return
	}
	if p.l != nil {
		m.act(Action{Kind: Reset, Peer: name, Link: p.l.id, Breaker: true})
	}
	for _, l := range m.links { // retired: each has a send in flight
		if l.peerName == name {
			m.act(Action{Kind: Reset, Peer: name, Link: l.id, Breaker: true})
		}
	}
}

func (m *Machine) transition(name string, tr breaker.Transition) {
	m.transitions = append(m.transitions, Transition{Peer: name, Transition: tr})
}

// Close ends every link: each finishes its queue (when its peer answers),
// then is forgotten; Done tells when all are.
func (m *Machine) Close(now time.Time) {
	if m.closed {
		return
	}
	m.closed = true
	for _, name := range m.sortedPeers() {
		if p := m.peers[name]; p.l != nil {
			m.retire(name, p, now)
		}
	}
}

// Done reports whether Close was called and every link is forgotten.
func (m *Machine) Done() bool { return m.closed && len(m.links) == 0 }

// Take returns the actions and breaker transitions since the last Take.
func (m *Machine) Take() ([]Action, []Transition) {
	a, t := m.actions, m.transitions
	m.actions, m.transitions = nil, nil
	return a, t
}

// Eligible lists the members whose breaker is closed, sorted: the peers a
// write may wait for. A half-open peer gets probe frames but is not waited
// for until an ack closes its breaker, so a peer that is still dead costs
// no write a timeout at every cool-down.
func (m *Machine) Eligible(now time.Time) []string {
	var out []string
	for name := range m.members {
		if p, ok := m.peers[name]; ok && p.br.State(now) != breaker.Closed {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// NumEligible is len(Eligible(now)), without the list.
func (m *Machine) NumEligible(now time.Time) int {
	n := 0
	for name := range m.members {
		if p, ok := m.peers[name]; ok && p.br.State(now) != breaker.Closed {
			continue
		}
		n++
	}
	return n
}

// State is what the machine knows of peer.
func (m *Machine) State(name string, now time.Time) PeerState {
	p, ok := m.peers[name]
	if !ok {
		return PeerState{Breaker: breaker.Closed, Phase: "none"}
	}
	st := PeerState{Breaker: p.br.State(now), Phase: "none", Unacked: len(p.unacked)}
	if l := p.l; l != nil {
		st.Phase = phaseNames[l.phase]
		st.Queued = len(l.queue) + len(l.backlog)
		st.Inflight = l.abandoned
		if l.phase == sending || l.phase == stalled {
			st.Inflight++
		}
	}
	return st
}

// Pending is the frames queued, in backlogs, or in flight (not abandoned).
func (m *Machine) Pending() int { return m.pending }

// Stats returns the counts since New.
func (m *Machine) Stats() Stats { return m.stats }

// NextDeadline is when Tick next has something to do for a link (a stall
// to notice, a probe to send); zero when nothing waits on time.
func (m *Machine) NextDeadline() time.Time {
	var next time.Time
	at := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	each := func(l *link) {
		switch l.phase {
		case sending:
			at(l.since.Add(m.cfg.RetryInterval))
		case stalled, down:
			at(l.nextProbe)
		}
	}
	for _, p := range m.peers {
		if p.l != nil {
			each(p.l)
		}
	}
	for _, l := range m.links {
		each(l)
	}
	return next
}

func (m *Machine) sortedPeers() []string {
	names := make([]string, 0, len(m.peers))
	for name := range m.peers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
