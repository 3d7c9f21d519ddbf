package memtrim

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes trimming. Start from DefaultConfig.
type Config struct {
	// QuietFor is how long allocation must stay under QuietRate after a
	// burst before the node trims. Shorter returns memory sooner; longer
	// forces fewer collections on a node whose bursts come in waves.
	// Default 10s, from 1s to 1h, or 0 to never trim (flag
	// --memory-trim-after).
	QuietFor time.Duration

	// MinBurst is the bytes allocated since the last trim that make one
	// worth a forced collection. Default 64 MiB, at least 1 MiB.
	MinBurst uint64

	// QuietRate is the allocation rate, in bytes a second, under which the
	// node counts as quiet: a few hundred likes a second allocate well
	// under it. Default 4 MiB/s, at least 1 KiB/s.
	QuietRate uint64

	// Interval is how often Run samples the allocation count, and so how
	// soon it holds the memory limit near the heap once a burst starts (see
	// BurstLimit). Default 250ms, from 10ms to QuietFor.
	Interval time.Duration
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{QuietFor: 10 * time.Second, MinBurst: 64 << 20, QuietRate: 4 << 20, Interval: 250 * time.Millisecond}
}

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("memtrim: invalid config")

// Bounds of Config's fields, shared by Validate and its tests.
const (
	MinQuietFor  = time.Second // --memory-trim-after's bounds, besides 0
	MaxQuietFor  = time.Hour
	minBurst     = 1 << 20
	minQuietRate = 1 << 10
	minInterval  = 10 * time.Millisecond
)

// Validate reports the first invalid field, by the flag that sets it.
func (c Config) Validate() error {
	if c.QuietFor != 0 && (c.QuietFor < MinQuietFor || c.QuietFor > MaxQuietFor) {
		return fmt.Errorf("%w: --memory-trim-after must be 0 (never) or from %s to %s, got %s",
			ErrConfig, MinQuietFor, MaxQuietFor, c.QuietFor)
	}
	if c.MinBurst < minBurst || c.QuietRate < minQuietRate {
		return fmt.Errorf("%w: MinBurst must be at least %d bytes and QuietRate at least %d bytes a second", ErrConfig, minBurst, minQuietRate)
	}
	if c.Interval < minInterval || (c.QuietFor != 0 && c.Interval > c.QuietFor) {
		return fmt.Errorf("%w: Interval must be from %s to QuietFor, got %s", ErrConfig, minInterval, c.Interval)
	}
	return nil
}
