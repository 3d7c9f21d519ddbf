package api

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes the HTTP interface.
type Config struct {
	// Addr is the host:port the server listens on. Default ":8080".
	Addr string

	// AdminAddr is the host:port of the operator listener (admin.go):
	// /metrics, /v1/cluster, /healthz, /readyz and pprof. Empty (the
	// default): no admin listener, and all but pprof stay on Addr, as
	// before it existed; set it to keep them off the port clients reach.
	AdminAddr string

	// MaxHeaderBytes bounds a request's line and headers together (net/http
	// answers 431 past it). Default 64 KiB, from 4 KiB to 1 MiB (net/http's
	// own default, which lets any client park a megabyte per connection):
	// enough for /v1/counts with 1000 escaped posts of about 20 bytes; a
	// batch of long ids needs more, or POST in several calls.
	MaxHeaderBytes int

	// MaxBodyBytes bounds a request body; larger bodies get 413. Default 64
	// KiB, at most 1 MiB.
	MaxBodyBytes int64

	// MaxIDBytes bounds a post or user id. Default 256, at most 4096.
	MaxIDBytes int

	// DefaultPageSize and MaxPageSize bound /likers pages. Default 100, 1000.
	DefaultPageSize int
	MaxPageSize     int

	// MaxBatchPosts bounds the posts of one /v1/counts call. Default 1000,
	// at most 100,000.
	MaxBatchPosts int

	// MaxBulkLikes bounds the likes of one bulk import (POST /v1/likes);
	// more get 413. Default 10,000: large enough that loading millions
	// costs few round trips, small enough that one request holds a node's
	// store for milliseconds, not seconds. At most 1,000,000.
	MaxBulkLikes int

	// MaxBulkBodyBytes bounds a bulk import's body. Default 8 MiB: 10,000
	// likes of 256-byte ids take about 5.3 MB. At most 256 MiB.
	MaxBulkBodyBytes int64

	// MaxBulkReadBytes bounds the bytes of the bulk import bodies being
	// read at once, all clients together, about what their buffers hold:
	// an import is read before it takes its MaxBulk slot (so clients that
	// stall their bodies hold connections, not slots), and this is what
	// bounds the memory of many slow bodies. An import whose bytes would
	// take the total past it is refused with 429 overloaded and
	// Retry-After. Higher lets more imports upload at once, from slow
	// clients too; lower caps the memory they hold. Default 32 MiB (the
	// bytes MaxBulk imports of MaxBulkBodyBytes held before), from
	// MaxBulkBodyBytes (one largest import must fit) to 16 GiB
	// (--max-bulk-read-bytes).
	MaxBulkReadBytes int64

	// MaxWrites, MaxBulk and MaxReads are the compartments of the node's
	// work (a bulkhead): how many single likes, bulk imports and reads it
	// serves at once. Past a compartment's limit a request is refused at
	// once with 429 and Retry-After, never queued, so a flood of one kind
	// neither grows memory nor starves the others. A write holds its slot
	// while it waits for acknowledgements (up to the write timeout); a
	// read that waits for a version (ReadWait) gives its slot back while
	// it waits, so reads waiting on a lagging node do not lock out the
	// others (they are bounded by MaxConns), and takes one again to answer
	// (429 if none is free then). Defaults 1024, 4 and
	// 1024; from 1 to 1,000,000. A bulk import takes its slot once its
	// body is read (MaxBulkReadBytes bounds the bodies being read), and
	// holds MaxBulkBodyBytes and more while it is stored: MaxBulk bounds
	// that memory.
	MaxWrites int
	MaxBulk   int
	MaxReads  int

	// BulkRate limits each client's bulk imports, in imports per second
	// with bursts of BulkBurst; more are refused with 429 rate_limited. A
	// client is its API token when tokens are on (tokens.go), else its
	// remote IPv4 address or IPv6 /64 (ratelimit.go). Behind a proxy or a
	// load balancer that rewrites source addresses (SNAT) every client is
	// the proxy's address and all share one bucket: X-Forwarded-For is not
	// trusted. The buckets of 16,384 clients are kept, the least recently
	// used forgotten past that. Default 0: no per-client limit, only
	// MaxBulk. Burst default 4, from 1 to 10,000.
	BulkRate  float64
	BulkBurst int

	// ReadWait bounds how long a read that carries a version token waits
	// for this node to hold the like the token names before it answers 503
	// version_not_seen. Longer rides out more replication lag (milliseconds
	// normally; up to a sync interval when anti-entropy has to repair a
	// dropped batch) but holds the client, and its connection, that long;
	// 0 never waits: a read answers only if the like is already here.
	// Default 1s, at most 1m. The server's write deadline is WriteTimeout
	// after this wait, so a long ReadWait does not cut replies.
	ReadWait time.Duration

	// MaxConns bounds the API's open connections: past it new ones wait
	// in the kernel's accept queue, not in this process, so idle or
	// half-sent connections (up to MaxHeaderBytes each) cannot grow the
	// heap without bound. Default 1024, from 16 to 1,048,576
	// (--max-connections).
	MaxConns int

	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout protect
	// the server from slow or idle clients. Defaults 5s, 10s, 10s, 30s.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Addr:              ":8080",
		MaxHeaderBytes:    64 << 10,
		MaxBodyBytes:      64 << 10,
		MaxIDBytes:        256,
		DefaultPageSize:   100,
		MaxPageSize:       1000,
		MaxBatchPosts:     1000,
		MaxBulkLikes:      10000,
		MaxBulkBodyBytes:  8 << 20,
		MaxBulkReadBytes:  32 << 20,
		MaxWrites:         1024,
		MaxBulk:           4,
		MaxReads:          1024,
		BulkBurst:         4,
		ReadWait:          time.Second,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxConns:          1024,
	}
}

// maxReadWait bounds Config.ReadWait: a client that waits longer for one
// like is better told to retry (or to read elsewhere).
const maxReadWait = time.Minute

// Bounds of Config's sizes (cmd/likesd checks its flags against them, so a
// bad value is reported with the flag's name).
const (
	MinConns         = 16
	MaxConnsLimit    = 1 << 20
	MinHeaderBytes   = 4 << 10
	MaxHeaderBytes   = 1 << 20
	MaxBodyLimit     = 1 << 20
	MaxIDLimit       = 4096
	MaxBatchLimit    = 100_000
	MaxPageLimit     = 100_000
	MaxBulkLikeLimit = 1_000_000
	MaxBulkBodyLimit = 256 << 20
	MaxBulkReadLimit = 16 << 30
	MaxConcurrency   = 1_000_000
	MaxBulkRate      = 1_000_000
	MaxBulkBurst     = 10_000
)

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("api: invalid config")

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("%w: Addr is empty", ErrConfig)
	case c.AdminAddr != "" && c.AdminAddr == c.Addr:
		return fmt.Errorf("%w: AdminAddr is Addr; the admin listener needs its own", ErrConfig)
	case c.MaxHeaderBytes < MinHeaderBytes || c.MaxHeaderBytes > MaxHeaderBytes:
		return fmt.Errorf("%w: MaxHeaderBytes must be from %d to %d, got %d", ErrConfig, MinHeaderBytes, MaxHeaderBytes, c.MaxHeaderBytes)
	case c.MaxBodyBytes < 1 || c.MaxBodyBytes > MaxBodyLimit:
		return fmt.Errorf("%w: MaxBodyBytes must be from 1 to %d", ErrConfig, MaxBodyLimit)
	case c.MaxIDBytes < 1 || c.MaxIDBytes > MaxIDLimit:
		return fmt.Errorf("%w: MaxIDBytes must be from 1 to %d", ErrConfig, MaxIDLimit)
	case c.DefaultPageSize < 1 || c.MaxPageSize < c.DefaultPageSize || c.MaxPageSize > MaxPageLimit:
		return fmt.Errorf("%w: need 1 <= DefaultPageSize <= MaxPageSize <= %d", ErrConfig, MaxPageLimit)
	case c.MaxBatchPosts < 1 || c.MaxBatchPosts > MaxBatchLimit:
		return fmt.Errorf("%w: MaxBatchPosts must be from 1 to %d", ErrConfig, MaxBatchLimit)
	case c.MaxBulkLikes < 1 || c.MaxBulkLikes > MaxBulkLikeLimit || c.MaxBulkBodyBytes < 1 || c.MaxBulkBodyBytes > MaxBulkBodyLimit:
		return fmt.Errorf("%w: MaxBulkLikes must be from 1 to %d and MaxBulkBodyBytes from 1 to %d", ErrConfig, MaxBulkLikeLimit, MaxBulkBodyLimit)
	case c.MaxBulkReadBytes < c.MaxBulkBodyBytes || c.MaxBulkReadBytes > MaxBulkReadLimit:
		return fmt.Errorf("%w: MaxBulkReadBytes (--max-bulk-read-bytes) must be from MaxBulkBodyBytes (%d) to %d, got %d",
			ErrConfig, c.MaxBulkBodyBytes, int64(MaxBulkReadLimit), c.MaxBulkReadBytes)
	case c.MaxWrites < 1 || c.MaxBulk < 1 || c.MaxReads < 1 ||
		c.MaxWrites > MaxConcurrency || c.MaxBulk > MaxConcurrency || c.MaxReads > MaxConcurrency:
		return fmt.Errorf("%w: MaxWrites, MaxBulk and MaxReads must be from 1 to %d", ErrConfig, MaxConcurrency)
	case c.BulkRate < 0 || c.BulkRate > MaxBulkRate || c.BulkBurst < 1 || c.BulkBurst > MaxBulkBurst:
		return fmt.Errorf("%w: BulkRate must be from 0 to %d and BulkBurst from 1 to %d", ErrConfig, MaxBulkRate, MaxBulkBurst)
	case c.ReadWait < 0 || c.ReadWait > maxReadWait:
		return fmt.Errorf("%w: ReadWait must be from 0s to %v, got %v", ErrConfig, maxReadWait, c.ReadWait)
	case c.MaxConns < MinConns || c.MaxConns > MaxConnsLimit:
		return fmt.Errorf("%w: MaxConns must be from %d to %d, got %d", ErrConfig, MinConns, MaxConnsLimit, c.MaxConns)
	case c.ReadHeaderTimeout <= 0 || c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0:
		return fmt.Errorf("%w: timeouts must be positive", ErrConfig)
	}
	return nil
}
