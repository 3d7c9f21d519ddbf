package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
)

// Replica is what the cluster needs from the local store to apply likes from
// other nodes and to send its own state. internal/store satisfies it.
type Replica interface {
	// Merge applies remote likes and returns those new to the replica.
	Merge(likes []store.Like) []store.Like
	// MergeSet applies a remote post's whole set and returns the new users.
	MergeSet(post string, users gset.Set) []string
	// Snapshot calls fn with a copy of every post's set until fn returns false.
	Snapshot(fn func(post string, users gset.Set) bool)
}

// Member is one node as this node sees it.
type Member struct {
	Name  string
	Addr  string // host:port of its gossip endpoint
	State string // alive, suspect, dead or left
}

// Stats are cumulative counters since Start.
type Stats struct {
	LikesQueued     uint64 // likes framed for gossip (local and forwarded)
	FramesQueued    uint64
	BytesQueued     uint64
	BytesReceived   uint64
	PushPullBytes   uint64
	DirectSent      uint64 // batches sent straight to a peer
	DirectErrors    uint64 // batches a peer could not be sent
	PeerDropped     uint64 // batches dropped from a full peer queue
	FramesReceived  uint64
	LikesReceived   uint64
	LikesApplied    uint64 // received by gossip and new here
	OutboxDropped   uint64 // likes not gossiped: outbox full or too large
	InboxDropped    uint64 // frames dropped: inbox full
	FramesPruned    uint64 // frames pruned from the broadcast queue
	DecodeErrors    uint64
	PushPullMerges  uint64
	PushPullApplied uint64 // likes new here from push/pull
}

type counters struct {
	likesQueued, framesQueued, framesReceived, likesReceived, likesApplied atomic.Uint64
	outboxDropped, inboxDropped, framesPruned, decodeErrors                atomic.Uint64
	pushPullMerges, pushPullApplied                                        atomic.Uint64
	bytesQueued, bytesReceived, pushPullBytes                              atomic.Uint64
	directSent, directErrors, peerDropped                                  atomic.Uint64
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
	outbox chan store.Like
	inbox  chan []byte
	stats  counters

	// Set once by Start, read-only after.
	replica Replica
	ml      *memberlist.Memberlist
	queue   *memberlist.TransmitLimitedQueue
	cancel  context.CancelFunc
	flushCh chan struct{} // closed by Close: flush what is left, then stop

	// peers are the direct senders, one per alive peer; owned by flushLoop.
	peers map[string]*peerSender

	mlReady atomic.Pointer[memberlist.Memberlist] // for callbacks racing Start
	joined  atomic.Bool
	// directPending counts batches queued to or in flight to peers.
	directPending atomic.Int64
	dropInbound   atomic.Bool // tests: lose every received gossip frame

	wg        sync.WaitGroup
	flushWG   sync.WaitGroup
	startOnce sync.Once
	closeOnce sync.Once
	closed    atomic.Bool
}

// New returns a node that is not yet part of any cluster. Likes handed to it
// before Start wait in the outbox.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger.With().Str("component", "cluster").Str("node", cfg.NodeName).Logger(),
		outbox:  make(chan store.Like, cfg.OutboxSize),
		inbox:   make(chan []byte, cfg.InboxSize),
		flushCh: make(chan struct{}),
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
	n.replica = replica
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
	if len(n.cfg.SecretKey) > 0 {
		mlc.SecretKey = n.cfg.SecretKey // memberlist builds the keyring
	}
	// Gossip to a dead node for as long as it may be suspected, so a node
	// that comes back after a short cut hears it was declared dead and refutes.
	mlc.GossipToTheDeadTime = time.Duration(n.cfg.SuspicionMult+2) * n.cfg.ProbeInterval * 4
	mlc.Delegate = &delegate{n: n}
	mlc.Events = &events{n: n}
	mlc.Logger = log.New(memberlistLog{n.cfg.Logger.With().Str("component", "memberlist").Str("node", n.cfg.NodeName).Logger()}, "", 0)

	ml, err := memberlist.Create(mlc)
	if err != nil {
		return fmt.Errorf("cluster: start memberlist on %s:%d: %w", n.cfg.BindAddr, n.cfg.BindPort, err)
	}
	n.ml = ml
	n.mlReady.Store(ml)
	local := ml.LocalNode()
	n.log.Info().Str("addr", local.Address()).Strs("seeds", n.cfg.Seeds).
		Stringer("push_pull_interval", n.cfg.PushPullInterval).
		Bool("encrypted", len(n.cfg.SecretKey) > 0).Str("label", n.cfg.Label).Msg("gossip listening")

	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.flushWG.Add(1)
	go func() { defer n.flushWG.Done(); n.flushLoop() }()
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.applyLoop(ctx) }()
	go func() { defer n.wg.Done(); n.joinLoop(ctx) }()
	return nil
}

// LikeAdded queues a like that is new to this node for gossip. It never
// blocks: when the outbox is full the like is left to push/pull.
func (n *Node) LikeAdded(l store.Like) {
	select {
	case n.outbox <- l:
	default:
		n.stats.outboxDropped.Add(1)
	}
}

// Joined reports whether the node has joined its seeds, or has no seeds and
// so started a cluster of its own.
func (n *Node) Joined() bool { return n.joined.Load() }

// Self is this node's name.
func (n *Node) Self() string { return n.cfg.NodeName }

// Addr is the host:port other nodes use to reach this node's gossip; empty
// before Start.
func (n *Node) Addr() string {
	if n.ml == nil {
		return ""
	}
	return n.ml.LocalNode().Address()
}

// Members lists the known members (alive and suspect) sorted by name.
func (n *Node) Members() []Member {
	ml := n.mlReady.Load()
	if ml == nil {
		return nil
	}
	var out []Member
	for _, m := range ml.Members() {
		out = append(out, Member{Name: m.Name, Addr: m.Address(), State: stateName(m.State)})
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Stats returns the counters since Start.
func (n *Node) Stats() Stats {
	c := &n.stats
	return Stats{
		LikesQueued: c.likesQueued.Load(), FramesQueued: c.framesQueued.Load(),
		FramesReceived: c.framesReceived.Load(), LikesReceived: c.likesReceived.Load(),
		LikesApplied: c.likesApplied.Load(), OutboxDropped: c.outboxDropped.Load(),
		InboxDropped: c.inboxDropped.Load(), FramesPruned: c.framesPruned.Load(),
		DecodeErrors: c.decodeErrors.Load(), PushPullMerges: c.pushPullMerges.Load(),
		PushPullApplied: c.pushPullApplied.Load(), BytesQueued: c.bytesQueued.Load(),
		BytesReceived: c.bytesReceived.Load(), PushPullBytes: c.pushPullBytes.Load(),
		DirectSent: c.directSent.Load(), DirectErrors: c.directErrors.Load(), PeerDropped: c.peerDropped.Load(),
	}
}

// QueuedFrames is the broadcast queue's depth.
func (n *Node) QueuedFrames() int { return n.queue.NumQueued() }

// Close hands off and leaves: it gossips the likes still in the outbox,
// waits (up to HandoffTimeout) for queued broadcasts to go out and pushes
// its state to up to two peers, then leaves the cluster and stops every
// goroutine. Call it after the node stopped taking likes. It is idempotent;
// ctx bounds the whole of it.
func (n *Node) Close(ctx context.Context) error {
	var err error
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		if n.ml == nil { // never started
			return
		}
		n.handoff(ctx)
		if lerr := n.ml.Leave(n.cfg.LeaveTimeout); lerr != nil {
			n.log.Warn().Err(lerr).Msg("leave was not confirmed")
		}
		err = n.ml.Shutdown()
		n.cancel()
		n.wg.Wait()
		n.log.Info().Msg("left the cluster")
	})
	return err
}

func (n *Node) handoff(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HandoffTimeout)
	defer cancel()
	close(n.flushCh)
	n.flushWG.Wait()

	var peers []string
	for _, m := range n.ml.Members() {
		if m.Name != n.cfg.NodeName && m.State == memberlist.StateAlive {
			peers = append(peers, m.Address())
		}
	}
	if len(peers) == 0 {
		n.log.Info().Msg("hand-off: no alive peers, nothing to hand off")
		return
	}
	tick := time.NewTicker(n.cfg.GossipInterval)
	defer tick.Stop()
	for n.queue.NumQueued() > 0 || n.directPending.Load() > 0 {
		select {
		case <-ctx.Done():
			n.log.Warn().Int("frames", n.queue.NumQueued()).Msg("hand-off: broadcasts still queued")
			return
		case <-tick.C:
		}
	}
	// Gossip is best effort: push the whole state to up to two peers over
	// TCP so every like this node acknowledged is held elsewhere before it
	// goes.
	peers = peers[:min(2, len(peers))]
	done := make(chan int, 1)
	go func() { k, _ := n.ml.Join(peers); done <- k }() // bounded by TCPTimeout
	select {
	case k := <-done:
		n.log.Info().Int("peers", k).Msg("hand-off: state pushed")
	case <-ctx.Done():
		n.log.Warn().Msg("hand-off: push to peers timed out")
	}
}

// flushLoop frames likes from the outbox and queues full frames at once and
// partial ones every FlushInterval. On Close it flushes what is left.
func (n *Node) flushLoop() {
	maxFrame := n.cfg.maxFrame()
	if n.cfg.FastPath == FastPathDirect {
		maxFrame = n.cfg.DirectBatchBytes
	}
	fb := newFrameBuilder(maxFrame)
	defer n.stopPeers()
	tick := time.NewTicker(n.cfg.FlushInterval)
	defer tick.Stop()
	add := func(l store.Like) {
		if !fb.fits(l) {
			if fb.count > 0 {
				n.queueFrame(fb.take())
			}
			if !fb.fits(l) {
				n.stats.outboxDropped.Add(1)
				n.log.Warn().Int("bytes", likeSize(l)).Msg("like larger than a frame: left to push/pull")
				return
			}
		}
		fb.add(l)
	}
	for {
		select {
		case l := <-n.outbox:
			add(l)
		case <-tick.C:
			if fb.count > 0 {
				n.queueFrame(fb.take())
			}
		case <-n.flushCh:
			for {
				select {
				case l := <-n.outbox:
					add(l)
				default:
					if fb.count > 0 {
						n.queueFrame(fb.take())
					}
					return
				}
			}
		}
	}
}

func (n *Node) queueFrame(frame []byte, count int) {
	n.stats.framesQueued.Add(1)
	n.stats.likesQueued.Add(uint64(count))
	n.stats.bytesQueued.Add(uint64(len(frame)))
	if n.cfg.FastPath == FastPathDirect {
		n.sendDirect(frame)
		return
	}
	n.queue.QueueBroadcast(&broadcast{msg: frame})
	if depth := n.queue.NumQueued(); depth > n.cfg.MaxQueuedFrames {
		n.queue.Prune(n.cfg.MaxQueuedFrames)
		n.stats.framesPruned.Add(uint64(depth - n.cfg.MaxQueuedFrames))
	}
}

// applyLoop merges received frames and forwards, once, what was new here:
// memberlist does not forward user messages itself.
func (n *Node) applyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case frame := <-n.inbox:
			likes, err := decodeLikes(frame)
			if err != nil {
				n.stats.decodeErrors.Add(1)
				n.log.Warn().Err(err).Int("bytes", len(frame)).Msg("bad gossip frame dropped")
				continue
			}
			n.stats.framesReceived.Add(1)
			n.stats.bytesReceived.Add(uint64(len(frame)))
			n.stats.likesReceived.Add(uint64(len(likes)))
			added := n.replica.Merge(likes)
			n.stats.likesApplied.Add(uint64(len(added)))
			if n.cfg.FastPath == FastPathGossip {
				for _, l := range added {
					n.LikeAdded(l)
				}
			}
		}
	}
}

// joinLoop joins the seeds with backoff, then keeps checking that every seed
// is an alive member and re-joins the ones that are not, so a seed restarted
// with a new identity ends up in this cluster instead of a second one.
func (n *Node) joinLoop(ctx context.Context) {
	if len(n.cfg.Seeds) == 0 {
		n.joined.Store(true)
		n.log.Info().Msg("no seeds: started a new cluster")
	} else {
		backoff := n.cfg.JoinBackoffMin
		for {
			k, err := n.ml.Join(n.cfg.Seeds)
			if k > 0 {
				n.joined.Store(true)
				n.log.Info().Int("contacted", k).Int("members", n.ml.NumMembers()).Msg("joined cluster")
				break
			}
			n.log.Warn().Err(err).Dur("retry_in", backoff).Msg("join failed")
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, n.cfg.JoinBackoffMax)
		}
	}
	if len(n.cfg.Seeds) == 0 {
		return
	}
	tick := time.NewTicker(n.cfg.RejoinInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
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

// missingSeeds returns the seeds none of whose addresses is an alive member
// (or this node).
func (n *Node) missingSeeds(ctx context.Context) []string {
	alive := map[string]bool{n.ml.LocalNode().Address(): true}
	for _, m := range n.ml.Members() {
		if m.State == memberlist.StateAlive {
			alive[m.Address()] = true
		}
	}
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

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown(" + strconv.Itoa(int(s)) + ")"
}
