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

// Bounds of Config's fields: Validate checks them, and cmd/likesd's flags
// take theirs from here, so the two cannot drift.
const (
	// MinFailures and MaxFailures bound Failures (--breaker-failures).
	MinFailures = 1
	MaxFailures = 1000
	// MinCooldown and MaxCooldown bound Cooldown (--breaker-cooldown).
	MinCooldown = 10 * time.Millisecond
	MaxCooldown = 5 * time.Minute
)

// Validate reports the first invalid field, by the flag that sets it.
func (c Config) Validate() error {
	if c.Failures < MinFailures || c.Failures > MaxFailures {
		return fmt.Errorf("%w: --breaker-failures must be from %d to %d, got %d",
			ErrConfig, MinFailures, MaxFailures, c.Failures)
	}
	if c.Cooldown < MinCooldown || c.Cooldown > MaxCooldown {
		return fmt.Errorf("%w: --breaker-cooldown must be from %s to %s, got %s",
			ErrConfig, MinCooldown, MaxCooldown, c.Cooldown)
	}
	return nil
}
