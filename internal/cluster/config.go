package cluster

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/antientropy"
	"github.com/likesd/likesd/internal/breaker"
	"github.com/likesd/likesd/internal/ids"
	"github.com/likesd/likesd/internal/link"
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
	// again so the cluster stays one: it bounds how long a restarted seed
	// that found no one can stay an island. Each check is a DNS lookup; a
	// re-join is a push/pull of membership. Default 2s.
	RejoinInterval time.Duration

	// PushPullInterval is how often this node exchanges its full membership
	// list with one random peer (memberlist's push/pull; likes are repaired
	// by SyncInterval's sessions, not here). Default 10s.
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

	// TCPTimeout bounds one reliable send, push/pull or join: how long a dial
	// to a peer that stopped answering can hold a sender. Default 3s
	// (memberlist's LAN default is 10s; on a LAN a healthy exchange takes
	// milliseconds, and a shorter bound frees senders soon after a cut).
	//
	// It also bounds, on a likesd stream a peer opened to this node
	// (stream.go), the hello and each message once its first byte has
	// arrived: the peer's own write of a message has this bound, so a
	// message still arriving after it is a peer that stalled or one that
	// trickles bytes to hold the connection, and the stream is closed.
	TCPTimeout time.Duration

	// PacketSize is the largest gossip packet (memberlist UDPBufferSize), and
	// so bounds one frame of likes. 1400 avoids IP fragmentation on common
	// networks; raise it only where the whole path has a larger MTU.
	// From MinPacketSize to MaxPacketSize, 512 to 65000 (--packet-size).
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
	// oldest is dropped (counted) and left to anti-entropy. Default 256.
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
	// kept to be framed: the bound of the outbound buffer. A like that
	// leaves it unframed is counted and reaches peers by anti-entropy. The
	// log holds only likes not framed yet and grows to this bound only while
	// they pile up (32 bytes a like plus ids). Default 65536 (about 3 s at
	// 20k likes/s).
	LogSize int

	// SyncInterval is how often this node starts an anti-entropy session
	// with its next peer, comparing content digests (see antientropy). It
	// bounds how long a difference survives a healed fault. A session that
	// finds nothing costs one round trip and a few hundred bytes.
	// Default 500ms, between 10ms and 1m.
	SyncInterval time.Duration

	// SyncTimeout ends a session whose peer stopped answering; what it
	// repaired stays repaired. A healthy session takes milliseconds; this
	// only bounds how long a cut-off peer holds one of the session slots,
	// and must outlast a busy peer's slowest answer: a full sync that times
	// out starts over. Default 3s, between 100ms and 10m.
	SyncTimeout time.Duration

	// SyncChunkBytes is one pull or push message of likes during a session
	// (a new node's full sync is many of them). Default 256 KiB, between
	// 4 KiB and 2 MiB: far below memberlist's message limits.
	SyncChunkBytes int

	// InboxSize bounds received messages (frames and anti-entropy messages)
	// waiting to be applied. When full, messages are dropped and counted;
	// anti-entropy repairs what they carried. Default 4096.
	InboxSize int

	// MaxQueuedFrames bounds memberlist's broadcast queue, which has no
	// limit of its own; the oldest frames are pruned first and left to
	// anti-entropy. Default 8192.
	MaxQueuedFrames int

	// MaxIDBytes bounds a post or user id in a like from a peer, as the
	// API bounds what clients send (the rule is package ids'): a peer's
	// like that breaks the rule is refused, counted and logged, never
	// merged. Set it to the API's. Default 256, from 1 to 4096.
	MaxIDBytes int

	// LeaveTimeout bounds waiting for the leave message to be gossiped.
	// Default 2s.
	LeaveTimeout time.Duration

	// HandoffTimeout bounds the hand-off of a stopping node; 0 (default)
	// leaves it bounded only by Close's context. A node whose likes are on
	// its own disk (--data-dir) sets it short: it loses nothing by
	// stopping without a peer, so when every node stops at once (none is
	// left to hand off to) each exits in about this long. At most
	// MaxHandoffTimeout, 10m (--handoff-timeout).
	HandoffTimeout time.Duration

	// Holds says the node recovered likes from its disk, intact, and
	// Partial that it recovered some from a damaged one: founder
	// candidates when the whole cluster restarts (see antientropy).
	Holds, Partial bool

	// SecretKey encrypts and authenticates every gossip packet and stream
	// (memberlist keyring, AES-GCM): 16, 24 or 32 bytes for AES-128/192/256.
	// A node without the same key can neither join nor inject likes. Empty
	// (and no Keyring) means plaintext gossip and unauthenticated streams:
	// only for a trusted network or a laptop. Alone it makes a keyring of
	// one key, which cannot be rotated without a restart: see Keyring.
	SecretKey []byte

	// Keyring, when set, overrides SecretKey: memberlist gets it as its
	// Config.Keyring, and the streams' sessions (session.go) use the same
	// keys: a session is dialed under the primary key and accepted under
	// any key the keyring holds. Its owner may AddKey, UseKey and RemoveKey
	// at run time to rotate the key without a restart (add the new key on
	// every node, then use it on every node, then remove the old one);
	// cluster only reads it, through its locked GetPrimaryKey and GetKeys.
	// A session under a key no longer primary is redialed at its next
	// send, and one under a removed key is closed within a second.
	//
	// Anti-entropy's digest key is derived from the primary (HKDF, see
	// internal/gset): with a key, two different contents compare equal with
	// probability about 2^-64; without one it is a public constant, and
	// anyone who can send likes or join can choose ids that hide a
	// difference. The node re-keys its replica when the primary changes
	// (checked on anti-entropy's tick) and compares no digests with a peer
	// on another primary meanwhile.
	Keyring *memberlist.Keyring

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

	// MaxStreams bounds the likesd streams (stream.go) other nodes hold
	// open to this one at once, counted once their handshake is done (a
	// session's confirm opened, a version 1 hello verified): a connection
	// that has not proved the key takes none of these places (see
	// MaxHandshakes). Past it a new one is closed and counted. A peer of
	// the direct fast path holds one (two for a moment when it redials), so
	// keep it above the cluster's size: a peer refused gets no batches
	// until a stream closes (its likes arrive by anti-entropy, and writes
	// waiting for it answer 202). Each open stream costs a goroutine and a
	// 4 KiB read buffer, about 16 KiB, plus what a message being read has
	// brought. Default 512; between 1 and 65536 (--max-streams).
	MaxStreams int

	// MaxHandshakes bounds the stream handshakes in progress: connections
	// that sent a stream's magic byte and have not finished the handshake
	// (anyone on the network can open them, no key needed). Past it the
	// oldest is closed to let the newest in, and counted: a flood of
	// connections that never finish cannot shut out a real peer, whose
	// handshake takes a round trip, and none of them takes a MaxStreams
	// place. The whole handshake, from the magic byte, has TCPTimeout.
	// Each costs a goroutine and a 4 KiB read buffer. Default 64; between 1
	// and 4096 (--max-handshakes).
	MaxHandshakes int

	// MaxStreamsPerPeer bounds the streams that name one peer in their
	// hello. Past it the peer's oldest stream is closed, not the new one:
	// a peer that restarted, or redialed after a cut its old stream never
	// saw the end of, is never shut out by its own stale streams. Only
	// the newest carries acks, so a few are plenty. Default 4; between 1
	// and 64 (above MaxStreams it never binds).
	MaxStreamsPerPeer int

	// Writes sets write levels and the write timeout (internal/acks;
	// defaults there).
	Writes acks.Config

	// Breaker tunes each peer's circuit breaker (internal/breaker;
	// defaults there), which the peer's link keeps (internal/link).
	Breaker breaker.Config

	// streamsV1Only makes the node speak stream version 1 only, as the
	// version before sessions did: tests of a rolling upgrade.
	streamsV1Only bool

	// Logger receives cluster events (component=cluster) and memberlist's
	// own log lines (component=memberlist).
	Logger zerolog.Logger

	// Memory, when set, is asked before any like from a peer is applied
	// (guard.go): while it is full, no frame and no anti-entropy message
	// from a peer is applied, and no frame is acknowledged, so the
	// senders keep what they sent and anti-entropy brings it once memory
	// falls. Nil, the default: no bound (internal/membudget's hard mark,
	// --memory-peers-refuse-at).
	Memory Memory
}

// Memory is what the cluster needs from the node's memory budget.
type Memory interface {
	// Full reports whether the node takes no likes from peers. It is on
	// the path of every message from a peer: it must be O(1) and must not
	// block.
	Full() bool
}

// DefaultConfig suits a LAN or Kubernetes pod network.
func DefaultConfig() Config {
	return Config{
		BindAddr:          "0.0.0.0",
		BindPort:          7946,
		JoinBackoffMin:    200 * time.Millisecond,
		JoinBackoffMax:    5 * time.Second,
		RejoinInterval:    2 * time.Second,
		PushPullInterval:  10 * time.Second,
		GossipInterval:    100 * time.Millisecond,
		GossipNodes:       3,
		ProbeInterval:     time.Second,
		ProbeTimeout:      500 * time.Millisecond,
		SuspicionMult:     4,
		RetransmitMult:    4,
		TCPTimeout:        3 * time.Second,
		PacketSize:        1400,
		FlushInterval:     10 * time.Millisecond,
		FastPath:          FastPathDirect,
		DirectBatchBytes:  64 << 10,
		PeerQueue:         256,
		PeerRetryInterval: 50 * time.Millisecond,
		LogSize:           1 << 16,
		SyncInterval:      500 * time.Millisecond,
		SyncTimeout:       3 * time.Second,
		SyncChunkBytes:    256 << 10,
		InboxSize:         4096,
		MaxIDBytes:        ids.DefaultMaxBytes,
		MaxStreams:        512,
		MaxStreamsPerPeer: 4,
		MaxHandshakes:     64,
		MaxQueuedFrames:   8192,
		LeaveTimeout:      2 * time.Second,
		Label:             "likesd",
		Writes:            acks.DefaultConfig(),
		Breaker:           breaker.DefaultConfig(),
		Logger:            zerolog.Nop(),
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
	c.LeaveTimeout = 500 * time.Millisecond
	c.SyncInterval = 100 * time.Millisecond
	c.SyncTimeout = 2 * time.Second
	return c
}

// gossipToTheDeadTime is how long memberlist keeps gossiping to a dead
// node, so a node that comes back after a short cut hears it was declared
// dead and refutes: as long as it may be suspected. Dead and left members
// stay in the member table as long.
func (c Config) gossipToTheDeadTime() time.Duration {
	return time.Duration(c.SuspicionMult+2) * c.ProbeInterval * 4
}

// linkConfig is the fast path's links' config (internal/link validates
// its bounds).
func (c Config) linkConfig() link.Config {
	return link.Config{
		Queue: c.PeerQueue, BatchBytes: c.DirectBatchBytes, RetryInterval: c.PeerRetryInterval,
		Timeout: c.Writes.Timeout, Breaker: c.Breaker, Join: joinFrames,
	}
}

// Fast paths for Config.FastPath.
const (
	FastPathDirect = "direct"
	FastPathGossip = "gossip"
)

// Bounds of Config's fields that a flag sets: Validate checks them, and
// cmd/likesd's flags take theirs from here, so the two cannot drift. The
// fast path's links and write levels have theirs in packages link, acks
// and breaker.
const (
	// MinInterval bounds the intervals and timeouts that must only be
	// positive: PushPullInterval, GossipInterval, ProbeInterval,
	// ProbeTimeout (also shorter than ProbeInterval), RejoinInterval,
	// FlushInterval and TCPTimeout.
	MinInterval = time.Nanosecond

	// MinPacketSize and MaxPacketSize bound PacketSize (--packet-size):
	// the smallest datagram every IPv4 host takes, and about the most one
	// UDP datagram carries.
	MinPacketSize = 512
	MaxPacketSize = 65000

	// MinLogSize bounds LogSize (--log-size) from below.
	MinLogSize = 16
	// MinInboxSize bounds InboxSize (--inbox-size) from below.
	MinInboxSize = 1
	// MinQueuedFrames bounds MaxQueuedFrames (--max-queued-frames) from
	// below.
	MinQueuedFrames = 1

	// MinSyncInterval and MaxSyncInterval bound SyncInterval
	// (--sync-interval); they are anti-entropy's, which checks them again.
	MinSyncInterval = antientropy.MinSyncInterval
	MaxSyncInterval = antientropy.MaxSyncInterval
	// MinSyncTimeout and MaxSyncTimeout bound SyncTimeout (--sync-timeout):
	// anti-entropy's session timeout.
	MinSyncTimeout = antientropy.MinSessionTimeout
	MaxSyncTimeout = antientropy.MaxSessionTimeout
	// MinSyncChunkBytes and MaxSyncChunkBytes bound SyncChunkBytes
	// (--sync-chunk-bytes): anti-entropy's, with its default message
	// bound, which the node keeps.
	MinSyncChunkBytes = antientropy.MinChunkBytes
	MaxSyncChunkBytes = antientropy.DefaultMaxMessageBytes / 2

	// MaxHandoffTimeout bounds HandoffTimeout (--handoff-timeout), which
	// is at least 0.
	MaxHandoffTimeout = 10 * time.Minute

	// MinStreams and MaxStreamsLimit bound MaxStreams (--max-streams): as
	// many open streams cost about 1 GiB.
	MinStreams      = 1
	MaxStreamsLimit = 1 << 16

	// MinHandshakes and MaxHandshakesLimit bound MaxHandshakes
	// (--max-handshakes): a few real peers handshake at once (a rollout, a
	// key rotation), so more only helps a flood.
	MinHandshakes      = 1
	MaxHandshakesLimit = 4096

	// MaxLabelBytes bounds Label (--cluster-label).
	MaxLabelBytes = 255
)

// Bounds of fields no flag sets.
const (
	maxStreamsPerPeerLimit = 64
	maxIDBytesLimit        = 4096 // as package api's MaxIDLimit
)

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("cluster: invalid config")

// Validate reports the first invalid field, by the flag that sets it
// (fields no flag sets by their name).
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"--push-pull-interval", c.PushPullInterval}, {"--rejoin-interval", c.RejoinInterval},
		{"--gossip-interval", c.GossipInterval}, {"--probe-interval", c.ProbeInterval},
		{"--probe-timeout", c.ProbeTimeout}, {"TCPTimeout", c.TCPTimeout}, {"--flush-interval", c.FlushInterval},
	}
	for _, p := range positive {
		if p.d < MinInterval {
			return bad("%s must be positive, got %s", p.name, p.d)
		}
	}
	switch {
	case c.NodeName == "":
		return bad("--node-name is empty")
	case net.ParseIP(c.BindAddr) == nil:
		return bad("--gossip-addr: %q is not an IP address", c.BindAddr)
	case c.BindPort < 0 || c.BindPort > 65535:
		return bad("--gossip-addr: port %d out of range", c.BindPort)
	case c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil:
		return bad("--advertise-addr: %q is not an IP address", c.AdvertiseAddr)
	case c.AdvertisePort < 0 || c.AdvertisePort > 65535:
		return bad("--advertise-addr: port %d out of range", c.AdvertisePort)
	case c.JoinBackoffMin <= 0 || c.JoinBackoffMax < c.JoinBackoffMin:
		return bad("join backoff must satisfy 0 < JoinBackoffMin <= JoinBackoffMax, got %v..%v", c.JoinBackoffMin, c.JoinBackoffMax)
	case c.ProbeTimeout >= c.ProbeInterval:
		return bad("--probe-timeout %v must be shorter than --probe-interval %v", c.ProbeTimeout, c.ProbeInterval)
	case c.GossipNodes < 1 || c.SuspicionMult < 1 || c.RetransmitMult < 1:
		return bad("GossipNodes, SuspicionMult and RetransmitMult must be at least 1")
	case c.PacketSize < MinPacketSize || c.PacketSize > MaxPacketSize:
		return bad("--packet-size must be from %d to %d, got %d", MinPacketSize, MaxPacketSize, c.PacketSize)
	case c.MaxIDBytes < 1 || c.MaxIDBytes > maxIDBytesLimit:
		return bad("MaxIDBytes must be from 1 to %d, got %d", maxIDBytesLimit, c.MaxIDBytes)
	case c.LogSize < MinLogSize:
		return bad("--log-size must be at least %d, got %d", MinLogSize, c.LogSize)
	case c.InboxSize < MinInboxSize:
		return bad("--inbox-size must be at least %d, got %d", MinInboxSize, c.InboxSize)
	case c.MaxQueuedFrames < MinQueuedFrames:
		return bad("--max-queued-frames must be at least %d, got %d", MinQueuedFrames, c.MaxQueuedFrames)
	case c.SyncInterval < MinSyncInterval || c.SyncInterval > MaxSyncInterval:
		return bad("--sync-interval must be from %s to %s, got %s", MinSyncInterval, MaxSyncInterval, c.SyncInterval)
	case c.SyncTimeout < MinSyncTimeout || c.SyncTimeout > MaxSyncTimeout:
		return bad("--sync-timeout must be from %s to %s, got %s", MinSyncTimeout, MaxSyncTimeout, c.SyncTimeout)
	case c.SyncChunkBytes < MinSyncChunkBytes || c.SyncChunkBytes > MaxSyncChunkBytes:
		return bad("--sync-chunk-bytes must be from %d to %d, got %d", MinSyncChunkBytes, MaxSyncChunkBytes, c.SyncChunkBytes)
	case c.LeaveTimeout < 0:
		return bad("LeaveTimeout must not be negative, got %s", c.LeaveTimeout)
	case c.HandoffTimeout < 0 || c.HandoffTimeout > MaxHandoffTimeout:
		return bad("--handoff-timeout must be from 0s to %s, got %s", MaxHandoffTimeout, c.HandoffTimeout)
	case len(c.SecretKey) != 0 && len(c.SecretKey) != 16 && len(c.SecretKey) != 24 && len(c.SecretKey) != 32:
		return bad("--gossip-key is %d bytes; want 16, 24 or 32", len(c.SecretKey))
	case c.Keyring != nil && len(c.Keyring.GetPrimaryKey()) == 0:
		return bad("the gossip keyring has no primary key")
	case c.FastPath != FastPathDirect && c.FastPath != FastPathGossip:
		return bad("--fast-path %q: want %q or %q", c.FastPath, FastPathDirect, FastPathGossip)
	case c.MaxStreams < MinStreams || c.MaxStreams > MaxStreamsLimit:
		return bad("--max-streams must be from %d to %d, got %d", MinStreams, MaxStreamsLimit, c.MaxStreams)
	case c.MaxHandshakes < MinHandshakes || c.MaxHandshakes > MaxHandshakesLimit:
		return bad("--max-handshakes must be from %d to %d, got %d", MinHandshakes, MaxHandshakesLimit, c.MaxHandshakes)
	case c.MaxStreamsPerPeer < 1 || c.MaxStreamsPerPeer > maxStreamsPerPeerLimit:
		return bad("MaxStreamsPerPeer must be from 1 to %d, got %d", maxStreamsPerPeerLimit, c.MaxStreamsPerPeer)
	case len(c.Label) > MaxLabelBytes:
		return bad("--cluster-label is %d bytes; at most %d", len(c.Label), MaxLabelBytes)
	}
	if err := c.Writes.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := c.linkConfig().Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	for _, s := range c.Seeds {
		if _, port, err := net.SplitHostPort(s); err != nil {
			return bad("--join: seed %q: %v", s, err)
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return bad("--join: seed %q: bad port", s)
		}
	}
	return nil
}
