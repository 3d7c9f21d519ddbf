package antientropy

import (
	"errors"
	"slices"
	"time"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/wire"
)

// Mode is what a session is for.
type Mode uint8

const (
	ModeSync    Mode = iota + 1 // repair both sides
	ModeFull                    // pull everything from a synced peer, to become synced
	ModeHandoff                 // repair, to learn whether the peer holds all we hold
)

func (m Mode) String() string {
	switch m {
	case ModeSync:
		return "sync"
	case ModeFull:
		return "full"
	case ModeHandoff:
		return "handoff"
	}
	return "mode?"
}

// Action is something the driver must do or may log, returned by Tick,
// Step and the other inputs, in order.
type Action interface{ action() }

// Send asks the driver to deliver Msg to the peer To. A failed delivery is
// reported back with Unreachable.
type Send struct {
	To  string
	Msg *Message
}

// BecameSynced: this node now holds what the cluster held when it joined,
// and may report ready.
type BecameSynced struct {
	Reason string // "full sync", "alone" or "founder"
	From   string // the peer of a full sync
}

// SessionEnded reports a finished session, for logs and metrics.
type SessionEnded struct {
	Peer     string
	Mode     Mode
	Err      error // nil when every difference found was resolved
	Pulled   uint64
	Pushed   uint64 // likes that were new to the peer
	Duration time.Duration
}

// HandedOff: a synced peer that is not leaving holds every like this node
// holds.
type HandedOff struct{ Peer string }

// KeyMismatch: this node refused to compare digests with Peer, whose key
// id differs from its own (a key rotation in progress, a re-key, or a
// peer of another cluster's secret), or who speaks the unkeyed version
// before key ids (Theirs 0). Mine is 0 while this node re-keys. The
// driver logs and counts it; sessions with the peer are tried again later.
type KeyMismatch struct {
	Peer         string
	Mine, Theirs uint64
}

func (Send) action()         {}
func (BecameSynced) action() {}
func (SessionEnded) action() {}
func (HandedOff) action()    {}
func (KeyMismatch) action()  {}

// Errors a session can end with.
var (
	ErrTimeout     = errors.New("antientropy: peer did not answer in time")
	ErrUnreachable = errors.New("antientropy: peer unreachable")
	ErrPeerGone    = errors.New("antientropy: peer left the member list")
	// ErrKeyMismatch ends a session whose two sides' digests are under
	// different keys: nothing is compared or repaired from them.
	ErrKeyMismatch = errors.New("antientropy: peer's digest key differs")
)

// Stats are cumulative counters.
type Stats struct {
	SessionsStarted, SessionsOK, SessionsFailed uint64
	LikesPulled, LikesPushed                    uint64 // new to the receiving side
	NodesCompared, Exchanges, Pulls, Pushes     uint64
	Served                                      uint64 // requests answered
	KeyMismatches                               uint64 // digest comparisons refused: see KeyMismatch
}

type peerInfo struct {
	heard   bool
	synced  bool
	leaving bool
	holds   int // what it recovered from its disk: see founderRank
	// unkeyed: its last expand had no key id (the version before them):
	// no session compares digests with it, and it cannot read ours.
	unkeyed bool
}

// Syncer is one node's anti-entropy state machine. It is not safe for
// concurrent use: one goroutine owns it.
type Syncer struct {
	cfg Config
	r   Replica
	now time.Time

	synced, leaving, handedOff bool
	joinFailures               int
	everSawPeer                bool
	allUnsyncedSince           time.Time

	peers       []string // current members but this node, sorted
	info        map[string]*peerInfo
	retry       map[string]time.Time // peers whose last session failed: try again then
	failures    map[string]int       // consecutive failed sessions per peer
	rr          int
	nextID      uint64
	sessions    map[string]*session
	nextStart   time.Time
	stats       Stats
	lastStarted string
}

// New returns a syncer over replica r. Call Tick to start it.
func New(cfg Config, r Replica) (*Syncer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Syncer{cfg: cfg, r: r, info: map[string]*peerInfo{}, sessions: map[string]*session{}, retry: map[string]time.Time{}, failures: map[string]int{}, nextID: cfg.FirstSession}, nil
}

// Synced reports whether this node holds what the cluster held when it
// joined.
func (s *Syncer) Synced() bool { return s.synced }

// HandedOff reports whether a leaving node's likes are all held by a synced
// peer.
func (s *Syncer) HandedOff() bool { return s.handedOff }

// Stats returns the counters.
func (s *Syncer) Stats() Stats { return s.stats }

func (s *Syncer) flags() Flags {
	var f Flags
	if s.synced {
		f |= FlagSynced
	}
	if s.leaving {
		f |= FlagLeaving
	}
	if !s.synced && !s.allUnsyncedSince.IsZero() {
		switch {
		case s.cfg.Holds:
			f |= FlagHolds
		case s.cfg.Partial:
			f |= FlagPartial
		}
	}
	return f
}

// SetPeers tells the syncer the current members other than itself. Sessions
// with peers no longer present end.
func (s *Syncer) SetPeers(now time.Time, peers []string) []Action {
	s.now = now
	s.peers = slices.Sorted(slices.Values(peers))
	s.peers = slices.DeleteFunc(s.peers, func(p string) bool { return p == s.cfg.Name })
	s.peers = slices.Compact(s.peers)
	if len(s.peers) > 0 {
		s.everSawPeer = true
	}
	var out []Action
	for p, ss := range s.sessions {
		if !slices.Contains(s.peers, p) {
			out = append(out, s.end(ss, ErrPeerGone)...)
		}
	}
	for p := range s.info {
		if !slices.Contains(s.peers, p) {
			delete(s.info, p)
		}
	}
	for p := range s.retry {
		if !slices.Contains(s.peers, p) {
			delete(s.retry, p)
			delete(s.failures, p)
		}
	}
	return out
}

// JoinAttempted tells the syncer how a join went: reached says whether it
// reached at least one other node.
func (s *Syncer) JoinAttempted(now time.Time, reached bool) {
	s.now = now
	if reached {
		s.joinFailures = 0
		return
	}
	s.joinFailures++
}

// Leave starts the hand-off: from now on sessions go to synced peers that
// are not leaving, until one finds nothing of ours the peer lacked.
func (s *Syncer) Leave(now time.Time) []Action {
	s.now = now
	if s.leaving {
		return nil
	}
	s.leaving = true
	if !s.everSawPeer && summaryOf(s.r, root).Count == 0 {
		// Never part of a cluster and holding nothing: nothing to hand off.
		// One that holds likes waits for a peer like any other (its driver
		// bounds the wait).
		s.handedOff = true
		return []Action{HandedOff{}}
	}
	s.nextStart = now
	return s.Tick(now)
}

// Urge starts a session with peer now, outside the round robin and the
// session limit, unless one is running: the driver knows the peer missed
// fast-path batches and has just become reachable again.
func (s *Syncer) Urge(now time.Time, peer string) []Action {
	s.now = now
	if _, busy := s.sessions[peer]; busy || !slices.Contains(s.peers, peer) || !s.synced || s.leaving {
		return nil
	}
	if i := s.info[peer]; i == nil || !i.synced || i.unkeyed {
		return nil // an unkeyed peer cannot read our digests; a joining peer pulls everything itself; pushing to it too would send the state twice
	}
	return s.start(peer, ModeSync)
}

// Unreachable reports that a message to peer could not be delivered.
func (s *Syncer) Unreachable(now time.Time, peer string) []Action {
	s.now = now
	if ss, ok := s.sessions[peer]; ok {
		return s.end(ss, ErrUnreachable)
	}
	return nil
}

// Tick advances the clock: sessions that waited too long end, and a new one
// starts when one is due.
func (s *Syncer) Tick(now time.Time) []Action {
	s.now = now
	var out []Action
	for _, ss := range s.sessions {
		if now.Sub(ss.heard) > s.cfg.SessionTimeout {
			out = append(out, s.end(ss, ErrTimeout)...)
		}
	}
	if !s.synced {
		if a, ok := s.syncedWithoutPeers(); ok {
			s.synced = true
			out = append(out, a)
		}
	}
	if s.synced && !s.leaving && len(s.sessions) < s.cfg.MaxSessions {
		// A peer whose session failed (cut off, paused) is tried again soon,
		// not at its turn: what either side took meanwhile should cross as
		// soon as the network lets it.
		for _, p := range s.peers {
			if at, ok := s.retry[p]; ok && !now.Before(at) && s.sessions[p] == nil && len(s.sessions) < s.cfg.MaxSessions {
				delete(s.retry, p)
				out = append(out, s.start(p, ModeSync)...)
			}
		}
	}
	if len(s.sessions) >= s.cfg.MaxSessions || now.Before(s.nextStart) || (s.leaving && s.handedOff) {
		return out
	}
	if (!s.synced || s.leaving) && len(s.sessions) > 0 {
		return out // one full sync or hand-off at a time: its outcome decides the next
	}
	peer, mode, ok := s.choose()
	if !ok {
		return out
	}
	s.nextStart = now.Add(s.cfg.SyncInterval)
	return append(out, s.start(peer, mode)...)
}

// syncedWithoutPeers decides whether this node is synced by being alone,
// or as the founder of a cluster that restarted empty.
func (s *Syncer) syncedWithoutPeers() (Action, bool) {
	if len(s.peers) == 0 {
		if !s.cfg.HasSeeds || (!s.everSawPeer && s.joinFailures >= s.cfg.JoinAttempts) {
			return BecameSynced{Reason: "alone"}, true
		}
		return nil, false
	}
	for _, p := range s.peers {
		if i := s.info[p]; i == nil || !i.heard || i.synced {
			s.allUnsyncedSince = time.Time{}
			return nil, false
		}
	}
	if s.allUnsyncedSince.IsZero() {
		s.allUnsyncedSince = s.now
	}
	if s.now.Sub(s.allUnsyncedSince) >= s.cfg.FoundAfter && s.founds() {
		return BecameSynced{Reason: "founder"}, true
	}
	return nil, false
}

// founderRank orders founder candidates: a member that recovered likes
// intact (2), one that recovered some from a damaged disk (1), an empty one
// (0).
func founderRank(holds, partial bool) int {
	switch {
	case holds:
		return 2
	case partial:
		return 1
	}
	return 0
}

// founds decides who founds a cluster whose every member is unsynced: the
// lowest name among the members of the best rank. So a cluster restarted
// whole starts from what its members recovered, intact if any member's is,
// never empty while one holds likes; the others then sync from the founder
// and anti-entropy repairs the rest.
func (s *Syncer) founds() bool {
	mine := founderRank(s.cfg.Holds, s.cfg.Partial)
	best := mine
	for _, p := range s.peers {
		best = max(best, s.info[p].holds)
	}
	if mine < best {
		return false
	}
	for _, p := range s.peers {
		if p < s.cfg.Name && s.info[p].holds == best {
			return false
		}
	}
	return true
}

// choose picks the next session's peer and mode.
func (s *Syncer) choose() (string, Mode, bool) {
	if len(s.peers) == 0 {
		return "", 0, false
	}
	next := func(ok func(p string, i *peerInfo) bool) (string, bool) {
		for k := range s.peers {
			p := s.peers[(s.rr+k)%len(s.peers)]
			if _, busy := s.sessions[p]; busy {
				continue
			}
			i := s.info[p]
			if i == nil {
				i = &peerInfo{}
			}
			if ok(p, i) {
				s.rr = (s.rr + k + 1) % len(s.peers)
				return p, true
			}
		}
		return "", false
	}
	syncedPeer := func(_ string, i *peerInfo) bool { return i.synced && !i.leaving }
	switch {
	case s.leaving:
		// A hand-off compares digests: not with an unkeyed peer.
		if p, ok := next(func(p string, i *peerInfo) bool { return syncedPeer(p, i) && !i.unkeyed }); ok {
			return p, ModeHandoff, true
		}
		// What this node last heard may be stale (a peer heard only while it
		// was syncing): try anyone not known to be leaving. Only a session
		// answered throughout by a synced peer counts.
		if p, ok := next(func(_ string, i *peerInfo) bool { return !i.leaving && !i.unkeyed }); ok {
			return p, ModeHandoff, true
		}
		return "", 0, false
	case !s.synced:
		if p, ok := next(syncedPeer); ok {
			return p, ModeFull, true
		}
		// A full pull from a peer not heard from yet, or last heard
		// unsynced (news that may be stale), counts only if every answer
		// says it is synced; either way it repairs.
		if p, ok := next(func(_ string, i *peerInfo) bool { return !i.heard }); ok {
			return p, ModeFull, true
		}
		if p, ok := next(func(_ string, i *peerInfo) bool { return !i.leaving }); ok {
			return p, ModeFull, true
		}
		return "", 0, false
	}
	// A peer known to be unsynced is pulling everything in its own full
	// sync: a session with it now would only descend into what it has not
	// pulled yet. An unkeyed one cannot compare digests with us. (A full
	// sync pulls, and compares nothing: any peer serves it.)
	p, ok := next(func(_ string, i *peerInfo) bool { return !(i.heard && !i.synced) && !i.unkeyed })
	return p, ModeSync, ok
}

// Step handles a message from a peer.
func (s *Syncer) Step(now time.Time, m *Message) []Action {
	s.now = now
	if m.From == s.cfg.Name {
		return nil
	}
	i := s.info[m.From]
	if i == nil {
		i = &peerInfo{}
		s.info[m.From] = i
	}
	// An expand tells whether the peer keys its digests; nothing else does
	// (a refusal from a peer re-keying names no key either).
	unkeyed := i.unkeyed
	if m.Kind == KindExpand {
		unkeyed = m.KeyID == 0
	}
	*i = peerInfo{heard: true, synced: m.Flags&FlagSynced != 0, leaving: m.Flags&FlagLeaving != 0, holds: founderRank(m.Flags&FlagHolds != 0, m.Flags&FlagPartial != 0), unkeyed: unkeyed}
	if m.Kind.IsRequest() {
		s.stats.Served++
		if m.Kind == KindExpand {
			return s.respondExpand(m)
		}
		return []Action{Send{To: m.From, Msg: s.respond(m)}}
	}
	ss, ok := s.sessions[m.From]
	if !ok || ss.id != m.Session {
		return nil // a session that already ended
	}
	req, ok := ss.pending[m.Req]
	if !ok || req.kind+1 != m.Kind {
		return nil
	}
	delete(ss.pending, m.Req)
	ss.heard = now
	if m.Kind == KindExpandResp {
		// The probes were summarised under ss.keyID: compare only answers
		// under it, while this replica is still under it.
		if mine := s.r.DigestKeyID(); m.KeyID != ss.keyID || mine != ss.keyID {
			s.stats.KeyMismatches++
			return append(s.end(ss, ErrKeyMismatch), KeyMismatch{Peer: m.From, Mine: mine, Theirs: m.KeyID})
		}
	}
	if m.Flags&FlagSynced == 0 || m.Flags&FlagLeaving != 0 {
		ss.peerNotReady = true // what it served may predate its own sync
	}
	s.handle(ss, req, m)
	return s.flush(ss)
}

// respond answers a request. It keeps no state.
func (s *Syncer) respond(m *Message) *Message {
	out := &Message{Kind: m.Kind + 1, From: s.cfg.Name, Flags: s.flags(), Session: m.Session, Req: m.Req}
	budget := s.cfg.MaxMessageBytes - 64
	switch m.Kind {
	case KindExpand:
		for _, p := range m.Probes {
			if m.KeyID == 0 { // a leaving unkeyed peer: see respondExpand
				out.Results = append(out.Results, Expansion{})
				continue
			}
			mine := summaryOf(s.r, p.Node)
			var x Expansion
			switch {
			case mine == p.Sum:
				x.Equal = true
			case p.Node.isBucket():
				x.Sum = mine
				lo, _ := p.Node.buckets()
				posts, more := s.r.BucketPosts(lo, p.FromStart, p.After, max(1, budget/64))
				for k, ps := range posts {
					budget -= wire.StringLen(ps.Post) + 18
					if budget < 0 && k > 0 {
						posts, more = posts[:k], true
						break
					}
				}
				x.Posts, x.More = posts, more
			default:
				x.Sum = mine
				x.Children = childrenOf(s.r, p.Node)
				budget -= 16 * 18
			}
			out.Results = append(out.Results, x)
		}
	case KindExchange:
		var theirs []store.Like
		for k, it := range m.Items {
			theirs = append(theirs, it.Likes...)
			if budget <= 0 { // full: the requester pulls the rest
				out.Partial = append(out.Partial, uint32(k))
				continue
			}
			mine, _, done := s.r.Scan(it.Node.storeRange(), store.Cursor{}, budget)
			have := make(map[string]struct{}, len(it.Likes))
			for _, l := range it.Likes {
				have[l.Post+"\x00"+l.User] = struct{}{}
			}
			for _, l := range mine {
				if _, ok := have[l.Post+"\x00"+l.User]; !ok {
					out.Likes = append(out.Likes, l)
					budget -= wire.StringLen(l.Post) + wire.StringLen(l.User)
				}
			}
			if !done {
				out.Partial = append(out.Partial, uint32(k))
			}
		}
		out.Added = uint64(len(s.r.Merge(theirs)))
	case KindPull:
		out.Node = m.Node
		out.Likes, out.Cursor, out.Done = s.r.Scan(m.Node.storeRange(), m.Cursor, s.cfg.ChunkBytes)
	case KindPush:
		out.Node = m.Node
		out.Added = uint64(len(s.r.Merge(m.Likes)))
	}
	return out
}

// respondExpand answers an expand only when its digests are under this
// replica's key, read before and after the answer is built; else it
// refuses: an answer without results that names this node's key id, so
// the initiator ends its session at once rather than timing out.
//
// A peer of the unkeyed version gets no answer (it could not read a keyed
// one), except when it is leaving: it is then told this node holds
// nothing, in its own format, so its hand-off pushes every like it holds
// once and ends when the pushes find nothing new here (push answers count
// what was new, under no key). Without this, the last node of the old
// version in a rolling upgrade could hand off to no one.
func (s *Syncer) respondExpand(m *Message) []Action {
	mine := s.r.DigestKeyID()
	if m.KeyID == 0 {
		if m.Flags&FlagLeaving != 0 {
			return []Action{Send{To: m.From, Msg: s.respond(m)}}
		}
		s.stats.KeyMismatches++
		return []Action{KeyMismatch{Peer: m.From, Mine: mine, Theirs: 0}}
	}
	if mine != 0 && m.KeyID == mine {
		out := s.respond(m)
		if out.KeyID = mine; s.r.DigestKeyID() == mine {
			return []Action{Send{To: m.From, Msg: out}}
		}
	}
	s.stats.KeyMismatches++
	refusal := &Message{Kind: KindExpandResp, From: s.cfg.Name, Flags: s.flags(), Session: m.Session, Req: m.Req, KeyID: mine}
	return []Action{Send{To: m.From, Msg: refusal}, KeyMismatch{Peer: m.From, Mine: mine, Theirs: m.KeyID}}
}

// session is the initiator's side of one session.
type session struct {
	id        uint64
	peer      string
	mode      Mode
	keyID     uint64 // the digest key its probes are under
	started   time.Time
	heard     time.Time
	nextReq   uint64
	pending   map[uint64]*request
	expands   []Probe
	exchanges []Item
	streams   []*stream // not yet started
	inFlight  int       // streams started and not finished
	pulled    uint64
	pushed    uint64
	out       []Action // sends queued while handling a response
	// peerNotReady: some answer came from the peer while it was not synced,
	// or leaving; such a session proves nothing for readiness or hand-off.
	peerNotReady bool
}

type request struct {
	kind   Kind
	probes []Probe
	items  []Item
	stream *stream
}

type stream struct {
	push bool
	node Node
	cur  store.Cursor
	done bool // push: the last chunk was sent
}

func (s *Syncer) start(peer string, mode Mode) []Action {
	keyID := s.r.DigestKeyID()
	if keyID == 0 && mode != ModeFull {
		// Re-keying: nothing to compare until it ends. A full sync only
		// pulls, and goes on.
		s.retry[peer] = s.now.Add(s.cfg.SyncInterval / 5)
		return nil
	}
	s.nextID++
	ss := &session{id: s.nextID, peer: peer, mode: mode, keyID: keyID, started: s.now, heard: s.now, pending: map[uint64]*request{}}
	s.sessions[peer] = ss
	s.stats.SessionsStarted++
	s.lastStarted = peer
	if mode == ModeFull {
		for i := range gset.Fanout {
			ss.streams = append(ss.streams, &stream{node: root.child(i)})
		}
	} else {
		ss.expands = append(ss.expands, Probe{Node: root, Sum: summaryOf(s.r, root), FromStart: true})
	}
	return s.flush(ss)
}

// handle applies a response to its session's work.
func (s *Syncer) handle(ss *session, req *request, m *Message) {
	switch m.Kind {
	case KindExpandResp:
		for k, p := range req.probes {
			if k >= len(m.Results) {
				// A response that lost probes: ask again for the rest.
				ss.expands = append(ss.expands, req.probes[k:]...)
				break
			}
			s.stats.NodesCompared++
			x := m.Results[k]
			switch {
			case x.Equal:
			case p.Node.isBucket():
				s.compareBucket(ss, p, x)
			default:
				mine := childrenOf(s.r, p.Node)
				for c := range mine {
					s.decide(ss, p.Node.child(c), mine[c], x.Children[c])
				}
			}
		}
	case KindExchangeResp:
		ss.pulled += uint64(len(s.r.Merge(m.Likes)))
		ss.pushed += m.Added
		for _, k := range m.Partial {
			if int(k) < len(req.items) {
				ss.streams = append(ss.streams, &stream{node: req.items[k].Node})
			}
		}
	case KindPullResp:
		st := req.stream
		ss.pulled += uint64(len(s.r.Merge(m.Likes)))
		if m.Done || len(m.Likes) == 0 {
			ss.inFlight--
			return
		}
		st.cur = m.Cursor
		s.send(ss, &request{kind: KindPull, stream: st}, &Message{Kind: KindPull, Node: st.node, Cursor: st.cur})
	case KindPushResp:
		st := req.stream
		ss.pushed += m.Added
		if st.done {
			ss.inFlight--
			return
		}
		s.pushChunk(ss, st)
	}
}

// compareBucket compares a page of the peer's posts in a bucket with ours.
func (s *Syncer) compareBucket(ss *session, p Probe, x Expansion) {
	lo, _ := p.Node.buckets()
	mine, _ := s.r.BucketPosts(lo, p.FromStart, p.After, 1<<30)
	if x.More && len(x.Posts) > 0 {
		last := x.Posts[len(x.Posts)-1].Post
		mine = slices.DeleteFunc(mine, func(ps store.PostSummary) bool { return ps.Post > last })
	}
	i, j := 0, 0
	for i < len(mine) || j < len(x.Posts) {
		switch {
		case j == len(x.Posts) || (i < len(mine) && mine[i].Post < x.Posts[j].Post):
			s.decide(ss, postNode(mine[i].Post, 0, 0), mine[i].Summary, gset.Summary{})
			i++
		case i == len(mine) || x.Posts[j].Post < mine[i].Post:
			s.decide(ss, postNode(x.Posts[j].Post, 0, 0), gset.Summary{}, x.Posts[j].Summary)
			j++
		default:
			s.decide(ss, postNode(mine[i].Post, 0, 0), mine[i].Summary, x.Posts[j].Summary)
			i++
			j++
		}
	}
	if x.More {
		next := Probe{Node: p.Node, Sum: summaryOf(s.r, p.Node)}
		if len(x.Posts) > 0 {
			next.After = x.Posts[len(x.Posts)-1].Post
		} else {
			next.FromStart, next.After = p.FromStart, p.After
		}
		ss.expands = append(ss.expands, next)
	}
}

// decide chooses how to resolve one node whose summaries are mine and
// theirs.
func (s *Syncer) decide(ss *session, n Node, mine, theirs gset.Summary) {
	total := mine.Count + theirs.Count
	oneSided := mine.Count == 0 || theirs.Count == 0
	switch {
	case mine == theirs:
	case mine.Count == 0 && ss.mode == ModeHandoff:
		// A leaving node only needs the peer to hold what it holds.
	case total <= s.cfg.SmallRange || !n.expandable() || (oneSided && total <= bulkFactor*s.cfg.SmallRange):
		// Few likes, or a modest number on one side only: many such nodes
		// travel together in one exchange message.
		likes, _, done := s.r.Scan(n.storeRange(), store.Cursor{}, s.cfg.ChunkBytes)
		if !done { // grew since it was summarised: descend instead
			ss.expands = append(ss.expands, Probe{Node: n, Sum: summaryOf(s.r, n), FromStart: true})
			return
		}
		ss.exchanges = append(ss.exchanges, Item{Node: n, Likes: likes})
	case theirs.Count == 0 && s.peerUnsynced(ss.peer):
		// An unsynced peer is pulling everything in its own full sync.
	case theirs.Count == 0:
		ss.streams = append(ss.streams, &stream{push: true, node: n})
	case mine.Count == 0:
		ss.streams = append(ss.streams, &stream{node: n})
	default:
		ss.expands = append(ss.expands, Probe{Node: n, Sum: mine, FromStart: true})
	}
}

// peerUnsynced reports whether peer last said it is not synced.
func (s *Syncer) peerUnsynced(peer string) bool {
	i := s.info[peer]
	return i != nil && i.heard && !i.synced
}

// bulkFactor: a node whose likes are all on one side is exchanged, not
// streamed, up to this many times SmallRange likes.
const bulkFactor = 16

// maxItems bounds the nodes of one exchange message, so its answer stays
// well under MaxMessageBytes (what does not fit is pulled).
const maxItems = 256

// flush sends the session's queued work and ends it when nothing is left.
func (s *Syncer) flush(ss *session) []Action {
	for len(ss.expands) > 0 {
		n := min(len(ss.expands), 256)
		probes := slices.Clone(ss.expands[:n])
		ss.expands = ss.expands[n:]
		s.send(ss, &request{kind: KindExpand, probes: probes}, &Message{Kind: KindExpand, Probes: probes})
	}
	for len(ss.exchanges) > 0 {
		n, size := 0, 0
		for n < len(ss.exchanges) && n < maxItems && (n == 0 || size < s.cfg.ChunkBytes) {
			for _, l := range ss.exchanges[n].Likes {
				size += wire.StringLen(l.Post) + wire.StringLen(l.User)
			}
			n++
		}
		items := slices.Clone(ss.exchanges[:n])
		ss.exchanges = ss.exchanges[n:]
		s.stats.Exchanges += uint64(len(items))
		s.send(ss, &request{kind: KindExchange, items: items}, &Message{Kind: KindExchange, Items: items})
	}
	for len(ss.streams) > 0 && ss.inFlight < s.cfg.MaxStreams {
		st := ss.streams[0]
		ss.streams = ss.streams[1:]
		ss.inFlight++
		if st.push {
			s.stats.Pushes++
			s.pushChunk(ss, st)
		} else {
			s.stats.Pulls++
			s.send(ss, &request{kind: KindPull, stream: st}, &Message{Kind: KindPull, Node: st.node})
		}
	}
	out := ss.out
	ss.out = nil
	if len(ss.pending) == 0 && len(ss.streams) == 0 {
		out = append(out, s.end(ss, nil)...)
	}
	return out
}

// send queues m to the session's peer as request req.
func (s *Syncer) send(ss *session, req *request, m *Message) {
	ss.nextReq++
	m.From, m.Flags, m.Session, m.Req = s.cfg.Name, s.flags(), ss.id, ss.nextReq
	if m.Kind == KindExpand {
		m.KeyID = ss.keyID
	}
	ss.pending[ss.nextReq] = req
	ss.out = append(ss.out, Send{To: ss.peer, Msg: m})
}

// pushChunk sends the stream's next chunk of our likes.
func (s *Syncer) pushChunk(ss *session, st *stream) {
	likes, next, done := s.r.Scan(st.node.storeRange(), st.cur, s.cfg.ChunkBytes)
	st.cur, st.done = next, done
	s.send(ss, &request{kind: KindPush, stream: st}, &Message{Kind: KindPush, Node: st.node, Likes: likes})
}

// end closes a session and reports what it achieved.
func (s *Syncer) end(ss *session, err error) []Action {
	delete(s.sessions, ss.peer)
	s.stats.LikesPulled += ss.pulled
	s.stats.LikesPushed += ss.pushed
	out := []Action{SessionEnded{Peer: ss.peer, Mode: ss.mode, Err: err, Pulled: ss.pulled, Pushed: ss.pushed, Duration: s.now.Sub(ss.started)}}
	urgent := !s.synced || (s.leaving && !s.handedOff)
	if err != nil {
		s.stats.SessionsFailed++
		if err != ErrPeerGone {
			// Soon after a first failure (the network may be back), then
			// backing off to 4 sync intervals for a peer that stays away.
			n := min(s.failures[ss.peer], 5)
			s.failures[ss.peer]++
			s.retry[ss.peer] = s.now.Add(min(s.cfg.SyncInterval/5<<n, 4*s.cfg.SyncInterval))
		}
		if urgent { // try another peer soon, not a whole interval later
			s.nextStart = s.now.Add(s.cfg.SyncInterval / 5)
		}
		return out
	}
	s.stats.SessionsOK++
	delete(s.retry, ss.peer)
	delete(s.failures, ss.peer)
	peer := s.info[ss.peer]
	peerSynced := peer != nil && peer.synced && !peer.leaving && !ss.peerNotReady
	switch {
	case ss.mode == ModeFull && peerSynced && !s.synced:
		s.synced = true
		out = append(out, BecameSynced{Reason: "full sync", From: ss.peer})
		// The peer it pulled from may lack likes another peer holds (it
		// was cut off from it a moment ago): compare with every other
		// peer now, as slots free, rather than one per SyncInterval.
		// Not peers still joining (they pull everything themselves), not
		// leaving ones, and a failing peer keeps its backoff.
		for _, p := range s.peers {
			i := s.info[p]
			if _, backoff := s.retry[p]; p != ss.peer && !backoff && !s.peerUnsynced(p) && (i == nil || !i.leaving) {
				s.retry[p] = s.now
			}
		}
	case ss.mode == ModeHandoff && peerSynced && ss.pushed == 0:
		s.handedOff = true
		out = append(out, HandedOff{Peer: ss.peer})
	}
	if !s.synced || (s.leaving && !s.handedOff) {
		s.nextStart = s.now // not there yet: go again at once
	}
	return out
}
