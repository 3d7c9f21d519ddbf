package antientropy

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes anti-entropy. Start from DefaultConfig.
type Config struct {
	// Name is this node's name, as its peers know it. Required.
	Name string

	// SyncInterval is how often a synced node starts a session with its next
	// peer (round robin). It bounds how long a difference can last after a
	// fault heals: about SyncInterval times the number of peers for one pair,
	// much less in practice as repairs spread. A session that finds nothing
	// costs one round trip and a few hundred bytes. Default 500ms, between
	// 10ms and 1m (flag --sync-interval).
	SyncInterval time.Duration

	// SessionTimeout ends a session whose peer has not answered for this
	// long; what it repaired so far stays repaired. Default 5s, between
	// 100ms and 10m (flag --sync-timeout).
	SessionTimeout time.Duration

	// SmallRange: where both sides together hold at most this many likes in
	// a differing node, they exchange them outright instead of descending.
	// Higher means fewer round trips and more bytes per difference.
	// Default 64, between 1 and 4096.
	SmallRange int

	// ChunkBytes is the size of one pull or push chunk of likes. Default
	// 256 KiB, between 4 KiB and MaxMessageBytes/2 (flag --sync-chunk-bytes).
	ChunkBytes int

	// MaxMessageBytes bounds every message this node builds; the receiver's
	// transport must accept it (memberlist's reliable channel accepts far
	// more). Default 4 MiB, between 64 KiB and 16 MiB.
	MaxMessageBytes int

	// MaxSessions is how many sessions this node runs at once, each with
	// another peer, so that a peer that stopped answering holds up only its
	// own until SessionTimeout. Default 3, between 1 and 64.
	MaxSessions int

	// MaxStreams is how many pulls and pushes one session keeps in flight:
	// a node that meets a cluster holding little pulls many posts at once.
	// Default 16, between 1 and 64.
	MaxStreams int

	// HasSeeds says whether this node was given addresses to join. Without
	// any it is alone by definition and synced at once.
	HasSeeds bool

	// JoinAttempts: when this many joins in a row reached nobody and this
	// node has never seen another member, it is alone, and synced. Default 5,
	// between 1 and 1000.
	JoinAttempts int

	// FirstSession is the first session id this node uses. Give each
	// process start a random one, so that an answer meant for a past
	// process under the same name never matches a session of this one.
	FirstSession uint64

	// Holds says this node recovered likes from its own disk, intact. When a
	// whole cluster restarts, only a node that holds likes may found it
	// while any does, so the cluster never starts empty while a member
	// holds what it acknowledged. A node whose disk was empty or damaged
	// leaves it false and syncs from a peer before it is ready.
	Holds bool

	// Partial says this node recovered some likes but its disk was
	// damaged: a founder only when no member holds likes intact, so a
	// cluster still never starts empty while a member holds likes.
	Partial bool

	// FoundAfter: when every member this node knows has answered that it is
	// not synced for this long (a cluster that restarted empty), the member
	// with the lowest name declares itself synced. Default 3s, between 10ms
	// and 10m.
	FoundAfter time.Duration
}

// Bounds of the fields a flag sets (through package cluster's Config,
// whose bounds for the same flags are these): Validate checks them.
const (
	// MinSyncInterval and MaxSyncInterval bound SyncInterval
	// (--sync-interval).
	MinSyncInterval = 10 * time.Millisecond
	MaxSyncInterval = time.Minute
	// MinSessionTimeout and MaxSessionTimeout bound SessionTimeout
	// (--sync-timeout).
	MinSessionTimeout = 100 * time.Millisecond
	MaxSessionTimeout = 10 * time.Minute
	// MinChunkBytes bounds ChunkBytes (--sync-chunk-bytes) from below;
	// MaxMessageBytes/2 from above.
	MinChunkBytes = 4 << 10
	// DefaultMaxMessageBytes is DefaultConfig's MaxMessageBytes.
	DefaultMaxMessageBytes = 4 << 20
)

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		SyncInterval:    500 * time.Millisecond,
		SessionTimeout:  5 * time.Second,
		SmallRange:      64,
		ChunkBytes:      256 << 10,
		MaxMessageBytes: DefaultMaxMessageBytes,
		MaxSessions:     3,
		MaxStreams:      16,
		JoinAttempts:    5,
		FoundAfter:      3 * time.Second,
	}
}

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("antientropy: invalid config")

// Validate reports the first invalid field, by the flag that sets it where
// there is one.
func (c Config) Validate() error {
	durations := []struct {
		name   string
		v      time.Duration
		lo, hi time.Duration
	}{
		{"--sync-interval", c.SyncInterval, MinSyncInterval, MaxSyncInterval},
		{"--sync-timeout", c.SessionTimeout, MinSessionTimeout, MaxSessionTimeout},
		{"FoundAfter", c.FoundAfter, 10 * time.Millisecond, 10 * time.Minute},
	}
	for _, d := range durations {
		if d.v < d.lo || d.v > d.hi {
			return fmt.Errorf("%w: %s must be between %s and %s, got %s", ErrConfig, d.name, d.lo, d.hi, d.v)
		}
	}
	ints := []struct {
		name   string
		v      int
		lo, hi int
	}{
		{"MaxMessageBytes", c.MaxMessageBytes, 64 << 10, 16 << 20},
		{"--sync-chunk-bytes", c.ChunkBytes, MinChunkBytes, c.MaxMessageBytes / 2},
		{"SmallRange", c.SmallRange, 1, 4096},
		{"MaxStreams", c.MaxStreams, 1, 64},
		{"MaxSessions", c.MaxSessions, 1, 64},
		{"JoinAttempts", c.JoinAttempts, 1, 1000},
	}
	for _, i := range ints {
		if i.v < i.lo || i.v > i.hi {
			return fmt.Errorf("%w: %s must be between %d and %d, got %d", ErrConfig, i.name, i.lo, i.hi, i.v)
		}
	}
	if c.Name == "" {
		return fmt.Errorf("%w: a node name is required", ErrConfig)
	}
	return nil
}
