package cluster

import (
	"bytes"
	"encoding/binary"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
)

// This node's member table. memberlist v0.7.0 hands out *memberlist.Node
// values it rewrites in place under its own lock (aliveNode), so reading
// their fields later races; and the exported Node.State it hands out is
// never written (its nodeState shadows it with a field of its own:
// hashicorp/memberlist#266, #321), so it always reads "alive". The table
// is fed instead by copies taken inside memberlist's callbacks, which it
// makes with its node lock held and never concurrently (EventDelegate):
//
//   - NotifyJoin: alive (a new member, or one back from dead or left);
//   - NotifyLeave: left if the member announced it was leaving (a flag in
//     its node meta, set by Close just before memberlist's Leave, as serf
//     does with its leave intent), otherwise dead: memberlist's dead and
//     left both arrive here and the callback cannot tell them apart;
//   - NotifyUpdate: new meta or address.
//
// Suspect is not exposed by memberlist at all. The nearest honest signal
// is this node's own failure detector: memberlist logs "Suspect X has
// failed, no acks received" right before it marks X suspect after one of
// this node's probes of X found no ack, direct or indirect; X is alive
// again here once it answers one of this node's probes (PingDelegate), or
// re-joins. Suspicion raised by other nodes' probes and gossiped here is
// not seen: such a member shows alive until it answers or is declared dead.
//
// Two processes cannot bind one address, so of the members memberlist
// holds alive at one address only one is shown alive: the process that
// started last (its node meta says when), and the others dead at once (a
// node restarted on its address would otherwise stay a member until
// memberlist's probes time out, about 11 s with the LAN defaults). That is
// decided from every member the table holds, not from the order of the
// events: a node that joins hears of a killed process and its successor
// in any order, and the successor must stay a peer. The table is checked
// against memberlist's members every RejoinInterval (reconcile).

// memberState is a member's state as this node sees it.
type memberState uint8

const (
	stateAlive memberState = iota
	stateSuspect
	stateDead // failed: declared dead, or its address taken by a new member
	stateLeft
)

func (s memberState) String() string {
	switch s {
	case stateAlive:
		return "alive"
	case stateSuspect:
		return "suspect"
	case stateDead:
		return "dead"
	case stateLeft:
		return "left"
	}
	return "unknown(" + strconv.Itoa(int(s)) + ")"
}

// peer is a copy of what this node needs to reach a member.
type peer struct {
	name      string
	ip        net.IP
	port      uint16
	origin    uint64
	hasOrigin bool
	streams   bool // it takes the fast path's streams (metaStreams)
	sessions  bool // of version 2, sessions (metaSessions)
	// sessionsOnly: it sends its frames, and its acks to a peer that dials
	// it, only on sessions (metaSessionsOnly: a node of the direct fast
	// path), so one through memberlist in its name is not its.
	sessionsOnly bool
	started      int64 // when its process started (Unix ns, from its meta); 0 if it did not say
}

func (p peer) addr() string { return net.JoinHostPort(p.ip.String(), strconv.Itoa(int(p.port))) }

// node is a fresh memberlist.Node for memberlist's send calls: nobody else
// holds it, so nobody rewrites it.
func (p peer) node() *memberlist.Node {
	m := &memberlist.Node{Name: p.name, Addr: p.ip, Port: p.port}
	if p.hasOrigin {
		m.Meta = binary.BigEndian.AppendUint64(nil, p.origin)
	}
	return m
}

// Node meta: this process's origin (8 bytes, big endian), then a flags
// byte, then when the process started (8 bytes, Unix ns, big endian): of
// two processes at one address, the later one holds it. Nodes that knew
// only the first 8 or 9 bytes ignore the rest.
const (
	metaLeaving = 1
	// metaStreams says the node takes the fast path's streams (stream.go);
	// a peer that does not say so (an older version, during a rolling
	// upgrade) gets its frames through memberlist, a connection each.
	metaStreams = 2
	// metaSessions says its streams are sessions (stream version 2,
	// session.go); a node of the previous version speaks version 1 only,
	// and only such a node's name may open a version 1 stream.
	metaSessions = 4
	// metaSessionsOnly says the node sends its frames only on its
	// sessions, and its acks on the session of the peer that dialed it:
	// it runs the direct fast path. A node in gossip mode broadcasts its
	// frames through memberlist, so its peers must take them there.
	metaSessionsOnly = 8
	// metaSaysMode says metaSessionsOnly is meaningful: every node that
	// sets metaSessions sets it. A meta with metaSessions and without it
	// is from the version before (which did not say its fast path): such a
	// peer is taken to send only on sessions, as that version assumed.
	metaSaysMode = 16
)

// encodeMeta is a node's meta; sessionsOnly counts only with sessions.
func encodeMeta(origin uint64, started int64, leaving, streams, sessions, sessionsOnly bool) []byte {
	b := binary.BigEndian.AppendUint64(nil, origin)
	var flags byte
	if leaving {
		flags |= metaLeaving
	}
	if streams {
		flags |= metaStreams
	}
	if sessions {
		flags |= metaSessions | metaSaysMode
		if sessionsOnly {
			flags |= metaSessionsOnly
		}
	}
	if flags != 0 || started != 0 {
		b = append(b, flags)
	}
	if started != 0 {
		b = binary.BigEndian.AppendUint64(b, uint64(started))
	}
	return b
}

// peerOf copies a memberlist node; call it only inside memberlist's
// callbacks, while memberlist holds its lock.
func peerOf(m *memberlist.Node) (p peer, leaving bool) {
	p = peer{name: m.Name, ip: slices.Clone(m.Addr), port: m.Port}
	if len(m.Meta) >= 8 {
		p.origin, p.hasOrigin = binary.BigEndian.Uint64(m.Meta), true
		leaving = len(m.Meta) > 8 && m.Meta[8]&metaLeaving != 0
		p.streams = len(m.Meta) > 8 && m.Meta[8]&metaStreams != 0
		p.sessions = len(m.Meta) > 8 && m.Meta[8]&metaSessions != 0
		p.sessionsOnly = p.sessions
		if p.sessions && m.Meta[8]&metaSaysMode != 0 {
			p.sessionsOnly = m.Meta[8]&metaSessionsOnly != 0
		}
		if len(m.Meta) >= 17 {
			p.started = int64(binary.BigEndian.Uint64(m.Meta[9:17]))
		}
	}
	return p, leaving
}

type memberEntry struct {
	peer
	state   memberState // as this node shows it
	since   time.Time   // of the last state change
	leaving bool        // announced in its meta: its leave is a leave
	// listed: memberlist holds it alive (joined, not gone since), even
	// when it shows dead here because another member holds its address.
	listed bool
	taken  bool   // another member holds its address (see holdersLocked)
	joins  uint64 // the table's join count at its last join: the tiebreak
}

// memberTable is this node's view of the cluster, safe for concurrent use.
// Its lock is a leaf: nothing is called while it is held. It keeps every
// member memberlist announced, by name, until memberlist declares it gone
// and forgetAfter passes; what it shows is decided from all of them, not
// from the order their events came in.
type memberTable struct {
	self string
	// forgetAfter is how long a dead or left member stays listed: as long
	// as memberlist keeps it (GossipToTheDeadTime).
	forgetAfter time.Duration

	mu     sync.Mutex
	m      map[string]*memberEntry
	joins  uint64 // joins recorded
	events uint64 // memberlist events recorded (see reconcile)
}

func newMemberTable(self string, forgetAfter time.Duration) *memberTable {
	return &memberTable{self: self, forgetAfter: forgetAfter, m: map[string]*memberEntry{}}
}

// takeover is a member shown dead because another holds its address: by,
// or this node itself.
type takeover struct {
	peer
	by string
}

// tableChange is what an event did besides its own member: members it
// showed dead because another holds their address (the event's own
// member among them when it arrived superseded), and members alive again
// because the one that held their address is gone.
type tableChange struct {
	taken    []takeover
	restored []peer
}

// superseded reports whether the member called name was taken by the event.
func (c tableChange) superseded(name string) (by string, ok bool) {
	for _, t := range c.taken {
		if t.name == name {
			return t.by, true
		}
	}
	return "", false
}

// joined records p alive, as memberlist does. Of the members memberlist
// holds alive at one address (a process restarted there, its predecessor
// not yet declared dead), one holds it: this node if it is this node's
// address (news of the past process is stale), otherwise the process that
// started last, as their metas say, or, when one does not say, the one
// that joined last. The others show dead, and are not peers, until the
// holder is gone.
func (t *memberTable) joined(p peer, leaving bool, now time.Time) tableChange {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events++
	t.joins++
	e, ok := t.m[p.name]
	if !ok {
		e = &memberEntry{}
		t.m[p.name] = e
	}
	if !e.listed || e.taken || e.state == stateDead || e.state == stateLeft {
		e.state, e.since = stateAlive, now
	}
	e.peer, e.leaving, e.listed, e.taken, e.joins = p, leaving, true, false, t.joins
	return t.settleLocked(now)
}

// updated records a member's new meta or address; it reports whether the
// member has just announced it is leaving.
func (t *memberTable) updated(p peer, leaving bool, now time.Time) (nowLeaving bool, ch tableChange) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events++
	e, ok := t.m[p.name]
	if !ok {
		return false, ch
	}
	nowLeaving = leaving && !e.leaving
	e.peer, e.leaving = p, leaving
	return nowLeaving, t.settleLocked(now)
}

// gone records memberlist's NotifyLeave: left if the member said it was
// leaving, dead otherwise. changed is false when it showed gone already;
// a member whose address it held may be alive again.
func (t *memberTable) gone(name string, now time.Time) (e memberEntry, changed bool, ch tableChange) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events++
	p, ok := t.m[name]
	if !ok {
		p = &memberEntry{peer: peer{name: name}, state: stateDead, since: now}
		t.m[name] = p
		return *p, true, ch
	}
	p.listed = false
	if p.state == stateAlive || p.state == stateSuspect {
		p.state, p.since, changed = stateDead, now, true
		if p.leaving {
			p.state = stateLeft
		}
	}
	ch = t.settleLocked(now)
	return *p, changed, ch
}

// settleLocked decides, for every address, which listed member holds it,
// and shows the others dead (or alive again, once they hold it).
func (t *memberTable) settleLocked(now time.Time) (ch tableChange) {
	holders := t.holdersLocked()
	for _, e := range t.m {
		if e.ip == nil {
			continue
		}
		h := holders[e.addr()]
		if !e.listed {
			// A gone member at an address another holds is not coming back.
			e.taken = e.taken || h != nil
			continue
		}
		switch {
		case h != e && !e.taken:
			e.taken = true
			if e.state == stateAlive || e.state == stateSuspect {
				e.state, e.since = stateDead, now
				ch.taken = append(ch.taken, takeover{peer: e.peer, by: h.name})
			}
		case h == e && e.taken:
			e.taken = false
			e.state, e.since = stateAlive, now
			ch.restored = append(ch.restored, e.peer)
		}
	}
	slices.SortFunc(ch.taken, func(a, b takeover) int { return strings.Compare(a.name, b.name) })
	slices.SortFunc(ch.restored, func(a, b peer) int { return strings.Compare(a.name, b.name) })
	return ch
}

// holdersLocked returns, by address, the listed member that holds it (see
// joined); this node holds its own, even once it left. The order is total
// within an address: by start time when every member there says it, by
// join otherwise.
func (t *memberTable) holdersLocked() map[string]*memberEntry {
	groups := map[string][]*memberEntry{}
	for name, e := range t.m {
		if (e.listed || name == t.self) && e.ip != nil {
			groups[e.addr()] = append(groups[e.addr()], e)
		}
	}
	holders := make(map[string]*memberEntry, len(groups))
	for addr, g := range groups {
		stamped := !slices.ContainsFunc(g, func(e *memberEntry) bool { return e.started == 0 })
		var h *memberEntry
		for _, e := range g {
			switch {
			case h == nil, e.name == t.self:
				h = e
			case h.name == t.self:
			case stamped && e.started != h.started:
				if e.started > h.started {
					h = e
				}
			case e.joins > h.joins:
				h = e
			}
		}
		holders[addr] = h
	}
	return holders
}

// reconcile checks the table against the names memberlist lists alive
// (Memberlist.Members), read after epoch returned epoch: if an event came
// in between, it does nothing (ok false) and the next call checks. A
// member the table holds otherwise is set as memberlist holds it, and
// returned in missed; that is a bug, as every event reaches the table.
func (t *memberTable) reconcile(alive []string, epoch uint64, now time.Time) (missed []string, ch tableChange, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.events != epoch {
		return nil, ch, false
	}
	listed := make(map[string]bool, len(alive))
	for _, name := range alive {
		listed[name] = true
		if e, known := t.m[name]; !known || !e.listed {
			missed = append(missed, name)
			if known { // one never announced has no address: it stays missed
				t.joins++
				e.listed, e.taken, e.joins = true, false, t.joins
				e.state, e.since = stateAlive, now
			}
		}
	}
	for name, e := range t.m {
		if e.listed && !listed[name] {
			missed = append(missed, name)
			e.listed = false
			if e.state == stateAlive || e.state == stateSuspect {
				e.state, e.since = stateDead, now
			}
		}
	}
	slices.Sort(missed)
	return missed, t.settleLocked(now), true
}

// epoch counts the memberlist events recorded, for reconcile.
func (t *memberTable) epoch() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.events
}

// suspected marks an alive member suspect; it reports whether it was alive.
func (t *memberTable) suspected(name string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[name]; ok && e.state == stateAlive && name != t.self {
		e.state, e.since = stateSuspect, now
		return true
	}
	return false
}

// answered marks a suspect member alive again; it reports whether it was
// suspect.
func (t *memberTable) answered(name string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[name]; ok && e.state == stateSuspect {
		e.state, e.since = stateAlive, now
		return true
	}
	return false
}

// list is every member, gone ones for forgetAfter, sorted by name.
func (t *memberTable) list(now time.Time) []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Member, 0, len(t.m))
	for name, e := range t.m {
		if t.forgotLocked(e, now) {
			delete(t.m, name)
			continue
		}
		addr := ""
		if e.ip != nil {
			addr = e.addr()
		}
		out = append(out, Member{Name: e.name, Addr: addr, State: e.state.String()})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// prune forgets the members gone for longer than forgetAfter, as list
// does: the join loop calls it on every tick, so a table nobody lists does
// not keep every member that ever passed. It returns how many it forgot.
func (t *memberTable) prune(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for name, e := range t.m {
		if t.forgotLocked(e, now) {
			delete(t.m, name)
			n++
		}
	}
	return n
}

// pruneStrays forgets the stray-ping addresses last joined longer than
// after ago: the join loop's map would otherwise keep every address that
// ever probed a past process here.
func pruneStrays(last map[string]time.Time, now time.Time, after time.Duration) {
	for addr, at := range last {
		if now.Sub(at) >= after {
			delete(last, addr)
		}
	}
}

func (t *memberTable) forgotLocked(e *memberEntry, now time.Time) bool {
	return !e.listed && (e.state == stateDead || e.state == stateLeft) && now.Sub(e.since) > t.forgetAfter
}

// peers returns the other members in one of states, sorted by name.
func (t *memberTable) peers(states ...memberState) []peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []peer
	for name, e := range t.m {
		if name != t.self && slices.Contains(states, e.state) {
			out = append(out, e.peer)
		}
	}
	slices.SortFunc(out, func(a, b peer) int { return strings.Compare(a.name, b.name) })
	return out
}

// member returns the member called name if it is alive or suspect.
func (t *memberTable) member(name string) (peer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[name]; ok && (e.state == stateAlive || e.state == stateSuspect) {
		return e.peer, true
	}
	return peer{}, false
}

// sendTargets are the peers the fast path sends to: alive and suspect ones,
// and those declared dead within window (a peer cut off for a while comes
// back; its sender pings it and resumes when it answers). Left members and
// those whose address was taken are not.
func (t *memberTable) sendTargets(now time.Time, window time.Duration) []peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []peer
	for name, e := range t.m {
		if name != t.self && e.target(now, window) {
			out = append(out, e.peer)
		}
	}
	return out
}

// anyTarget reports whether sendTargets would list any peer.
func (t *memberTable) anyTarget(now time.Time, window time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, e := range t.m {
		if name != t.self && e.target(now, window) {
			return true
		}
	}
	return false
}

// sendTarget is the peer called name if it is one of sendTargets.
func (t *memberTable) sendTarget(name string, now time.Time, window time.Duration) (peer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[name]; ok && name != t.self && e.target(now, window) {
		return e.peer, true
	}
	return peer{}, false
}

// target reports whether the fast path sends to e (see sendTargets).
func (e *memberEntry) target(now time.Time, window time.Duration) bool {
	return e.ip != nil && (e.state == stateAlive || e.state == stateSuspect ||
		(e.state == stateDead && !e.taken && now.Sub(e.since) < window))
}

// addrs is the set of addresses of alive and suspect members, this node's
// included.
func (t *memberTable) addrs() map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]bool{}
	for _, e := range t.m {
		if e.ip != nil && (e.state == stateAlive || e.state == stateSuspect) {
			out[e.addr()] = true
		}
	}
	return out
}

// events feeds the member table and logs membership changes. memberlist
// calls it with its node lock held: it copies, records, logs and queues
// work, waits only on short locks (lock order: memberlist's node lock,
// then Node.logMu, then the member table's), and never calls memberlist.
// It is made by Node.memberEvents; changed and up are Node.membersChanged
// and Node.memberUp, which take only short locks and never block.
type events struct {
	members *memberTable // the node's
	log     zerolog.Logger
	self    string // this node's name
	changed func(ch tableChange)
	up      func(name string)
}

var _ memberlist.EventDelegate = (*events)(nil)

// NotifyJoin also fires when a member declared dead comes back: either way
// an anti-entropy session with it is urged (never run here: this runs
// under memberlist's lock).
func (e *events) NotifyJoin(m *memberlist.Node) {
	p, leaving := peerOf(m)
	ch := e.members.joined(p, leaving, time.Now())
	e.changed(ch)
	if _, ok := ch.superseded(p.name); ok {
		return
	}
	e.log.Info().Str("member", p.name).Str("addr", p.addr()).Msg("member joined")
	if p.name != e.self {
		e.up(p.name)
	}
}

func (e *events) NotifyLeave(m *memberlist.Node) {
	g, changed, ch := e.members.gone(m.Name, time.Now())
	if !changed {
		e.log.Debug().Str("member", m.Name).Msg("memberlist declared gone a member already gone here")
	} else {
		msg := "member failed"
		if g.state == stateLeft {
			msg = "member left"
		}
		e.log.Info().Str("member", m.Name).Str("addr", m.Address()).Msg(msg)
	}
	e.changed(ch)
}

func (e *events) NotifyUpdate(m *memberlist.Node) {
	p, leaving := peerOf(m)
	nowLeaving, ch := e.members.updated(p, leaving, time.Now())
	if nowLeaving {
		e.log.Info().Str("member", p.name).Str("addr", p.addr()).Msg("member leaving")
	} else {
		e.log.Info().Str("member", p.name).Str("addr", p.addr()).Msg("member updated")
	}
	e.changed(ch)
}

// membersChanged logs members an event showed dead because another holds
// their address, and treats those alive again as joins.
func (n *Node) membersChanged(ch tableChange) {
	for _, t := range ch.taken {
		if t.by == n.cfg.NodeName {
			n.log.Info().Str("member", t.name).Str("addr", t.addr()).Msg("member failed: this node took its address")
			continue
		}
		n.log.Info().Str("member", t.name).Str("addr", t.addr()).Str("by", t.by).
			Msg("member failed: a new member took its address")
	}
	for _, p := range ch.restored {
		n.log.Info().Str("member", p.name).Str("addr", p.addr()).
			Msg("member alive again: the member that held its address is gone")
		n.memberUp(p.name)
	}
}

// memberUp has likes logged from now on framed for a peer that joined (not
// only from the next flush) and urges an anti-entropy session with it.
// (logMu is never held while calling memberlist.)
func (n *Node) memberUp(name string) {
	n.logMu.Lock()
	n.alone = false
	n.logMu.Unlock()
	if n.sync != nil {
		n.sync.urge(name)
	}
}

// reconcileMembers checks the member table against memberlist's members
// (see memberTable.reconcile). It reads only their names, which memberlist
// never rewrites.
func (n *Node) reconcileMembers() {
	ml := n.mlReady.Load()
	if ml == nil {
		return
	}
	epoch := n.members.epoch()
	var alive []string
	for _, m := range ml.Members() {
		alive = append(alive, m.Name)
	}
	missed, ch, ok := n.members.reconcile(alive, epoch, time.Now())
	if !ok || len(missed) == 0 {
		return
	}
	n.log.Warn().Strs("members", missed).Msg("member table missed memberlist events: reconciled")
	n.membersChanged(ch)
}

// pings clears this node's suspicion of a member that answers one of its
// probes. memberlist calls it from the probe with a copy of the node.
type pings struct {
	members *memberTable // the node's
	log     zerolog.Logger
}

var _ memberlist.PingDelegate = (*pings)(nil)

func (pings) AckPayload() []byte { return nil }

func (p pings) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	if p.members.answered(other.Name, time.Now()) {
		p.log.Info().Str("member", other.Name).Msg("suspect member answers again")
	}
}

// suspectLine is how memberlist v0.7.0 reports that this node's probe of a
// member failed, right before it marks the member suspect (state.go,
// probeNode). TestMembersShowSuspectDeadAndLeft fails if it changes.
var suspectPrefix, suspectSuffix = []byte("Suspect "), []byte(" has failed, no acks received")

// strayPrefix starts memberlist's warning that a ping named another node:
// a member of some cluster still probes a past process at this node's
// address, so that cluster does not know this one.
var strayPrefix, strayFrom = []byte("Got ping for unexpected node '"), []byte("' from=")

// strayPingFrom returns the address of the member that sent such a ping.
func strayPingFrom(line []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(line, strayPrefix)
	if !ok {
		return "", false
	}
	_, addr, ok := bytes.Cut(rest, strayFrom)
	if !ok || len(addr) == 0 {
		return "", false
	}
	return string(addr), true
}

// strayPing asks the join loop to join a member that probes a past process
// at this node's address: the two clusters merge now, not when the other
// side's failure detector and re-join tick get there. It never blocks (it
// runs on memberlist's log writer).
func (n *Node) strayPing(addr string) {
	select {
	case n.strays <- addr:
	default:
	}
}

// suspectOf returns the member named by memberlist's suspect line.
func suspectOf(line []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(line, suspectPrefix)
	if !ok {
		return "", false
	}
	name, ok := bytes.CutSuffix(rest, suspectSuffix)
	return string(name), ok
}

func (n *Node) memberSuspected(name string) {
	if n.members.suspected(name, time.Now()) {
		n.log.Info().Str("member", name).Msg("member suspect: no ack to this node's probe")
	}
}
