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
// Two processes cannot bind one address, so a member that joins at the
// address of another name marks that one dead at once (a node restarted on
// its address would otherwise stay a member until memberlist's probes time
// out, about 11 s with the LAN defaults).

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

// Node meta: this process's origin (8 bytes, big endian), then an optional
// flags byte. Nodes that knew only the 8 bytes ignore a 9-byte meta.
const (
	metaLeaving = 1
	// metaStreams says the node takes the fast path's streams (stream.go);
	// a peer that does not say so (an older version, during a rolling
	// upgrade) gets its frames through memberlist, a connection each.
	metaStreams = 2
)

func encodeMeta(origin uint64, leaving, streams bool) []byte {
	b := binary.BigEndian.AppendUint64(nil, origin)
	var flags byte
	if leaving {
		flags |= metaLeaving
	}
	if streams {
		flags |= metaStreams
	}
	if flags != 0 {
		b = append(b, flags)
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
	}
	return p, leaving
}

type memberEntry struct {
	peer
	state   memberState
	since   time.Time // of the last state change
	leaving bool      // announced in its meta: its leave is a leave
	taken   bool      // dead because a new member took its address
}

// memberTable is this node's view of the cluster, safe for concurrent use.
// Its lock is a leaf: nothing is called while it is held.
type memberTable struct {
	self string
	// forgetAfter is how long a dead or left member stays listed: as long
	// as memberlist keeps it (GossipToTheDeadTime).
	forgetAfter time.Duration

	mu sync.Mutex
	m  map[string]*memberEntry
}

func newMemberTable(self string, forgetAfter time.Duration) *memberTable {
	return &memberTable{self: self, forgetAfter: forgetAfter, m: map[string]*memberEntry{}}
}

// joined records p alive and returns the members it replaced: those at its
// address under another name, now dead. News of a member at this node's
// own address is stale: it is recorded dead, and stale is true.
func (t *memberTable) joined(p peer, leaving bool, now time.Time) (replaced []peer, stale bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if self, ok := t.m[t.self]; ok && p.name != t.self && self.port == p.port && self.ip.Equal(p.ip) {
		// Stale news of a past process at this node's own address.
		t.m[p.name] = &memberEntry{peer: p, state: stateDead, since: now, taken: true}
		return nil, true
	}
	t.m[p.name] = &memberEntry{peer: p, state: stateAlive, since: now, leaving: leaving}
	for name, e := range t.m {
		if name == p.name || name == t.self || e.state == stateLeft || e.taken ||
			e.port != p.port || !e.ip.Equal(p.ip) {
			continue
		}
		if e.state != stateDead {
			e.state, e.since = stateDead, now
			replaced = append(replaced, e.peer)
		}
		e.taken = true
	}
	return replaced, false
}

// updated records a member's new meta or address; it reports whether the
// member has just announced it is leaving.
func (t *memberTable) updated(p peer, leaving bool) (nowLeaving bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[p.name]
	if !ok {
		return false
	}
	nowLeaving = leaving && !e.leaving
	e.peer, e.leaving = p, leaving
	return nowLeaving
}

// gone records memberlist's NotifyLeave: left if the member said it was
// leaving, dead otherwise. changed is false when it was gone already.
func (t *memberTable) gone(name string, now time.Time) (e memberEntry, changed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.m[name]
	if !ok {
		p = &memberEntry{peer: peer{name: name}}
		t.m[name] = p
	} else if p.state == stateDead || p.state == stateLeft {
		return *p, false
	}
	p.state, p.since = stateDead, now
	if p.leaving {
		p.state = stateLeft
	}
	return *p, true
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
	return (e.state == stateDead || e.state == stateLeft) && now.Sub(e.since) > t.forgetAfter
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
type events struct{ n *Node }

var _ memberlist.EventDelegate = (*events)(nil)

// NotifyJoin also fires when a member declared dead comes back: either way
// an anti-entropy session with it is urged (never run here: this runs
// under memberlist's lock).
func (e *events) NotifyJoin(m *memberlist.Node) {
	n := e.n
	p, leaving := peerOf(m)
	replaced, stale := n.members.joined(p, leaving, time.Now())
	if stale {
		n.log.Info().Str("member", p.name).Str("addr", p.addr()).Msg("member failed: this node took its address")
		return
	}
	for _, old := range replaced {
		n.log.Info().Str("member", old.name).Str("addr", old.addr()).Str("by", p.name).
			Msg("member failed: a new member took its address")
	}
	n.log.Info().Str("member", p.name).Str("addr", p.addr()).Msg("member joined")
	if p.name == n.cfg.NodeName {
		return
	}
	// Likes logged from now on are framed for it, not only from the next
	// flush. (logMu is never held while calling memberlist.)
	n.logMu.Lock()
	n.alone = false
	n.logMu.Unlock()
	if n.sync != nil {
		n.sync.urge(p.name)
	}
}

func (e *events) NotifyLeave(m *memberlist.Node) {
	n := e.n
	g, changed := n.members.gone(m.Name, time.Now())
	if !changed {
		n.log.Debug().Str("member", m.Name).Msg("memberlist declared gone a member already gone here")
		return
	}
	msg := "member failed"
	if g.state == stateLeft {
		msg = "member left"
	}
	n.log.Info().Str("member", m.Name).Str("addr", m.Address()).Msg(msg)
}

func (e *events) NotifyUpdate(m *memberlist.Node) {
	n := e.n
	p, leaving := peerOf(m)
	if n.members.updated(p, leaving) {
		n.log.Info().Str("member", p.name).Str("addr", p.addr()).Msg("member leaving")
		return
	}
	n.log.Info().Str("member", p.name).Str("addr", p.addr()).Msg("member updated")
}

// pings clears this node's suspicion of a member that answers one of its
// probes. memberlist calls it from the probe with a copy of the node.
type pings struct{ n *Node }

var _ memberlist.PingDelegate = (*pings)(nil)

func (pings) AckPayload() []byte { return nil }

func (p pings) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	if p.n.members.answered(other.Name, time.Now()) {
		p.n.log.Info().Str("member", other.Name).Msg("suspect member answers again")
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
