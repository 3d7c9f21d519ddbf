package store

import (
	"errors"
	"fmt"
)

// Config tunes the store.
type Config struct {
	// Shards is the number of independently locked partitions of the post
	// space. More shards mean less lock contention between posts and a little
	// more fixed memory. Must be a power of two between 1 and 65536.
	// Default 256: far more than the cores that can contend on a node.
	Shards int
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config { return Config{Shards: 256} }

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("store: invalid config")

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.Shards < 1 || c.Shards > 1<<16 || c.Shards&(c.Shards-1) != 0 {
		return fmt.Errorf("%w: Shards must be a power of two in [1, 65536], got %d", ErrConfig, c.Shards)
	}
	return nil
}
