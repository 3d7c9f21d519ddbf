package cluster

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
)

// Config tunes one node. Start from DefaultConfig (a LAN or pod network) or
// LocalConfig (one machine) and override fields.
type Config struct {
	// NodeName must be unique in the cluster and should be unique per process
	// start, so a restarted node is never mistaken for its previous life.
	NodeName string

	// BindAddr and BindPort are where memberlist listens (TCP and UDP).
	// BindPort 0 picks a free port (tests). Default 0.0.0.0:7946.
	BindAddr string
	BindPort int

	// AdvertiseAddr and AdvertisePort are what other nodes use to reach this
	// one; empty/0 lets memberlist choose (the bind address, or the first
	// private address when bound to 0.0.0.0). Set it to the pod IP in k8s.
	AdvertiseAddr string
	AdvertisePort int

	// Seeds are host:port addresses joined at start and re-joined whenever
	// one of them is not an alive member. Empty starts a new cluster.
	Seeds []string

	// JoinBackoffMin and JoinBackoffMax bound the exponential backoff between
	// failed joins at start. Default 200ms to 5s.
	JoinBackoffMin time.Duration
	JoinBackoffMax time.Duration

	// RejoinInterval is how often the seeds are checked and, if one is not an
	// alive member (say the master restarted with a new identity), joined
	// again so the cluster stays one. Each check is a DNS lookup; a re-join is
	// a push/pull (membership and version vectors). Default 10s.
	RejoinInterval time.Duration

	// PushPullInterval is how often this node exchanges membership and
	// version vectors with one random peer: the anti-entropy period, and so
	// (plus RepairDelay) the bound on how long a node that missed likes stays
	// behind. An exchange costs a few hundred bytes whatever the state size.
	// Default 10s (memberlist's LAN default of 30s is too slow for a likes
	// service).
	PushPullInterval time.Duration

	// GossipInterval is how often queued broadcasts are sent to GossipNodes
	// random peers. Shorter means lower replication latency and more packets.
	// Default 100ms.
	GossipInterval time.Duration
	GossipNodes    int

	// ProbeInterval, ProbeTimeout and SuspicionMult drive failure detection:
	// how quickly a dead node is noticed versus how often a slow one is
	// wrongly suspected. Defaults are memberlist's LAN values (1s, 500ms, 4).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int

	// RetransmitMult: each broadcast is sent RetransmitMult*log10(N+1) times.
	// Higher survives more packet loss at the cost of bandwidth. Default 4.
	RetransmitMult int

	// TCPTimeout bounds one push/pull or join exchange. Default 10s.
	TCPTimeout time.Duration

	// PacketSize is the largest gossip packet (memberlist UDPBufferSize), and
	// so bounds one frame of likes. 1400 avoids IP fragmentation on common
	// networks; raise it only where the whole path has a larger MTU.
	PacketSize int

	// FlushInterval is the longest a new like waits to be framed and sent;
	// a full frame goes at once. Default 10ms.
	FlushInterval time.Duration

	// FastPath chooses how new likes travel (docs/benchmarks.md has the
	// measurements behind the default):
	//   - FastPathDirect: each node sends its new likes straight to every
	//     alive peer, batched, over memberlist's reliable (TCP) channel. Every
	//     peer gets every batch unless a send fails; nothing is forwarded.
	//   - FastPathGossip: frames ride memberlist broadcasts, piggybacked on
	//     gossip, and receivers forward what was new once. Scales to more
	//     nodes per sender, but the queue counts transmissions, not peers, and
	//     one packet carries one frame.
	// Default FastPathDirect.
	FastPath string

	// DirectBatchBytes bounds one direct batch. Default 64 KiB.
	DirectBatchBytes int

	// PeerQueue bounds the batches waiting for one peer; when full the
	// oldest is dropped (counted) and left to push/pull. Default 256.
	PeerQueue int

	// PeerRetryInterval is how long a batch may be in flight to a peer
	// before the peer is pinged (a UDP ping, bounded by ProbeTimeout), and
	// how often it is pinged after that, to tell a slow send from a peer
	// that is away. A peer that answers while a send hangs gets the next
	// batches at once (those queued while it did not answer follow, newest
	// first); after a failed send its batches are dropped (counted, left to
	// repair) until it answers. So this, plus a round trip and a
	// FlushInterval, bounds how soon a peer whose network returns gets likes
	// again. Shorter costs more pings to an unreachable peer until it is
	// declared failed and forgotten. Default 50ms; at least 1ms, at most 1s
	// (--peer-retry-interval).
	PeerRetryInterval time.Duration

	// LogSize is how many of this node's recent likes (with their dots) are
	// kept to be framed and to answer range requests: the bound of the
	// outbound buffer and of what can be repaired by ranges rather than a
	// snapshot. ~50 bytes a like plus ids. Default 65536 (about 3 s at 20k
	// likes/s).
	LogSize int

	// RepairDelay is how long a gap seen in a peer's version vector may stay
	// open before it is requested: likes in flight on the fast path close
	// most gaps by themselves. Default 500ms.
	RepairDelay time.Duration

	// RepairTimeout is how long a requested range or snapshot is given
	// before it is asked for again. Default 5s.
	RepairTimeout time.Duration

	// SnapshotChunkBytes is the target size of one snapshot message: a
	// snapshot is streamed as many reliable messages, so its size is not
	// bounded by memberlist's push/pull limit or one TCP timeout. Default
	// 1 MiB.
	SnapshotChunkBytes int

	// MaxSnapshots bounds snapshots served at once. Default 2.
	MaxSnapshots int

	// RetireAfter is how long an origin (a process start) must have been
	// gone, with this node holding all of it that any peer reported, before
	// it leaves the version vector. Every restart adds an origin: without
	// retiring them, vectors (and push/pull) would grow with every deploy.
	// Retiring is safe: a peer that turns out to hold more of it heals the
	// others by snapshot. Default 10m.
	RetireAfter time.Duration

	// InboxSize bounds received messages (frames, repair requests, snapshot
	// chunks) waiting to be applied. When full, messages are dropped and
	// counted; the repair path asks again. Default 4096.
	InboxSize int

	// MaxQueuedFrames bounds memberlist's broadcast queue, which has no
	// limit of its own; the oldest frames are pruned first and left to
	// push/pull. Default 8192.
	MaxQueuedFrames int

	// HandoffTimeout bounds the hand-off on Close: waiting for queued
	// broadcasts to go out and pushing state to peers. Default 5s.
	HandoffTimeout time.Duration

	// LeaveTimeout bounds waiting for the leave message to be gossiped.
	// Default 2s.
	LeaveTimeout time.Duration

	// SecretKey encrypts and authenticates every gossip packet and stream
	// (memberlist keyring, AES-GCM): 16, 24 or 32 bytes for AES-128/192/256.
	// A node without the same key can neither join nor inject likes. Empty
	// means plaintext gossip: only for a trusted network or a laptop.
	SecretKey []byte

	// Label is stamped on every gossip packet and stream; a node with another
	// label is ignored, so two clusters sharing a network never merge by
	// accident. At most 255 bytes. Default "likesd".
	Label string

	// Transport, when set, carries memberlist's packets and streams instead
	// of the UDP and TCP listeners memberlist opens on BindAddr:BindPort,
	// which are then ignored; the node advertises the transport's address.
	// Nil, the default, is memberlist's own NetTransport. Tests set it to
	// cut, isolate or lose packets between nodes (internal/faultnet). A
	// transport serves one node and is shut down by its Close.
	Transport memberlist.Transport

	// Logger receives cluster events (component=cluster) and memberlist's
	// own log lines (component=memberlist).
	Logger zerolog.Logger
}

// DefaultConfig suits a LAN or Kubernetes pod network.
func DefaultConfig() Config {
	return Config{
		BindAddr:           "0.0.0.0",
		BindPort:           7946,
		JoinBackoffMin:     200 * time.Millisecond,
		JoinBackoffMax:     5 * time.Second,
		RejoinInterval:     10 * time.Second,
		PushPullInterval:   10 * time.Second,
		GossipInterval:     100 * time.Millisecond,
		GossipNodes:        3,
		ProbeInterval:      time.Second,
		ProbeTimeout:       500 * time.Millisecond,
		SuspicionMult:      4,
		RetransmitMult:     4,
		TCPTimeout:         10 * time.Second,
		PacketSize:         1400,
		FlushInterval:      10 * time.Millisecond,
		FastPath:           FastPathDirect,
		DirectBatchBytes:   64 << 10,
		PeerQueue:          256,
		PeerRetryInterval:  50 * time.Millisecond,
		LogSize:            1 << 16,
		RepairDelay:        500 * time.Millisecond,
		RepairTimeout:      5 * time.Second,
		SnapshotChunkBytes: 1 << 20,
		MaxSnapshots:       2,
		RetireAfter:        10 * time.Minute,
		InboxSize:          4096,
		MaxQueuedFrames:    8192,
		HandoffTimeout:     5 * time.Second,
		LeaveTimeout:       2 * time.Second,
		Label:              "likesd",
		Logger:             zerolog.Nop(),
	}
}

// LocalConfig suits nodes on one machine (loopback tests, a laptop
// cluster): every interval shrunk so failures and repairs show in
// milliseconds.
func LocalConfig() Config {
	c := DefaultConfig()
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.JoinBackoffMin = 20 * time.Millisecond
	c.JoinBackoffMax = 200 * time.Millisecond
	c.RejoinInterval = 200 * time.Millisecond
	c.PushPullInterval = 300 * time.Millisecond
	c.GossipInterval = 20 * time.Millisecond
	c.ProbeInterval = 100 * time.Millisecond
	c.ProbeTimeout = 50 * time.Millisecond
	c.SuspicionMult = 2
	c.TCPTimeout = 2 * time.Second
	c.HandoffTimeout = 2 * time.Second
	c.LeaveTimeout = 500 * time.Millisecond
	c.RepairDelay = 50 * time.Millisecond
	c.RepairTimeout = time.Second
	c.RetireAfter = 2 * time.Second
	return c
}

// gossipToTheDeadTime is how long memberlist keeps gossiping to a dead
// node, so a node that comes back after a short cut hears it was declared
// dead and refutes: as long as it may be suspected. Dead and left members
// stay in the member table as long.
func (c Config) gossipToTheDeadTime() time.Duration {
	return time.Duration(c.SuspicionMult+2) * c.ProbeInterval * 4
}

// Fast paths for Config.FastPath.
const (
	FastPathDirect = "direct"
	FastPathGossip = "gossip"
)

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("cluster: invalid config")

// Validate reports the first invalid field.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	switch {
	case c.NodeName == "":
		return bad("NodeName is empty")
	case net.ParseIP(c.BindAddr) == nil:
		return bad("BindAddr %q is not an IP address", c.BindAddr)
	case c.BindPort < 0 || c.BindPort > 65535:
		return bad("BindPort %d out of range", c.BindPort)
	case c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil:
		return bad("AdvertiseAddr %q is not an IP address", c.AdvertiseAddr)
	case c.AdvertisePort < 0 || c.AdvertisePort > 65535:
		return bad("AdvertisePort %d out of range", c.AdvertisePort)
	case c.JoinBackoffMin <= 0 || c.JoinBackoffMax < c.JoinBackoffMin:
		return bad("join backoff must satisfy 0 < min <= max, got %v..%v", c.JoinBackoffMin, c.JoinBackoffMax)
	case c.PushPullInterval <= 0 || c.RejoinInterval <= 0 || c.GossipInterval <= 0 ||
		c.ProbeInterval <= 0 || c.ProbeTimeout <= 0 || c.TCPTimeout <= 0 || c.FlushInterval <= 0:
		return bad("intervals and timeouts must be positive")
	case c.ProbeTimeout >= c.ProbeInterval:
		return bad("ProbeTimeout %v must be shorter than ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	case c.GossipNodes < 1 || c.SuspicionMult < 1 || c.RetransmitMult < 1:
		return bad("GossipNodes, SuspicionMult and RetransmitMult must be at least 1")
	case c.PacketSize < 512 || c.PacketSize > 65000:
		return bad("PacketSize %d outside [512, 65000]", c.PacketSize)
	case c.LogSize < 16 || c.InboxSize < 1 || c.MaxQueuedFrames < 1 || c.MaxSnapshots < 1:
		return bad("LogSize must be at least 16; InboxSize, MaxQueuedFrames and MaxSnapshots at least 1")
	case c.RepairDelay <= 0 || c.RepairTimeout <= 0 || c.RetireAfter <= 0 || c.SnapshotChunkBytes < 1024:
		return bad("RepairDelay, RepairTimeout and RetireAfter must be positive, SnapshotChunkBytes at least 1024")
	case c.HandoffTimeout < 0 || c.LeaveTimeout < 0:
		return bad("HandoffTimeout and LeaveTimeout must not be negative")
	case len(c.SecretKey) != 0 && len(c.SecretKey) != 16 && len(c.SecretKey) != 24 && len(c.SecretKey) != 32:
		return bad("SecretKey is %d bytes; want 16, 24 or 32", len(c.SecretKey))
	case c.FastPath != FastPathDirect && c.FastPath != FastPathGossip:
		return bad("FastPath %q: want %q or %q", c.FastPath, FastPathDirect, FastPathGossip)
	case c.DirectBatchBytes < 1024 || c.PeerQueue < 1:
		return bad("DirectBatchBytes must be at least 1024 and PeerQueue at least 1")
	case c.PeerRetryInterval < time.Millisecond || c.PeerRetryInterval > time.Second:
		return bad("PeerRetryInterval (--peer-retry-interval) %v outside [1ms, 1s]", c.PeerRetryInterval)
	case len(c.Label) > 255:
		return bad("Label is %d bytes; at most 255", len(c.Label))
	}
	for _, s := range c.Seeds {
		if _, port, err := net.SplitHostPort(s); err != nil {
			return bad("seed %q: %v", s, err)
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return bad("seed %q: bad port", s)
		}
	}
	return nil
}
