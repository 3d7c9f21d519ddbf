package wal

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/rs/zerolog"
)

// Fsync modes.
const (
	// FsyncAlways: a record counts as durable once an fdatasync covers it.
	FsyncAlways = "always"
	// FsyncInterval: a record counts as durable once appended; the log is
	// synced every Interval, so a power cut loses up to that much.
	FsyncInterval = "interval"
)

// Config tunes the log.
type Config struct {
	// Dir is the data directory. Required; created if missing (flag
	// --data-dir).
	Dir string

	// FS is the file system; nil means the operating system's. Tests pass
	// a strict in-memory one that forgets what was not synced.
	FS vfs.FS

	// Fsync is FsyncAlways (default) or FsyncInterval (flag --fsync).
	Fsync string

	// Interval is how often FsyncInterval syncs. Default 100ms, between
	// 1ms and 10s (flag --fsync-interval).
	Interval time.Duration

	// SegmentBytes: a segment that grew past this is closed and a new one
	// started. Smaller segments are cut sooner after a snapshot. Default
	// 64 MiB, between 4 KiB and 4 GiB.
	SegmentBytes int64

	// SnapshotBytes: once this much log was written since the last
	// snapshot, a new one is written in the background and the log before
	// it deleted. Lower means faster recovery (less log to replay) and
	// more snapshot writing. A restart also copies the log after the
	// newest snapshot (to fence out a stale process), so this bounds that
	// too: replaying a like from the log costs about 10 times what loading
	// it from a snapshot does (docs/benchmarks.md). Default 32 MiB (about
	// 1M likes of short ids), between 4 KiB and 64 GiB.
	SnapshotBytes int64

	// RetryAfter is how long the log waits before it tries again to write
	// a failed disk's data anew. Default 1s, between 1ms and 1m.
	RetryAfter time.Duration

	// Logger receives what recovery found and the disk's failures.
	Logger zerolog.Logger
}

// DefaultConfig returns the defaults documented on Config, for dir.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:           dir,
		Fsync:         FsyncAlways,
		Interval:      100 * time.Millisecond,
		SegmentBytes:  64 << 20,
		SnapshotBytes: 32 << 20,
		RetryAfter:    time.Second,
		Logger:        zerolog.Nop(),
	}
}

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("wal: invalid config")

// Validate reports the first invalid field, named by its flag where it has
// one.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: --data-dir is required", ErrConfig)
	case c.Fsync != FsyncAlways && c.Fsync != FsyncInterval:
		return fmt.Errorf("%w: --fsync must be %q or %q, got %q", ErrConfig, FsyncAlways, FsyncInterval, c.Fsync)
	case c.Interval < time.Millisecond || c.Interval > 10*time.Second:
		return fmt.Errorf("%w: --fsync-interval must be between 1ms and 10s, got %s", ErrConfig, c.Interval)
	case c.SegmentBytes < 4<<10 || c.SegmentBytes > 4<<30:
		return fmt.Errorf("%w: SegmentBytes must be between 4 KiB and 4 GiB, got %d", ErrConfig, c.SegmentBytes)
	case c.SnapshotBytes < 4<<10 || c.SnapshotBytes > 64<<30:
		return fmt.Errorf("%w: SnapshotBytes must be between 4 KiB and 64 GiB, got %d", ErrConfig, c.SnapshotBytes)
	case c.RetryAfter < time.Millisecond || c.RetryAfter > time.Minute:
		return fmt.Errorf("%w: RetryAfter must be between 1ms and 1m, got %s", ErrConfig, c.RetryAfter)
	}
	return nil
}
