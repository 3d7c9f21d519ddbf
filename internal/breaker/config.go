package breaker

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes a Breaker. Start from DefaultConfig.
type Config struct {
	// Failures is how many consecutive failures (with no success between
	// them) open a closed breaker. Lower stops sending to a dead peer
	// sooner; higher rides out a lost frame or two without holding sends
	// back. Default 3, from 1 to 1000 (flag --breaker-failures).
	Failures int

	// Cooldown is how long an open breaker stays open before it lets a
	// probe through (half-open). Lower finds a recovered peer sooner;
	// higher costs a dead peer fewer wasted sends and timeouts. Default 1s,
	// from 10ms to 5m (flag --breaker-cooldown).
	Cooldown time.Duration
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Failures: 3,
		Cooldown: time.Second,
	}
}

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("breaker: invalid config")

// Bounds of Config's fields, shared by Validate and its tests.
const (
	minFailures = 1
	maxFailures = 1000
	minCooldown = 10 * time.Millisecond
	maxCooldown = 5 * time.Minute
)

// Validate reports the first invalid field, by the flag that sets it.
func (c Config) Validate() error {
	if c.Failures < minFailures || c.Failures > maxFailures {
		return fmt.Errorf("%w: --breaker-failures must be from %d to %d, got %d",
			ErrConfig, minFailures, maxFailures, c.Failures)
	}
	if c.Cooldown < minCooldown || c.Cooldown > maxCooldown {
		return fmt.Errorf("%w: --breaker-cooldown must be from %s to %s, got %s",
			ErrConfig, minCooldown, maxCooldown, c.Cooldown)
	}
	return nil
}
