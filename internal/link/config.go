package link

import (
	"errors"
	"fmt"
	"time"

	"github.com/likesd/likesd/internal/breaker"
)

// Config tunes every peer's link.
type Config struct {
	// Queue bounds the frames waiting for one peer, and its backlog; past
	// it the oldest is dropped (counted) and left to anti-entropy.
	// Default 256, at least MinQueue (--peer-queue).
	Queue int

	// BatchBytes bounds a send: queued frames are joined up to it.
	// Default 64 KiB, at least MinBatchBytes, 1024 (--direct-batch-bytes).
	BatchBytes int

	// RetryInterval is how long a send may be in flight before its peer is
	// probed, and how often it is probed after that (and after a failed
	// send). Default 50ms, from MinRetryInterval to MaxRetryInterval, 1ms
	// to 1s (--peer-retry-interval).
	RetryInterval time.Duration

	// Timeout is how long a frame may stay unacknowledged before it counts
	// as a failure of its peer (--write-timeout). Default 200ms, from
	// acks.MinTimeout to acks.MaxTimeout, 1ms to 5s.
	Timeout time.Duration

	// Breaker tunes each peer's breaker.
	Breaker breaker.Config

	// Join joins frame b after frame a into one of at most limit bytes, or
	// reports false. Nil: frames are never joined.
	Join func(a, b []byte, limit int) ([]byte, bool)
}

// Bounds of Config's fields: Validate checks them, and cmd/likesd's flags
// take theirs from here, so the two cannot drift.
const (
	// MinQueue bounds Queue (--peer-queue) from below.
	MinQueue = 1
	// MinBatchBytes bounds BatchBytes (--direct-batch-bytes) from below.
	MinBatchBytes = 1024
	// MinRetryInterval and MaxRetryInterval bound RetryInterval
	// (--peer-retry-interval).
	MinRetryInterval = time.Millisecond
	MaxRetryInterval = time.Second

	// minTimeout and maxTimeout are package acks' MinTimeout and
	// MaxTimeout (--write-timeout sets both configs' Timeout; the flag
	// takes acks'). link cannot import acks, whose tests drive a link:
	// link's tests check the two agree.
	minTimeout = time.Millisecond
	maxTimeout = 5 * time.Second
)

// MaxProbes and MaxAbandoned are fixed.
const (
	// MaxProbes bounds the probes to one peer in flight at once.
	MaxProbes = 32
	// MaxAbandoned bounds the sends to one peer left in flight at once;
	// past it a slow send is waited for.
	MaxAbandoned = 4
)

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Queue: 256, BatchBytes: 64 << 10, RetryInterval: 50 * time.Millisecond,
		Timeout: 200 * time.Millisecond, Breaker: breaker.DefaultConfig(),
	}
}

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("link: invalid config")

// Validate reports the first invalid field by the flag that sets it.
func (c Config) Validate() error {
	switch {
	case c.Queue < MinQueue:
		return fmt.Errorf("%w: --peer-queue must be at least %d, got %d", ErrConfig, MinQueue, c.Queue)
	case c.BatchBytes < MinBatchBytes:
		return fmt.Errorf("%w: --direct-batch-bytes must be at least %d, got %d", ErrConfig, MinBatchBytes, c.BatchBytes)
	case c.RetryInterval < MinRetryInterval || c.RetryInterval > MaxRetryInterval:
		return fmt.Errorf("%w: --peer-retry-interval must be from %s to %s, got %s", ErrConfig, MinRetryInterval, MaxRetryInterval, c.RetryInterval)
	case c.Timeout < minTimeout || c.Timeout > maxTimeout:
		return fmt.Errorf("%w: --write-timeout must be from %s to %s, got %s", ErrConfig, minTimeout, maxTimeout, c.Timeout)
	}
	return c.Breaker.Validate()
}
