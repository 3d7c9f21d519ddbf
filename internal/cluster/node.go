package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/antientropy"
	"github.com/likesd/likesd/internal/dropq"
	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/link"
	"github.com/likesd/likesd/internal/stat"
	"github.com/likesd/likesd/internal/store"
)

// Replica is what the cluster needs from the local store: merging likes
// from peers, the digests, listings and scans anti-entropy compares and
// serves, and when what it holds is durable. internal/store satisfies it.
type Replica interface {
	antientropy.Replica
	// WaitDurable waits until every like the replica held when it was
	// called is durable (at once in memory), or ctx ends; it checks
	// before it looks at ctx.
	WaitDurable(ctx context.Context) error
	// AfterDurable calls fn once every like the replica holds now is
	// durable; fn must not block.
	AfterDurable(fn func())
	// Rekey recomputes every digest under k (see store.Rekey); the
	// replica's DigestKeyID is 0 until it returns.
	Rekey(k gset.Key)
}

// Member is one node as this node sees it.
type Member struct {
	Name  string
	Addr  string // host:port of its gossip endpoint
	State string // alive, suspect, dead or left
	// Breaker is this node's circuit breaker for the member: closed, open
	// or half-open; empty for this node itself.
	Breaker string
	// Link is the phase of this node's fast-path link to the member
	// (internal/link): idle, sending, stalled, down, or none; empty for
	// this node itself.
	Link string
}

// Stats are cumulative counters since Start.
type Stats struct {
	LikesQueued    uint64 // likes framed on the fast path (and forwarded, in gossip mode)
	FramesQueued   uint64
	BytesQueued    uint64
	FramesReceived uint64 // fast-path frames
	BytesReceived  uint64
	LikesReceived  uint64
	LikesApplied   uint64 // received on the fast path and new here
	// FramesRefused counts fast-path frames that came through memberlist
	// in the name of a peer that sends its own on its session: dropped
	// (anti-entropy brings what is real).
	FramesRefused   uint64
	LogOverrun      uint64 // likes that left the log before being framed (healed by anti-entropy)
	LoggedAlone     uint64 // likes a lone node counted framed and sent to no one (see Node.alone)
	InboxDropped    uint64 // messages dropped: inbox full
	FramesPruned    uint64 // frames pruned from the broadcast queue
	DecodeErrors    uint64
	DirectSent      uint64 // batches sent straight to a peer
	DirectErrors    uint64 // batches a peer could not be sent
	PeerDropped     uint64 // batches dropped from a full peer queue
	StreamsDialed   uint64 // streams this node opened to peers (stream.go)
	StreamsAccepted uint64 // streams peers opened to this node
	StreamResets    uint64 // streams this node reset: a stall, a breaker opening
	StreamsInbound  uint64 // streams peers opened to this node open now, handshake done (a gauge; at most MaxStreams)
	StreamsRefused  uint64 // streams closed as their handshake ended: MaxStreams were open
	// HandshakesPending is the stream handshakes in progress (a gauge; at
	// most MaxHandshakes); HandshakesCut counts those closed for a newer
	// one because MaxHandshakes were.
	HandshakesPending uint64
	HandshakesCut     uint64
	// StreamsDisplaced counts streams closed because a newer one named
	// the same peer and MaxStreamsPerPeer were open.
	StreamsDisplaced uint64
	StreamsTimedOut  uint64 // accepted streams closed: a handshake or a message not whole within TCPTimeout
	StreamBuffered   uint64 // bytes of buffer held by stream messages being read (a gauge)
	// HandshakesRefused counts stream handshakes refused, either way, by
	// reason (session.go).
	HandshakesRefused HandshakeRefusals

	SyncSessions    uint64 // anti-entropy sessions this node started and ended
	SyncFailed      uint64 // of which ended by a timeout or an unreachable peer
	SyncPulled      uint64 // likes new here that sessions brought
	SyncPushed      uint64 // likes new to peers that sessions sent
	SyncBytesIn     uint64
	SyncBytesOut    uint64
	SyncDropped     uint64 // sync messages dropped: a queue was full
	SyncStreamed    uint64 // sync messages sent on a session (the rest, to peers of the previous version, through memberlist, a connection each)
	HandoffTimeouts uint64 // hand-offs cut short by the shutdown bound
	// SyncKeyMismatches counts digest comparisons refused because this
	// node's and the peer's digest keys differ (a rotation in progress,
	// or a peer of the version before key ids).
	SyncKeyMismatches uint64
	SyncRekeys        uint64 // times the replica was re-keyed: the primary key changed
	// SyncRefused counts sync messages that came through memberlist in
	// the name of a peer that sends its own on its session, or of no
	// member: dropped.
	SyncRefused uint64

	WritesMet       uint64 // writes that reached their level (201/200)
	WritesAccepted  uint64 // writes answered before reaching it (202)
	WritesAbandoned uint64 // writes whose client went away while they waited
	WritesWaiting   uint64 // writes waiting for acknowledgements now
	WritesUnsynced  uint64 // writes this node did not count itself for: its disk did not sync them in time
	AcksSent        uint64 // ack messages sent to origins
	AcksStreamed    uint64 // of which on the origin's stream (the rest through memberlist)
	AcksReceived    uint64 // ack messages received from peers
	AckErrors       uint64 // ack runs that could not be sent or were dropped
	// AcksRefused counts acks that came through memberlist under the name
	// of a peer that acknowledges on its session: not its, so not counted.
	AcksRefused    uint64
	BreakerSkipped uint64 // fast-path frames not queued: the peer's breaker was open
	BreakerOpened  uint64 // times a peer's breaker opened
}

type counters struct {
	likesQueued, framesQueued, bytesQueued, framesReceived, bytesReceived atomic.Uint64
	likesReceived, likesApplied, logOverrun, inboxDropped, framesPruned   atomic.Uint64
	loggedAlone, framesRefused                                            atomic.Uint64
	decodeErrors                                                          atomic.Uint64
	streamsDialed, streamsAccepted, streamResets                          atomic.Uint64
}

// frameOverhead is what memberlist may add around one of our frames in a
// gossip packet, besides the label: compound and user-message headers (5
// bytes), the label's header (2) and AES-GCM (version, nonce, tag: 29, or
// 45 with the old padded format). A frame larger than the packet minus this
// and the label is never sent, so it is reserved generously.
const frameOverhead = 64

// maxFrame is the largest frame that always fits one gossip packet.
func (c Config) maxFrame() int { return c.PacketSize - frameOverhead - len(c.Label) }

// ErrClosed is returned by Start on a closed node.
var ErrClosed = errors.New("cluster: node closed")

// Node is this process's membership in the cluster.
type Node struct {
	cfg    Config
	log    zerolog.Logger
	origin uint64                 // this process start's identity in dots
	inbox  *dropq.Queue[received] // full: dropped, counted in InboxDropped
	stats  counters

	started int64 // when New ran (Unix ns), in the node meta (members.go)

	// logMu guards the log of this node's recent likes: seq is the last
	// dot assigned, framed the last one framed, and like s lives at
	// ring[s % len(ring)] while s > framed and s > seq-len(ring). The ring
	// starts small and doubles, up to LogSize, only when likes wait
	// unframed (a bulk import logs 10,000 at once); framed slots are
	// cleared, and a ring no flush has needed whole for ringShrinkAfter
	// goes back to its first size. So a node that keeps up holds a few KiB
	// here, not LogSize likes and their ids (2 MiB and more at the default).
	logMu     sync.Mutex
	ring      []store.Like
	seq       uint64
	framed    uint64
	ringGrown time.Time // when the ring last doubled, or a flush needed more than its first size
	// alone is set by each flush: the fast path had no peer to send to;
	// a join clears it at once. Likes of writes at level one logged while
	// alone and nothing waits unframed are counted framed at once, sent to
	// no one: a peer that joins later gets them by its full sync or by
	// anti-entropy (a peer back from dead does no full sync). A bulk
	// import into a single node then holds no ring of likes nor builds
	// frames for nobody.
	alone bool

	// Set once by Start, read-only after.
	replica Replica
	guard   *peerGuard // replica is it: every like from peers is checked (guard.go)
	ml      *memberlist.Memberlist
	queue   *memberlist.TransmitLimitedQueue
	cancel  context.CancelFunc
	flushCh chan struct{} // closed by Close: flush what is left, then stop
	kick    chan struct{} // a full batch is waiting in the log
	strays  chan string   // addresses of members that probed a past process here

	// senders are the connections of the links (direct.go) and of
	// anti-entropy's own links, by peer.
	sendersMu sync.Mutex
	senders   map[string]*peerSender

	// The streams (stream.go): mux is nil when the transport cannot dial
	// by address, and the fast path then uses SendReliable.
	mux     *muxTransport
	keys    *keyring // nil: plaintext
	inbound inbound

	sync   *syncDriver
	writes *writes
	acker  acker

	mlReady  atomic.Pointer[memberlist.Memberlist] // for callbacks racing Start
	selfAddr string                                // set once by Start
	joined   atomic.Bool
	// members is this node's view of the cluster (members.go): the only
	// place the rest of the package reads membership from.
	members *memberTable
	leaving atomic.Bool // announced in the node meta by Close
	// sends counts the goroutines of sends and probes in flight
	// (direct.go) and of acks (acker).
	sends sync.WaitGroup

	wg        sync.WaitGroup
	flushWG   sync.WaitGroup
	startOnce sync.Once
	closeOnce sync.Once
	closed    atomic.Bool
	closeDone chan struct{} // made by Close; closed when its sequence ended
	halted    atomic.Bool   // Close's bound ended: senders send no more
}

// New returns a node that is not yet part of any cluster. Likes handed to it
// before Start wait in its log.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("cluster: origin: %w", err)
	}
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger.With().Str("component", "cluster").Str("node", cfg.NodeName).Logger(),
		origin:  binary.BigEndian.Uint64(b[:]) | 1, // never 0
		started: time.Now().UnixNano(),
		ring:    make([]store.Like, min(cfg.LogSize, initialLogRing)),
		flushCh: make(chan struct{}),
		kick:    make(chan struct{}, 1),
		strays:  make(chan string, 16),
		members: newMemberTable(cfg.NodeName, cfg.gossipToTheDeadTime()),
	}
	n.inbox = dropq.New[received](cfg.InboxSize, &n.stats.inboxDropped)
	switch {
	case cfg.Keyring != nil:
		n.keys = &keyring{ring: cfg.Keyring}
	case len(cfg.SecretKey) > 0:
		ring, err := memberlist.NewKeyring(nil, cfg.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("cluster: secret key: %w", err)
		}
		n.keys = &keyring{ring: ring}
	}
	n.writes = newWrites(cfg, writesDeps{
		log: n.log, origin: n.origin, timeout: cfg.Writes.Timeout,
		carry: n.carry, notes: n.logNotes, view: n.memberView,
		// n.sync is set by start, before any goroutine that updates
		// the links runs (as before, read when a breaker closes).
		urge: func(peer string) { n.sync.urge(peer) },
	})
	n.acker = acker{
		name: cfg.NodeName, log: n.log, sendAck: n.sendAck, sends: &n.sends,
		sent: &n.writes.stats.acksSent, errs: &n.writes.stats.ackErrors,
	}
	n.queue = &memberlist.TransmitLimitedQueue{
		NumNodes: func() int {
			if ml := n.mlReady.Load(); ml != nil {
				return ml.NumMembers()
			}
			return 1
		},
		RetransmitMult: cfg.RetransmitMult,
	}
	return n, nil
}

// Start binds the gossip ports, applies likes from replica's peers into
// replica, and joins the seeds in the background (with retry). It returns
// once the node listens; Joined reports when it has joined.
func (n *Node) Start(replica Replica) error {
	if n.closed.Load() {
		return ErrClosed
	}
	err := errors.New("cluster: already started")
	n.startOnce.Do(func() { err = n.start(replica) })
	return err
}

func (n *Node) start(replica Replica) error {
	n.guard = newPeerGuard(replica, n.cfg.MaxIDBytes, n.cfg.Memory, n.log)
	replica = n.guard
	n.replica = replica
	sd, err := newSyncDriver(n.cfg, syncDeps{
		log: n.log, replica: replica, primaryKey: n.primaryKey,
		syncPeers: n.syncPeers, sendTo: n.sendTo, dropLink: n.dropLink,
	})
	if err != nil {
		return err
	}
	n.sync = sd
	mlc := memberlist.DefaultLANConfig()
	mlc.Name = n.cfg.NodeName
	mlc.BindAddr = n.cfg.BindAddr
	mlc.BindPort = n.cfg.BindPort
	mlc.AdvertiseAddr = n.cfg.AdvertiseAddr
	mlc.AdvertisePort = n.cfg.AdvertisePort
	if n.cfg.AdvertisePort == 0 {
		mlc.AdvertisePort = n.cfg.BindPort
	}
	mlc.PushPullInterval = n.cfg.PushPullInterval
	mlc.GossipInterval = n.cfg.GossipInterval
	mlc.GossipNodes = n.cfg.GossipNodes
	mlc.ProbeInterval = n.cfg.ProbeInterval
	mlc.ProbeTimeout = n.cfg.ProbeTimeout
	mlc.SuspicionMult = n.cfg.SuspicionMult
	mlc.RetransmitMult = n.cfg.RetransmitMult
	mlc.TCPTimeout = n.cfg.TCPTimeout
	mlc.UDPBufferSize = n.cfg.PacketSize
	mlc.Label = n.cfg.Label
	if n.keys != nil {
		mlc.Keyring = n.keys.ring // the same keys seal the streams
	}
	// Gossip to a dead node for as long as it may be suspected, so a node
	// that comes back after a short cut hears it was declared dead and refutes.
	mlc.GossipToTheDeadTime = n.cfg.gossipToTheDeadTime()
	mlc.Delegate = &delegate{meta: n.nodeMeta, receive: n.receive, queue: n.queue}
	mlc.Events = n.memberEvents()
	mlc.Ping = pings{members: n.members, log: n.log}
	mlc.Logger = log.New(memberlistLog{
		log:     n.cfg.Logger.With().Str("component", "memberlist").Str("node", n.cfg.NodeName).Logger(),
		suspect: n.memberSuspected,
		stray:   n.strayPing,
	}, "", 0)

	if err := n.wrapTransport(mlc); err != nil {
		return err
	}
	ml, err := memberlist.Create(mlc)
	if err != nil {
		switch {
		case n.cfg.Transport == nil && mlc.Transport != nil: // made here: ours to shut
			_ = mlc.Transport.Shutdown()
		case n.mux != nil: // the caller's transport stays the caller's
			n.mux.detach()
		}
		return fmt.Errorf("cluster: start memberlist on %s:%d: %w", n.cfg.BindAddr, n.cfg.BindPort, err)
	}
	n.ml = ml
	n.mlReady.Store(ml)
	if self, ok := n.members.member(n.cfg.NodeName); ok { // Create has notified its join
		n.selfAddr = self.addr()
	}
	n.log.Info().Str("addr", n.selfAddr).Strs("seeds", n.cfg.Seeds).
		Str("origin", strconv.FormatUint(n.origin, 16)).Str("fast_path", n.cfg.FastPath).
		Stringer("sync_interval", n.cfg.SyncInterval).
		Bool("encrypted", n.keys != nil).Str("label", n.cfg.Label).Msg("gossip listening")

	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.flushWG.Add(1)
	go func() { defer n.flushWG.Done(); n.flushLoop() }()
	n.wg.Add(4)
	go func() { defer n.wg.Done(); n.writes.run(ctx) }()
	go func() { defer n.wg.Done(); n.applyLoop(ctx) }()
	go func() { defer n.wg.Done(); n.joinLoop(ctx) }()
	go func() { defer n.wg.Done(); n.sync.run(ctx) }()
	return nil
}

// memberEvents is the node's memberlist.EventDelegate (members.go).
func (n *Node) memberEvents() *events {
	return &events{members: n.members, log: n.log, self: n.cfg.NodeName, changed: n.membersChanged, up: n.memberUp}
}

// logLikes gives likes consecutive dots, puts them in the log, from which
// the fast path frames them (unless the node is alone: see Node.alone),
// and returns the first seq. It never blocks on the network: the log is a
// ring, and a like the fast path could not frame in time reaches peers by
// anti-entropy. Replicate is its one caller. unwaited says no write waits
// for their acknowledgements (level one): only those may skip the log
// while the node is alone, for a write waiting on a peer that joined since
// the last flush must have its likes framed for it.
func (n *Node) logLikes(likes []store.Like, unwaited bool) (first uint64) {
	n.logMu.Lock()
	first = n.seq + 1
	if unwaited && n.alone && n.framed == n.seq {
		n.seq += uint64(len(likes))
		n.framed = n.seq
		n.logMu.Unlock()
		n.stats.loggedAlone.Add(uint64(len(likes)))
		return first
	}
	for _, l := range likes {
		n.seq++
		if n.seq-n.framed > uint64(len(n.ring)) && len(n.ring) < n.cfg.LogSize {
			n.growRingLocked()
		}
		n.ring[n.seq%uint64(len(n.ring))] = l
	}
	last := n.seq
	n.logMu.Unlock()
	if last/256 != (first-1)/256 { // a batch is likely waiting: do not wait for the tick
		n.kickFlush()
	}
	return first
}

// initialLogRing is the log's first size: a few flushes' worth of likes.
// ringShrinkAfter is how long a grown ring stays grown after it was last
// needed (a doubling, or a flush of more than its first size): through a
// burst of bulk imports, not for ever.
const (
	initialLogRing  = 1024
	ringShrinkAfter = 10 * time.Second
)

// growRingLocked doubles the ring (at most to LogSize), moving the likes
// not framed yet to their slots in the new one.
func (n *Node) growRingLocked() {
	ring := make([]store.Like, min(2*len(n.ring), n.cfg.LogSize))
	from := n.framed + 1
	if size := uint64(len(n.ring)); n.seq > size && from < n.seq-size {
		from = n.seq - size // older ones were overwritten
	}
	for s := from; s < n.seq; s++ {
		ring[s%uint64(len(ring))] = n.ring[s%uint64(len(n.ring))]
	}
	n.ring = ring
	n.ringGrown = time.Now()
}

// Joined reports whether the node has joined its seeds, or has no seeds and
// so started a cluster of its own.
func (n *Node) Joined() bool { return n.joined.Load() }

// Ready reports whether this node holds what the cluster held when it
// joined (see antientropy): a full sync from a synced peer, or proof that it
// is alone. It stays true once true.
func (n *Node) Ready() bool { return n.sync != nil && n.sync.synced.Load() }

// Self is this node's name.
func (n *Node) Self() string { return n.cfg.NodeName }

// Addr is the host:port other nodes use to reach this node's gossip; empty
// before Start.
func (n *Node) Addr() string { return n.selfAddr }

// Members lists the members this node knows, itself included, sorted by
// name: alive, suspect (this node's probes get no answer), and for a while
// (memberlist's GossipToTheDeadTime) dead and left ones.
func (n *Node) Members() []Member {
	ms := n.members.list(time.Now())
	for i := range ms {
		if ms[i].Name != n.cfg.NodeName {
			st := n.writes.peer(ms[i].Name)
			ms[i].Breaker, ms[i].Link = st.Breaker.String(), st.Phase
		}
	}
	return ms
}

// Stats returns the counters since Start.
func (n *Node) Stats() Stats {
	c := &n.stats
	st := Stats{
		LikesQueued: c.likesQueued.Load(), FramesQueued: c.framesQueued.Load(), BytesQueued: c.bytesQueued.Load(),
		FramesReceived: c.framesReceived.Load(), BytesReceived: c.bytesReceived.Load(),
		LikesReceived: c.likesReceived.Load(), LikesApplied: c.likesApplied.Load(), LogOverrun: c.logOverrun.Load(),
		LoggedAlone: c.loggedAlone.Load(), FramesRefused: c.framesRefused.Load(),
		InboxDropped: c.inboxDropped.Load(), FramesPruned: c.framesPruned.Load(), DecodeErrors: c.decodeErrors.Load(),
		StreamsDialed: c.streamsDialed.Load(), StreamsAccepted: c.streamsAccepted.Load(), StreamResets: c.streamResets.Load(),
	}
	n.inbound.stats(&st)
	if d := n.sync; d != nil {
		st.SyncSessions, st.SyncFailed = d.stats.sessions.Load(), d.stats.sessionsFailed.Load()
		st.SyncPulled, st.SyncPushed = d.stats.pulled.Load(), d.stats.pushed.Load()
		st.SyncBytesIn, st.SyncBytesOut = d.stats.bytesIn.Load(), d.stats.bytesOut.Load()
		st.SyncDropped, st.HandoffTimeouts = d.stats.dropped.Load(), d.stats.handoffTimeouts.Load()
		st.SyncKeyMismatches, st.SyncRekeys = d.stats.keyMismatches.Load(), d.stats.rekeys.Load()
		st.SyncStreamed, st.SyncRefused = d.stats.streamed.Load(), d.stats.refused.Load()
	}
	w := &n.writes.stats
	st.WritesMet, st.WritesAccepted, st.WritesAbandoned = w.met.Load(), w.accepted.Load(), w.abandoned.Load()
	st.WritesUnsynced = w.notDurable.Load()
	st.AcksSent, st.AcksReceived, st.AckErrors = w.acksSent.Load(), w.acksReceived.Load(), w.ackErrors.Load()
	st.AcksStreamed, st.AcksRefused = w.acksStreamed.Load(), w.acksRefused.Load()
	st.BreakerOpened = w.opened.Load()
	n.writes.mu.Lock()
	st.WritesWaiting = uint64(n.writes.tr.Waiting())
	ls := n.writes.lk.Stats()
	n.writes.mu.Unlock()
	st.DirectSent, st.DirectErrors, st.PeerDropped, st.BreakerSkipped = ls.Sent, ls.Failed, ls.Dropped, ls.Skipped
	return st
}

// QueuedFrames is the broadcast queue's depth.
func (n *Node) QueuedFrames() int { return n.queue.NumQueued() }

// Readings is what the node's metrics read at scrape time: a *Node, or a
// stand-in with chosen values in a test.
type Readings interface {
	Stats() Stats
	QueuedFrames() int
	PeerLikesRefused() uint64
	PeerLikesDeferred() uint64
	Ready() bool
}

// Metrics describes the node's series for internal/metrics, each read from
// r at scrape time: Stats' fields here, the handshake refusals beside their
// reasons (session.go), the peers' likes refused or deferred beside their
// guard (guard.go). Only the series labelled by member (likesd_members,
// likesd_peer_breaker) are left to internal/metrics, which reads Members.
func Metrics(r Readings) []stat.Desc {
	counter := func(name, help string, f func(Stats) uint64) stat.Desc {
		return stat.NewCounter(name, help, func() uint64 { return f(r.Stats()) })
	}
	gauge := func(name, help string, f func(Stats) uint64) stat.Desc {
		return stat.NewGauge(name, help, func() float64 { return float64(f(r.Stats())) })
	}
	const capped = "Streams from peers closed at a cap: cap=total, a new one refused as its handshake ended while --max-streams were open; " +
		"cap=peer, a peer's oldest closed for its newest; cap=handshakes, the oldest handshake in progress closed for a new one while --max-handshakes were."
	ds := []stat.Desc{
		counter("likesd_fastpath_frames_sent_total", "Frames of new likes the fast path built: sent to every peer (direct) or queued for broadcast (gossip).", func(s Stats) uint64 { return s.FramesQueued }),
		counter("likesd_fastpath_likes_sent_total", "Likes framed on the fast path (in gossip mode forwarded ones too).", func(s Stats) uint64 { return s.LikesQueued }),
		counter("likesd_fastpath_bytes_sent_total", "Bytes of fast-path frames, counted once per frame (not per peer or retransmit).", func(s Stats) uint64 { return s.BytesQueued }),
		counter("likesd_fastpath_frames_received_total", "Fast-path frames of likes received from peers.", func(s Stats) uint64 { return s.FramesReceived }),
		counter("likesd_fastpath_bytes_received_total", "Bytes of fast-path frames received.", func(s Stats) uint64 { return s.BytesReceived }),
		counter("likesd_fastpath_likes_received_total", "Likes received on the fast path.", func(s Stats) uint64 { return s.LikesReceived }),
		counter("likesd_fastpath_likes_applied_total", "Likes received on the fast path that were new here.", func(s Stats) uint64 { return s.LikesApplied }),
		counter("likesd_fastpath_frames_refused_total", "Fast-path frames that came through memberlist in the name of a peer that sends its own on its session: dropped.", func(s Stats) uint64 { return s.FramesRefused }),
		counter("likesd_log_overrun_total", "Likes that left the log before the fast path framed them (healed by anti-entropy).", func(s Stats) uint64 { return s.LogOverrun }),
		counter("likesd_log_alone_total", "Likes logged while this node had no peer to send to: counted sent, to no one (a peer that joins gets them by sync).", func(s Stats) uint64 { return s.LoggedAlone }),
		counter("likesd_inbox_dropped_total", "Received messages dropped because the inbox was full.", func(s Stats) uint64 { return s.InboxDropped }),
		counter("likesd_queue_pruned_total", "Frames pruned from the broadcast queue at its limit.", func(s Stats) uint64 { return s.FramesPruned }),
		counter("likesd_decode_errors_total", "Frames or states that failed to decode.", func(s Stats) uint64 { return s.DecodeErrors }),
		counter("likesd_sync_sessions_total", "Anti-entropy sessions this node started and ended.", func(s Stats) uint64 { return s.SyncSessions }),
		counter("likesd_sync_sessions_failed_total", "Anti-entropy sessions ended by a timeout or an unreachable peer.", func(s Stats) uint64 { return s.SyncFailed }),
		counter("likesd_sync_likes_pulled_total", "Likes new here that anti-entropy brought.", func(s Stats) uint64 { return s.SyncPulled }),
		counter("likesd_sync_likes_pushed_total", "Likes new to a peer that anti-entropy sent.", func(s Stats) uint64 { return s.SyncPushed }),
		counter("likesd_sync_bytes_received_total", "Bytes of anti-entropy messages received.", func(s Stats) uint64 { return s.SyncBytesIn }),
		counter("likesd_sync_bytes_sent_total", "Bytes of anti-entropy messages sent.", func(s Stats) uint64 { return s.SyncBytesOut }),
		counter("likesd_sync_streamed_total", "Anti-entropy messages sent on a peer's session (the rest, to peers of the previous version, through memberlist, a connection each).", func(s Stats) uint64 { return s.SyncStreamed }),
		counter("likesd_sync_refused_total", "Anti-entropy messages that came through memberlist in the name of a peer that sends its own on its session, or of no member: dropped.", func(s Stats) uint64 { return s.SyncRefused }),
		counter("likesd_sync_dropped_total", "Anti-entropy messages dropped because a queue was full (the session times out and is retried).", func(s Stats) uint64 { return s.SyncDropped }),
		counter("likesd_handoff_timeouts_total", "Hand-offs cut short by the shutdown bound.", func(s Stats) uint64 { return s.HandoffTimeouts }),
		counter("likesd_sync_key_mismatches_total", "Digest comparisons refused because this node's and the peer's digest keys differ (a key rotation in progress, or a peer without key ids).", func(s Stats) uint64 { return s.SyncKeyMismatches }),
		counter("likesd_sync_rekeys_total", "Times the replica's digests were recomputed because the primary key changed.", func(s Stats) uint64 { return s.SyncRekeys }),
		counter("likesd_direct_batches_sent_total", "Batches sent straight to a peer (direct fast path).", func(s Stats) uint64 { return s.DirectSent }),
		counter("likesd_direct_errors_total", "Batches that could not be sent to a peer.", func(s Stats) uint64 { return s.DirectErrors }),
		counter("likesd_peer_queue_dropped_total", "Batches dropped (left to repair): a full peer queue, a peer that stopped answering, or a stream reset under them.", func(s Stats) uint64 { return s.PeerDropped }),
		counter("likesd_streams_dialed_total", "Streams this node opened to peers for the direct fast path (one per peer while it answers).", func(s Stats) uint64 { return s.StreamsDialed }),
		counter("likesd_streams_accepted_total", "Streams peers opened to this node.", func(s Stats) uint64 { return s.StreamsAccepted }),
		counter("likesd_stream_resets_total", "Streams this node reset: a send hung while the peer answered pings, or the peer's breaker opened (what they held is left to repair).", func(s Stats) uint64 { return s.StreamResets }),
		counter("likesd_streams_timed_out_total", "Streams from peers closed because their handshake, or a message once begun, did not arrive whole within the TCP timeout (a stalled or trickling peer).", func(s Stats) uint64 { return s.StreamsTimedOut }),
		counter("likesd_writes_replicated_total", "Writes answered once their level was met (201/200).", func(s Stats) uint64 { return s.WritesMet }),
		counter("likesd_writes_accepted_total", "Writes answered 202: stored here, fewer replicas than asked within the write timeout (or no peer reachable).", func(s Stats) uint64 { return s.WritesAccepted }),
		counter("likesd_writes_abandoned_total", "Writes whose client went away while they waited for acknowledgements (stored here; no answer sent).", func(s Stats) uint64 { return s.WritesAbandoned }),
		counter("likesd_acks_sent_total", "Acknowledgement messages sent to the origins of applied frames.", func(s Stats) uint64 { return s.AcksSent }),
		counter("likesd_acks_streamed_total", "Of those, sent back on the origin's stream (the rest through memberlist, a connection each).", func(s Stats) uint64 { return s.AcksStreamed }),
		counter("likesd_acks_received_total", "Acknowledgement messages received from peers.", func(s Stats) uint64 { return s.AcksReceived }),
		counter("likesd_acks_refused_total", "Acknowledgements that came through memberlist in the name of a peer that acknowledges on its session: not its, so not counted.", func(s Stats) uint64 { return s.AcksRefused }),
		counter("likesd_ack_errors_total", "Acknowledgements that could not be sent or were dropped.", func(s Stats) uint64 { return s.AckErrors }),
		counter("likesd_breaker_skipped_total", "Fast-path frames not queued to a peer because its breaker was open (left to repair).", func(s Stats) uint64 { return s.BreakerSkipped }),
		counter("likesd_breaker_opened_total", "Times a peer's circuit breaker opened.", func(s Stats) uint64 { return s.BreakerOpened }),
		counter("likesd_streams_capped_total", capped, func(s Stats) uint64 { return s.StreamsRefused }).With("cap", "total"),
		counter("likesd_streams_capped_total", capped, func(s Stats) uint64 { return s.StreamsDisplaced }).With("cap", "peer"),
		counter("likesd_streams_capped_total", capped, func(s Stats) uint64 { return s.HandshakesCut }).With("cap", "handshakes"),
		gauge("likesd_streams_inbound", "Streams peers hold open to this node now, handshake done (at most --max-streams).", func(s Stats) uint64 { return s.StreamsInbound }),
		gauge("likesd_stream_handshakes_pending", "Stream handshakes in progress now (at most --max-handshakes).", func(s Stats) uint64 { return s.HandshakesPending }),
		gauge("likesd_stream_buffered_bytes", "Bytes of buffer held now by stream messages being read (a buffer grows only as its message arrives).", func(s Stats) uint64 { return s.StreamBuffered }),
		gauge("likesd_writes_waiting", "Writes waiting for acknowledgements now.", func(s Stats) uint64 { return s.WritesWaiting }),
		stat.NewGauge("likesd_gossip_queue_frames", "Frames waiting in memberlist's broadcast queue (gossip fast path; 0 with direct).", func() float64 { return float64(r.QueuedFrames()) }),
		stat.NewFlag("likesd_ready", "1 once this node holds what the cluster held when it joined (a full sync, or proof it is alone).", r.Ready),
	}
	ds = append(ds, refusalMetrics(func() HandshakeRefusals { return r.Stats().HandshakesRefused })...)
	return append(ds, guardMetrics(r)...)
}

// Close hands off and leaves. It sends the likes still in the log on the
// fast path, then runs anti-entropy sessions with synced peers until one of
// them holds every like this node holds (see antientropy), then leaves the
// cluster and stops every goroutine. Call it after the node stopped taking
// likes. It is idempotent.
//
// ctx bounds the whole of it: a hand-off cut short is logged and counted,
// the leave gets what is left of ctx (none: the others see a failure), and
// when ctx ends Close returns ErrCloseCut at once, having told every
// goroutine to stop (the loops are cancelled, the likesd streams closed,
// and senders send no more); the rest of the shutdown ends in the
// background.
func (n *Node) Close(ctx context.Context) error {
	var err error
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		if n.ml == nil { // never started
			return
		}
		n.closeDone = make(chan struct{})
		res := make(chan error, 1)
		go func() {
			defer close(n.closeDone)
			res <- n.shutdown(ctx)
		}()
		select {
		case err = <-res:
		case <-ctx.Done():
			select {
			case err = <-res: // it ended meanwhile
			default:
				n.abort()
				n.log.Warn().Err(ctx.Err()).Msg("close cut short by its bound: the rest of the shutdown ends in the background")
				err = fmt.Errorf("%w: %w", ErrCloseCut, ctx.Err())
			}
		}
	})
	return err
}

// ErrCloseCut is returned by a Close whose context ended first.
var ErrCloseCut = errors.New("cluster: close cut short")

// shutdown is Close's sequence.
func (n *Node) shutdown(ctx context.Context) error {
	close(n.flushCh)
	n.flushWG.Wait() // the direct senders have drained too
	start := time.Now()
	hctx, cancel := ctx, context.CancelFunc(func() {})
	if n.cfg.HandoffTimeout > 0 {
		hctx, cancel = context.WithTimeout(ctx, n.cfg.HandoffTimeout)
	}
	herr := n.sync.handOff(hctx, 2*n.cfg.RejoinInterval)
	cancel()
	switch {
	case herr == nil:
	case n.cfg.HandoffTimeout > 0 && ctx.Err() == nil:
		n.log.Info().Dur("waited", time.Since(start)).
			Msg("hand-off not finished in --handoff-timeout: every like this node holds is on its disk, which it reads at its next start")
	default:
		n.log.Error().Err(herr).Dur("waited", time.Since(start)).
			Msg("hand-off cut short by the shutdown bound: likes only this node holds may be lost")
	}
	// Say it is a leave before leaving: memberlist tells the others of a
	// leave and of a failure alike (members.go).
	n.leaving.Store(true)
	left := false
	if d := n.leaveTimeout(ctx); d > 0 {
		if uerr := n.ml.UpdateNode(d); uerr != nil {
			n.log.Warn().Err(uerr).Msg("leave intent was not confirmed")
		}
	}
	if d := n.leaveTimeout(ctx); d > 0 {
		if lerr := n.ml.Leave(d); lerr != nil {
			n.log.Warn().Err(lerr).Msg("leave was not confirmed")
		}
		left = true
	} else {
		n.log.Warn().Msg("no time left to leave: the others will see this node fail")
	}
	err := n.ml.Shutdown()
	n.cancel()
	n.wg.Wait()
	n.acker.stop()
	n.waitSends(ctx)
	if left {
		n.log.Info().Msg("left the cluster")
	} else {
		n.log.Info().Msg("shut down without leaving the cluster")
	}
	return err
}

// leaveTimeout is LeaveTimeout, or what is left of ctx if less.
func (n *Node) leaveTimeout(ctx context.Context) time.Duration {
	if ctx.Err() != nil {
		return 0
	}
	d := n.cfg.LeaveTimeout
	if deadline, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(deadline))
	}
	return d
}

// abort tells what Close still waits for to stop now: the loops' context is
// cancelled, every stream closed (a write stalled on one returns) and no
// new one opened, and senders send no more (sendFrame), so they drop what
// is queued, left to repair. A dial or a memberlist send already in flight
// still ends within TCPTimeout.
func (n *Node) abort() {
	n.halted.Store(true)
	n.cancel()
	if n.mux != nil {
		n.mux.closeAll()
	}
}

// syncPeers are the names of the other members that are alive or suspect
// in this node's member table, sorted. Anti-entropy is not gated by the
// breakers: it backs off a failing peer on its own (antientropy's retry
// backoff), a late ack must not end a joining node's full sync or delay a
// hand-off, and a breaker that closes urges a session at once.
func (n *Node) syncPeers() []string {
	var out []string
	for _, p := range n.members.peers(stateAlive, stateSuspect) {
		out = append(out, p.name)
	}
	return out
}

// sendAck sends an ack back on the stream the peer sends its frames on;
// without one (gossip mode, a stream that just ended), through memberlist
// to a peer the fast path may send to: a member, or one declared dead a
// moment ago, which still gets frames (and so must get its acks back).
func (n *Node) sendAck(to string, msg []byte) error {
	// On the stream the peer sends its frames on, when there is one.
	if s := n.inbound.get(to); s != nil && s.write(msg, n.cfg.TCPTimeout) == nil {
		n.writes.stats.acksStreamed.Add(1)
		return nil
	}
	if n.sessionsWith(to) { // it would not count an ack through memberlist
		return fmt.Errorf("cluster: no session from %s to acknowledge on", to)
	}
	p, ok := n.members.sendTarget(to, time.Now(), n.cfg.gossipToTheDeadTime())
	if !ok {
		return fmt.Errorf("cluster: %s is not a peer", to)
	}
	return n.ml.SendReliable(p.node(), msg)
}

// sendTo sends an anti-entropy message to a member. To a peer that speaks
// sessions it goes only on this node's session to it, dialed here when
// none is open (the one the fast path uses, when it has one: peerLink):
// the peer refuses anti-entropy through memberlist from a node that
// speaks sessions (handle), as a recording of one played again without
// the key would be. Only a session this node dialed is used: its owner
// knows when it ends (a write on one the other end just closed is lost
// without an error, which costs an anti-entropy session its timeout). It
// is called on the sync driver's
// sender goroutines, never on its loop, so a dial holds up no other peer.
// A peer of the previous version (no sessions in its meta) is reached
// through memberlist's reliable channel, a connection each, as before.
func (n *Node) sendTo(to string, msg []byte) error {
	m, ok := n.members.member(to)
	if !ok {
		return fmt.Errorf("cluster: %s is not a member", to)
	}
	if !n.speaksSessions() || !m.sessions {
		return n.ml.SendReliable(m.node(), msg)
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 { // the member as it is now: it may have moved
			if m, ok = n.members.member(to); !ok {
				return fmt.Errorf("cluster: %s is not a member", to)
			}
		}
		p, err := n.peerLink(m)
		if err != nil {
			return err
		}
		// One dial at a time: the sync driver sends to a peer on several
		// goroutines, and a dial that races another is thrown away.
		p.syncDial.Lock()
		s, err := n.peerStream(p)
		p.syncDial.Unlock()
		if err == nil {
			if err = s.write(msg, n.cfg.TCPTimeout); err == nil {
				n.sync.stats.streamed.Add(1)
				return nil
			}
		}
		// A fast-path sender stopped under the send (a peer dropped from
		// the targets, or Close before its hand-off): once more, on a link
		// of its own.
		if attempt > 0 || !p.stopped.Load() {
			return err
		}
	}
}

// speaksSessions reports whether this node takes and dials sessions: what
// NodeMeta says as metaSessions (delegate.go), which peers read to decide
// whether anti-entropy to this node goes on a session. Keep the two alike.
func (n *Node) speaksSessions() bool { return n.mux != nil && !n.cfg.streamsV1Only }

// syncThroughMemberlist reports whether anti-entropy messages through
// memberlist in the name from are taken: only when this node or that
// member does not speak sessions (a node of the previous version, or one
// forced to version 1). A member that speaks them sends its anti-entropy
// on its session (sendTo), so one through memberlist in its name is
// another's, or a recording; so is one in the name of no alive member,
// which this node could not answer anyway.
func (n *Node) syncThroughMemberlist(from string) bool {
	if !n.speaksSessions() {
		return true
	}
	m, ok := n.members.member(from)
	return ok && !m.sessions
}

// flushLoop frames the log's new likes every FlushInterval (or at once when
// a batch is waiting) and sends them on the fast path. On Close it flushes
// what is left.
func (n *Node) flushLoop() {
	defer n.closeLinks()
	tick := time.NewTicker(n.cfg.FlushInterval)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-tick.C:
		case <-n.kick:
			// Kicks (a full batch, a waiting write) come at most every
			// kickGap: the writes of that moment share a frame, and a TCP
			// connection per peer, instead of one each.
			if wait := kickGap - time.Since(last); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-n.flushCh:
					t.Stop()
					n.flushLog()
					return
				}
			}
		case <-n.flushCh:
			n.flushLog()
			return
		}
		last = time.Now()
		n.flushLog()
	}
}

// kickGap is the least time between two flushes a kick asks for: a
// waiting write waits at most this long to be framed under load, and
// frames carry what arrives in it.
const kickGap = 2 * time.Millisecond

// flushLog frames the likes logged since the last flush.
func (n *Node) flushLog() {
	n.logMu.Lock()
	n.alone = !n.anyPeer() // under logMu: a join's clear (events.NotifyJoin) is never overwritten by an older answer
	last := n.seq
	from := n.framed + 1
	if size := uint64(len(n.ring)); last >= size && from <= last-size {
		// The ring wrapped past likes never framed: they are stored and
		// reach the others by anti-entropy.
		n.stats.logOverrun.Add(last - size + 1 - from)
		from = last - size + 1
	}
	likes := make([]store.Like, 0, last+1-from)
	for s := from; s <= last; s++ {
		slot := &n.ring[s%uint64(len(n.ring))]
		likes = append(likes, *slot)
		*slot = store.Like{} // keep no ids alive once framed
	}
	n.framed = last
	if last+1-from > initialLogRing { // a burst still going: keep the room
		n.ringGrown = time.Now()
	}
	if len(n.ring) > initialLogRing && time.Since(n.ringGrown) > ringShrinkAfter {
		n.ring = make([]store.Like, initialLogRing) // every like is framed: nothing to move
	}
	n.logMu.Unlock()
	if len(likes) == 0 {
		return
	}
	max := n.cfg.maxFrame()
	if n.cfg.FastPath == FastPathDirect {
		max = n.cfg.DirectBatchBytes
	}
	fb := newFrameBuilder(max, msgLikes, n.cfg.NodeName, n.origin)
	var frames []link.Frame
	for i, l := range likes {
		if !fb.fits(l) && fb.count > 0 {
			frames = n.queueFrame(frames, fb)
		}
		fb.add(from+uint64(i), l)
	}
	frames = n.queueFrame(frames, fb)
	if len(frames) > 0 {
		n.sendDirect(frames)
	}
}

// anyPeer reports whether the fast path has a peer to send to (either
// path: a peer declared dead within GossipToTheDeadTime counts, as it may
// come back); before Start it does not know, and says yes.
func (n *Node) anyPeer() bool {
	return n.mlReady.Load() == nil || n.members.anyTarget(time.Now(), n.cfg.gossipToTheDeadTime())
}

// queueFrame takes fb's frame: broadcast at once in gossip mode, added to
// frames for sendDirect in direct mode.
func (n *Node) queueFrame(frames []link.Frame, fb *frameBuilder) []link.Frame {
	first := fb.first
	frame, count := fb.take()
	if n.cfg.FastPath == FastPathDirect {
		frames = append(frames, link.Frame{Data: frame, First: first, Last: first + uint64(count) - 1, Count: count})
	} else {
		n.broadcast(frame)
		n.countQueued(len(frame), count)
	}
	return frames
}

func (n *Node) countQueued(bytes, likes int) {
	n.stats.framesQueued.Add(1)
	n.stats.likesQueued.Add(uint64(likes))
	n.stats.bytesQueued.Add(uint64(bytes))
}

func (n *Node) broadcast(frame []byte) {
	n.queue.QueueBroadcast(&broadcast{msg: frame})
	if depth := n.queue.NumQueued(); depth > n.cfg.MaxQueuedFrames {
		n.queue.Prune(n.cfg.MaxQueuedFrames)
		n.stats.framesPruned.Add(uint64(depth - n.cfg.MaxQueuedFrames))
	}
}

// applyLoop handles every message from other nodes, in one goroutine.
func (n *Node) applyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-n.inbox.C():
			if err := n.handle(in); err != nil {
				n.stats.decodeErrors.Add(1)
				n.log.Warn().Err(err).Int("bytes", len(in.msg)).Msg("bad message dropped")
			}
		}
	}
}

// received is a message from another node: through memberlist (peer
// empty), or on the session of the named peer.
type received struct {
	msg  []byte
	peer string
}

func (n *Node) handle(in received) error {
	msg := in.msg
	switch msg[0] {
	case msgLikes:
		f, err := decodeFrame(msg)
		if err != nil {
			return err
		}
		if in.peer == "" && n.sessionsWith(f.from) {
			// Its own frames travel on its session (stream.go checks
			// them): this one is another's in its name, or a stray.
			n.stats.framesRefused.Add(1)
			return nil
		}
		refusedBefore, deferredBefore := n.guard.refused.Load(), n.guard.deferred.Load()
		added := len(n.replica.Merge(f.likes))
		// A frame with a like the guard refused, or deferred for memory,
		// is not acknowledged at all: an ack names a run of seqs, and this
		// node does not hold them all (the origin's write then times out
		// as 202, as for a lost frame, and anti-entropy brings the likes
		// later). A like is acknowledged only by a node that holds it.
		if f.from != n.cfg.NodeName && n.guard.refused.Load() == refusedBefore && n.guard.deferred.Load() == deferredBefore {
			// A replica counts toward a write's level only once its disk
			// holds the likes: the ack waits for the sync that covers them.
			run := ackRun{origin: f.origin, first: f.first, count: uint64(len(f.likes))}
			n.replica.AfterDurable(func() { n.acker.add(f.from, run) })
		}
		n.stats.framesReceived.Add(1)
		n.stats.bytesReceived.Add(uint64(len(msg)))
		n.stats.likesReceived.Add(uint64(len(f.likes)))
		n.stats.likesApplied.Add(uint64(added))
		// memberlist never forwards user messages: in gossip mode a receiver
		// forwards, once, a frame that brought it new likes.
		if n.cfg.FastPath == FastPathGossip && added > 0 && f.origin != n.origin {
			n.stats.likesQueued.Add(uint64(len(f.likes)))
			n.broadcast(msg)
		}
		return nil
	case msgSync:
		m, err := antientropy.Decode(msg[1:])
		if err != nil {
			return err
		}
		if in.peer != "" {
			m.From = in.peer // the session's peer, whatever name it wrote
		} else if !n.syncThroughMemberlist(m.From) {
			// Its anti-entropy travels on its session (sendTo): this one
			// is another's in its name, or a recording played again.
			n.sync.stats.refused.Add(1)
			return nil
		}
		n.sync.deliver(m, len(msg))
		return nil
	}
	return fmt.Errorf("%w: %d", errType, msg[0])
}

// handleAck applies an ack message from the peer a stream authenticated
// (readAcks); with peer empty (memberlist's, delegate.NotifyMsg) it counts
// for the name it carries, unless that peer acknowledges on its session:
// then it is not that peer's, and counts for nothing.
func (n *Node) handleAck(peer string, msg []byte) {
	from, runs, err := decodeAck(msg)
	if err != nil {
		n.stats.decodeErrors.Add(1)
		n.log.Warn().Err(err).Int("bytes", len(msg)).Msg("bad ack dropped")
		return
	}
	if peer == "" {
		if n.sessionsWith(from) {
			n.writes.stats.acksRefused.Add(1)
			return
		}
		peer = from
	}
	n.writes.stats.acksReceived.Add(1)
	n.writes.acked(peer, runs)
}

// sessionsWith reports whether the member named name sends this node its
// frames and acks only on sessions: both run the direct fast path (so
// this node dials it and it dials this node) and speak version 2. A peer
// in gossip mode broadcasts its frames, and acknowledges through
// memberlist to a node in gossip mode; older peers do both through
// memberlist, under a name anyone with the key could write.
func (n *Node) sessionsWith(name string) bool {
	if n.mux == nil || n.cfg.streamsV1Only || n.cfg.FastPath != FastPathDirect {
		return false
	}
	m, ok := n.members.member(name)
	return ok && m.sessionsOnly
}

// joinLoop joins the seeds with backoff, then keeps checking that every seed
// is an alive member and re-joins the ones that are not, so a seed restarted
// with a new identity ends up in this cluster instead of a second one.
func (n *Node) joinLoop(ctx context.Context) {
	if len(n.cfg.Seeds) == 0 {
		n.joined.Store(true)
		n.log.Info().Msg("no seeds: started a new cluster")
	} else if !n.joinSeeds(ctx) {
		return
	}
	tick := time.NewTicker(n.cfg.RejoinInterval)
	defer tick.Stop()
	lastStray := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case addr := <-n.strays:
			// A member still probes a past process at this address: its
			// cluster does not know this one. Join it (once a rejoin
			// interval per address), merging the two at once.
			if time.Since(lastStray[addr]) < n.cfg.RejoinInterval {
				continue
			}
			lastStray[addr] = time.Now()
			if k, err := n.ml.Join([]string{addr}); k > 0 {
				n.log.Info().Str("addr", addr).Int("members", n.ml.NumMembers()).Msg("joined a member that probed a past process at this address")
			} else {
				n.log.Warn().Err(err).Str("addr", addr).Msg("could not join a member that probed a past process at this address")
			}
			continue
		case <-tick.C:
		}
		n.reconcileMembers()
		now := time.Now()
		n.members.prune(now)
		pruneStrays(lastStray, now, n.cfg.RejoinInterval)
		missing := n.missingSeeds(ctx)
		if len(missing) == 0 {
			continue
		}
		k, err := n.ml.Join(missing)
		if k > 0 {
			n.log.Info().Strs("seeds", missing).Int("members", n.ml.NumMembers()).Msg("re-joined seeds that were not members")
		} else {
			n.log.Warn().Err(err).Strs("seeds", missing).Msg("re-join failed")
		}
	}
}

// joinSeeds joins the seeds with backoff, reporting every attempt to
// anti-entropy, until one reaches another member or JoinAttempts reached
// nobody. It returns false when ctx ended.
func (n *Node) joinSeeds(ctx context.Context) bool {
	backoff := n.cfg.JoinBackoffMin
	for attempt := 1; ; attempt++ {
		k, err := n.ml.Join(n.cfg.Seeds)
		// A seed name may resolve to this node too (a Service over every
		// pod): only another member counts as reached.
		reached := k > 0 && n.ml.NumMembers() > 1
		n.sync.joinAttempted(ctx, reached)
		if reached {
			n.joined.Store(true)
			n.log.Info().Int("contacted", k).Int("members", n.ml.NumMembers()).Msg("joined cluster")
			return true
		}
		if attempt >= joinAttemptsBeforeAlone {
			// The syncer now counts this node alone; the seeds are still
			// re-joined on every RejoinInterval.
			n.log.Warn().Err(err).Int("attempts", attempt).Msg("no seed answered and no member was ever seen: starting alone; seeds are retried")
			return true
		}
		n.log.Warn().Err(err).Dur("retry_in", backoff).Msg("join failed")
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, n.cfg.JoinBackoffMax)
	}
}

// missingSeeds returns the seeds none of whose addresses is an alive member
// (or this node).
func (n *Node) missingSeeds(ctx context.Context) []string {
	alive := n.members.addrs()
	alive[n.selfAddr] = true
	var missing []string
	for _, seed := range n.cfg.Seeds {
		host, port, err := net.SplitHostPort(seed)
		if err != nil {
			continue // Validate rejected these
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		addrs, err := net.DefaultResolver.LookupHost(lctx, host)
		cancel()
		found := false
		for _, a := range addrs {
			if alive[net.JoinHostPort(a, port)] {
				found = true
				break
			}
		}
		if err != nil || !found {
			missing = append(missing, seed)
		}
	}
	return missing
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
