package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/api"
	"github.com/likesd/likesd/internal/breaker"
	"github.com/likesd/likesd/internal/cluster"
	"github.com/likesd/likesd/internal/link"
	"github.com/likesd/likesd/internal/membudget"
	"github.com/likesd/likesd/internal/memtrim"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/wal"
)

var errHelp = errors.New("help requested")

// options is everything the command line and environment set.
type options struct {
	api     api.Config
	cluster cluster.Config
	store   store.Config
	trim    memtrim.Config
	wal     wal.Config       // Dir empty: in memory only
	budget  membudget.Config // Limit is set at start, from the container or --memory-limit

	debugAddr       string
	keyFile         string      // --gossip-key-file, re-read while running; empty with --gossip-key
	allowDemoKey    bool        // --dev-allow-demo-key
	tokens          *api.Tokens // from --api-token-file; nil: no tokens
	memoryLimit     int64       // bytes for debug.SetMemoryLimit; -1: leave the runtime's (GOMEMLIMIT)
	gcPercent       int         // for debug.SetGCPercent; 0: leave the runtime's (GOGC)
	logLevel        zerolog.Level
	logFormat       string
	shutdownDrain   time.Duration
	shutdownTimeout time.Duration
	showVersion     bool

	// warnings are logged once the logger exists (unknown LIKESD_ variables).
	warnings []string
	// noColor is set by NO_COLOR (https://no-color.org).
	noColor bool
}

const usageHeader = `likesd: a clustered likes counter. Every node answers the HTTP API over its
in-memory replica (logged to --data-dir when given), spreads each like to the
others by gossip (memberlist), and repairs divergence by anti-entropy, so all
nodes converge to the same exact counts: one user's like counts once, however
often it is retried.

Usage:
  likesd [flags]                       start a node (a new cluster, or --join one)
  likesd --join 10.0.0.1:7946          join an existing cluster through a seed
  likesd keygen [--out FILE]           a new random gossip key (base64): printed, or
                                       written to FILE unless FILE exists (then kept)

Every flag can also be set by an environment variable LIKESD_<FLAG> (upper
case, dashes as underscores: --http-addr is LIKESD_HTTP_ADDR). A flag given on
the command line wins over the environment.

Flags:
`

const envPrefix = "LIKESD_"

// envName maps a flag to its environment variable.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// flags registers likesd's flags with values that check themselves when
// set, so a bad value is reported with the flag's (or variable's) name and
// what is expected, not with a Go field name.
type flags struct {
	fs *flag.FlagSet
	// failed is the last value a Set rejected: flag.FlagSet flattens the
	// error into a string, and this keeps the parts.
	failed *badValue
}

// badValue is a value one flag rejected.
type badValue struct {
	flag, value, want string
}

type checkedValue struct {
	f      *flags
	name   string
	kind   string // shown in --help: duration, int, string...
	bounds string // shown in --help, as "1 to 64" or "at least 16"; empty: none shown
	get    func() string
	set    func(string) error // returns what is expected on failure
}

func (v *checkedValue) String() string {
	if v == nil || v.get == nil {
		return ""
	}
	return v.get()
}

func (v *checkedValue) Set(s string) error {
	if err := v.set(s); err != nil {
		v.f.failed = &badValue{flag: v.name, value: s, want: err.Error()}
		return err
	}
	return nil
}

func (f *flags) value(name, kind, usage string, get func() string, set func(string) error) {
	f.bounded(name, kind, "", usage, get, set)
}

// bounded is value whose --help states its bounds, which set checks.
func (f *flags) bounded(name, kind, bounds, usage string, get func() string, set func(string) error) {
	f.fs.Var(&checkedValue{f: f, name: name, kind: kind, bounds: bounds, get: get, set: set}, name, usage)
}

func (f *flags) str(p *string, name, usage string) {
	f.value(name, "string", usage, func() string { return *p }, func(s string) error { *p = s; return nil })
}

func (f *flags) oneOf(p *string, name, usage string, allowed ...string) {
	f.value(name, "string", usage, func() string { return *p }, func(s string) error {
		if !slices.Contains(allowed, s) {
			return errors.New("want " + orList(allowed))
		}
		*p = s
		return nil
	})
}

// duration accepts d >= min (min 0: not negative; min 1ns: positive).
func (f *flags) duration(p *time.Duration, name string, min time.Duration, usage string) {
	f.value(name, "duration", usage, func() string { return p.String() }, func(s string) error {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			return errors.New("want a duration like 10s, 500ms or 1m30s")
		case min > 1 && d < min:
			return fmt.Errorf("want a duration of at least %s", min)
		case min > 0 && d < min:
			return errors.New("want a positive duration")
		case d < 0:
			return errors.New("want a duration of 0s or more")
		}
		*p = d
		return nil
	})
}

// durationUpTo accepts 0 <= d <= max.
func (f *flags) durationUpTo(p *time.Duration, name string, max time.Duration, usage string) {
	f.durationIn(p, name, 0, max, usage)
}

// durationIn accepts min <= d <= max, and --help states the bounds.
func (f *flags) durationIn(p *time.Duration, name string, min, max time.Duration, usage string) {
	bounds := shortDuration(min) + " to " + shortDuration(max)
	f.bounded(name, "duration", bounds, usage, func() string { return p.String() }, func(s string) error {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			return errors.New("want a duration like 10s, 500ms or 1m30s")
		case d < min || d > max:
			return fmt.Errorf("want a duration from %s to %s", min, max)
		}
		*p = d
		return nil
	})
}

// shortDuration is d as --help shows it: 1m rather than 1m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// integer accepts min <= n <= max (maxInt: no upper bound), and --help
// states the bounds.
func (f *flags) integer(p *int, name string, min, max int, usage string) {
	bounds := fmt.Sprintf("%d to %d", min, max)
	if max == maxInt {
		bounds = fmt.Sprintf("at least %d", min)
	}
	f.bounded(name, "int", bounds, usage, func() string { return strconv.Itoa(*p) }, func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < min || n > max {
			if max == maxInt {
				return fmt.Errorf("want an integer of at least %d", min)
			}
			return fmt.Errorf("want an integer from %d to %d", min, max)
		}
		*p = n
		return nil
	})
}

// hostPort accepts host:port (host may be empty: every interface).
func (f *flags) hostPort(p *string, name, usage string) {
	f.value(name, "host:port", usage, func() string { return *p }, func(s string) error {
		if _, _, err := splitHostPort(s, true); err != nil {
			return errors.New("want host:port, like :8080 or 127.0.0.1:8080")
		}
		*p = s
		return nil
	})
}

func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

const maxInt = int(^uint(0) >> 1)

func parseOptions(args []string, environ []string, out io.Writer) (options, error) {
	o := options{api: api.DefaultConfig(), cluster: cluster.DefaultConfig(), store: store.DefaultConfig(), trim: memtrim.DefaultConfig(),
		budget: membudget.DefaultConfig(), wal: wal.DefaultConfig("")}
	o.logFormat, o.shutdownTimeout = "json", 20*time.Second
	o.gcPercent = defaultGCPercent
	fs := flag.NewFlagSet("likesd", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by run; usage only on --help
	f := &flags{fs: fs}

	gossipAddr := "0.0.0.0:7946"
	logLevel := "info"
	var advertise, join, nodeName, gossipKey, gossipKeyFile, tokenFile string
	f.hostPort(&o.api.Addr, "http-addr", "host:port the HTTP API listens on")
	f.durationUpTo(&o.api.ReadWait, "read-wait", time.Minute, "longest a read with ?version= waits for this node to hold the like it names before a 503 version_not_seen; "+
		"0s: answer only if already held")
	f.value("admin-addr", "host:port", "host:port of the admin listener: /metrics, /v1/cluster, /healthz, /readyz, /admin/keyring and pprof, then no longer on --http-addr; "+
		"empty: no admin listener, and all but pprof are served on --http-addr. Keep it private (the manifests use :9090)",
		func() string { return o.api.AdminAddr }, func(s string) error {
			if s != "" {
				if _, _, err := splitHostPort(s, true); err != nil {
					return errors.New("want host:port, like :9090 or 127.0.0.1:9090, or empty")
				}
			}
			o.api.AdminAddr = s
			return nil
		})
	f.integer(&o.api.MaxHeaderBytes, "max-header-bytes", api.MinHeaderBytes, api.MaxHeaderBytes,
		"largest request line plus headers in bytes (431 past it); /v1/counts with many long posts needs more")
	f.integer(&o.api.MaxConns, "max-connections", api.MinConns, api.MaxConnsLimit,
		"open connections the API takes at once; more wait in the kernel's accept queue, so idle or half-sent ones cannot grow the heap without bound")
	f.integer(&o.api.MaxWrites, "max-concurrent-writes", 1, api.MaxConcurrency,
		"single likes served at once (a write holds its slot while it waits for acknowledgements); more are refused with 429 and Retry-After, never queued")
	f.integer(&o.api.MaxBulk, "max-concurrent-bulk", 1, api.MaxConcurrency,
		"bulk imports (POST /v1/likes) served at once, each up to 8 MiB of body, a slot taken once the body is read (--max-bulk-read-bytes); more are refused with 429")
	f.value("max-bulk-read-bytes", "size", "bytes of bulk import bodies read at once, all clients together: an import is read before it takes its --max-concurrent-bulk slot, "+
		"so clients that stall their bodies hold connections, not slots, and this bounds the memory slow bodies hold; past it an import is refused with 429 overloaded and Retry-After. "+
		"A size such as 32MiB, at least the largest bulk body (8 MiB), at most 16GiB",
		func() string { return strconv.FormatInt(o.api.MaxBulkReadBytes, 10) }, func(s string) error {
			n, err := parseSize(s)
			if err != nil || n < o.api.MaxBulkBodyBytes || n > api.MaxBulkReadLimit {
				return fmt.Errorf("want a size from %d (the largest bulk body) to 16GiB, such as 32MiB", o.api.MaxBulkBodyBytes)
			}
			o.api.MaxBulkReadBytes = n
			return nil
		})
	f.integer(&o.api.MaxReads, "max-concurrent-reads", 1, api.MaxConcurrency,
		"reads served at once (a read with ?version= gives its slot back while it waits, and takes one again to answer); more are refused with 429")
	f.value("bulk-rate", "float", "bulk imports per second each client may start (its API token, else its IPv4 address or IPv6 /64), in bursts of --bulk-burst; more: 429 rate_limited. 0: no per-client limit. "+
		"X-Forwarded-For is not trusted: behind a proxy or load balancer that rewrites source addresses (SNAT) all clients share the proxy's bucket (docs/api.md)",
		func() string { return strconv.FormatFloat(o.api.BulkRate, 'g', -1, 64) }, func(s string) error {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || v < 0 || v > api.MaxBulkRate {
				return fmt.Errorf("want a number from 0 to %d", api.MaxBulkRate)
			}
			o.api.BulkRate = v
			return nil
		})
	f.integer(&o.api.BulkBurst, "bulk-burst", 1, api.MaxBulkBurst, "bulk imports a client may start at once before --bulk-rate applies")
	f.str(&tokenFile, "api-token-file", "file of API tokens, one a line: \"write <name> <token>\" or \"read <name> <token>\" (docs/api.md); "+
		"writes then need a write token (Authorization: Bearer), reads a token only if the file has read tokens. Empty: no tokens")
	f.str(&gossipAddr, "gossip-addr", "host:port memberlist binds to, TCP and UDP (port 0 picks a free one)")
	f.str(&advertise, "advertise-addr", "host[:port] other nodes use to reach this one (default: memberlist's choice; set to the pod IP in k8s)")
	f.str(&join, "join", "comma-separated seed host:port list to join (empty: start a new cluster)")
	f.str(&nodeName, "node-name", "unique node name (default: hostname plus a random suffix, new at every start)")
	f.str(&gossipKey, "gossip-key", "base64 AES key (16, 24 or 32 bytes) encrypting all gossip; every node needs the same one. "+
		"It also keys anti-entropy's digests: with it, two different replicas compare equal with probability about 2^-64; "+
		"without it (plaintext) the digest key is public and gives no protection against ids chosen by anyone who can send likes or join. "+
		"Prefer --gossip-key-file, which can be rotated")
	f.str(&gossipKeyFile, "gossip-key-file", "keyring file (a mounted Secret): one base64 key (16, 24 or 32 bytes) a line, blank lines and # comments allowed; "+
		"the first line is the primary, which encrypts gossip, the others are accepted too. Re-read every 2s and on SIGHUP, and what changed applied "+
		"(add the new keys, switch the primary, remove the others; an invalid file keeps the current keys): a rotation needs no restart "+
		"(docs/deploy.md). GET /admin/keyring shows the keys by fingerprint. Used when --gossip-key is empty")
	fs.BoolVar(&o.allowDemoKey, "dev-allow-demo-key", false, "accept a gossip key that is public (the demo key this repository once shipped): on a laptop only, it protects nothing")
	f.value("cluster-label", "string", fmt.Sprintf("label on every gossip message, at most %d bytes; nodes with another label are ignored", cluster.MaxLabelBytes),
		func() string { return o.cluster.Label }, func(s string) error {
			if len(s) > cluster.MaxLabelBytes {
				return fmt.Errorf("want at most %d bytes", cluster.MaxLabelBytes)
			}
			o.cluster.Label = s
			return nil
		})
	f.oneOf(&logLevel, "log-level", "log level: debug, info, warn or error", "debug", "info", "warn", "error")
	f.oneOf(&o.logFormat, "log-format", "log format: json or console (console is colored only on a terminal; NO_COLOR turns colors off)", "json", "console")
	f.duration(&o.cluster.PushPullInterval, "push-pull-interval", cluster.MinInterval, "how often the full member list is exchanged with one random peer (likes are repaired by --sync-interval)")
	f.duration(&o.cluster.GossipInterval, "gossip-interval", cluster.MinInterval, "how often memberlist gossips (membership; likes in gossip mode)")
	f.duration(&o.cluster.ProbeInterval, "probe-interval", cluster.MinInterval, "failure detection: how often one peer is probed")
	f.duration(&o.cluster.ProbeTimeout, "probe-timeout", cluster.MinInterval, "failure detection: how long to wait for a probe's ack (shorter than --probe-interval)")
	f.duration(&o.cluster.RejoinInterval, "rejoin-interval", cluster.MinInterval, "how often seeds that are not alive members are joined again")
	f.integer(&o.cluster.PacketSize, "packet-size", cluster.MinPacketSize, cluster.MaxPacketSize, "largest gossip packet in bytes (raise only on jumbo-frame networks)")
	f.oneOf(&o.cluster.FastPath, "fast-path", "how new likes travel: direct (batched straight to every peer over TCP) or gossip (memberlist broadcasts, forwarded once)",
		cluster.FastPathDirect, cluster.FastPathGossip)
	f.duration(&o.cluster.FlushInterval, "flush-interval", cluster.MinInterval, "longest a new like waits to be batched into a frame")
	f.integer(&o.cluster.DirectBatchBytes, "direct-batch-bytes", link.MinBatchBytes, maxInt, "largest batch of likes sent to a peer at once (direct fast path)")
	f.integer(&o.cluster.PeerQueue, "peer-queue", link.MinQueue, maxInt, "batches waiting per peer before the oldest is dropped (left to repair)")
	f.durationIn(&o.cluster.PeerRetryInterval, "peer-retry-interval", link.MinRetryInterval, link.MaxRetryInterval, "how often a peer that stopped taking batches is pinged; once it answers it gets batches again (direct fast path)")
	f.integer(&o.cluster.LogSize, "log-size", cluster.MinLogSize, maxInt, "recent local likes kept for the fast path to frame; ones it could not frame in time reach peers by anti-entropy")
	f.durationIn(&o.cluster.SyncInterval, "sync-interval", cluster.MinSyncInterval, cluster.MaxSyncInterval,
		"anti-entropy: how often content digests are compared with the next peer and differences repaired")
	f.durationIn(&o.cluster.SyncTimeout, "sync-timeout", cluster.MinSyncTimeout, cluster.MaxSyncTimeout,
		"anti-entropy: how long a session waits for a silent peer before giving up")
	f.integer(&o.cluster.SyncChunkBytes, "sync-chunk-bytes", cluster.MinSyncChunkBytes, cluster.MaxSyncChunkBytes, "anti-entropy: bytes of likes in one pull or push message; a new node's full sync is many")
	f.value("write-acks", "level", "replicas (this node included) that must hold a like before it is answered 201/200; fewer within --write-timeout: 202. "+
		fmt.Sprint("1 to ", acks.MaxLevel, ", quorum or all (of the reachable members); a request may ask for another with ?w=. ")+
		"Not given: 2, but 1 on a node with no --join that never saw a peer (a laptop); give it to seeds started without --join",
		func() string { return o.cluster.Writes.Default.String() }, func(s string) error {
			l, err := acks.ParseLevel(s)
			if err != nil {
				return fmt.Errorf("want 1 to %d, quorum or all", acks.MaxLevel)
			}
			o.cluster.Writes.Default, o.cluster.Writes.Explicit = l, true
			return nil
		})
	f.durationIn(&o.cluster.Writes.Timeout, "write-timeout", acks.MinTimeout, acks.MaxTimeout,
		"how long a write waits for its replicas before it is answered 202; a frame a peer leaves unacknowledged this long is a failure of that peer")
	f.integer(&o.cluster.Breaker.Failures, "breaker-failures", breaker.MinFailures, breaker.MaxFailures, "consecutive failures (failed sends, unacknowledged frames) that open a peer's circuit breaker: no batches, not waited for")
	f.durationIn(&o.cluster.Breaker.Cooldown, "breaker-cooldown", breaker.MinCooldown, breaker.MaxCooldown,
		"how long an open breaker stays open before it turns half-open: batches probe the peer again")
	f.integer(&o.cluster.InboxSize, "inbox-size", cluster.MinInboxSize, maxInt, "received messages waiting to be applied before new ones are dropped (left to repair)")
	f.integer(&o.cluster.MaxStreams, "max-streams", cluster.MinStreams, cluster.MaxStreamsLimit, "streams other nodes may hold open to this one at once (the direct fast path's, one per peer); "+
		"past it a new one is refused until one closes: keep it above the cluster's size")
	f.integer(&o.cluster.MaxHandshakes, "max-handshakes", cluster.MinHandshakes, cluster.MaxHandshakesLimit, "stream handshakes in progress at once (connections that have not yet proved the cluster key; they take no --max-streams place); "+
		"past it the oldest is closed for the newest")
	f.integer(&o.cluster.MaxQueuedFrames, "max-queued-frames", cluster.MinQueuedFrames, maxInt, "gossip broadcast queue bound (gossip fast path); the oldest frames are pruned")
	f.value("store-shards", "int", "lock shards of the in-memory store (a power of two up to 65536)",
		func() string { return strconv.Itoa(o.store.Shards) }, func(s string) error {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 1<<16 || n&(n-1) != 0 {
				return errors.New("want a power of two from 1 to 65536")
			}
			o.store.Shards = n
			return nil
		})
	f.str(&o.wal.Dir, "data-dir", "directory for this node's log and snapshots: every like it acknowledges is on its disk first, and a restart (of this node or of every node) "+
		"recovers them. Empty: in memory only, and a like is lost when every node holding it stops at once. One likesd per directory")
	f.oneOf(&o.wal.Fsync, "fsync", "with --data-dir: always (a like counts as held by this node only once an fdatasync covers it; one sync covers every like "+
		"that arrived while the previous ran) or interval (held once written; synced every --fsync-interval, so a power cut of every node holding a like loses up to that much)",
		wal.FsyncAlways, wal.FsyncInterval)
	f.duration(&o.wal.Interval, "fsync-interval", time.Millisecond, "with --fsync interval: how often the log is synced, the most a power cut loses (1ms to 10s)")
	f.durationUpTo(&o.cluster.HandoffTimeout, "handoff-timeout", cluster.MaxHandoffTimeout, "on shutdown, how long to wait for a synced peer to hold every like this node holds; "+
		"0s: as long as --shutdown-timeout allows. Default 0s in memory, 1s with --data-dir (the disk keeps the likes, so when every node stops at once none waits for a peer)")
	f.duration(&o.shutdownDrain, "shutdown-drain", 0, "on SIGTERM, report not-ready for this long before closing HTTP (let load balancers notice)")
	f.duration(&o.shutdownTimeout, "shutdown-timeout", 1, "bound on graceful shutdown: draining requests, hand-off and leave")
	f.str(&o.debugAddr, "debug-addr", "host:port serving pprof (/debug/pprof/) for profiling; empty: off. Keep it private")
	memLimit := "auto"
	f.value("memory-limit", "size", "soft memory limit of the Go runtime (as GOMEMLIMIT): near it the GC works harder rather than grow the heap. "+
		"auto: 90% of the container's memory limit when there is one, else none (GOMEMLIMIT wins when set); off; or a size such as 512MiB or 2GiB",
		func() string { return memLimit }, func(s string) error {
			if _, err := memoryLimit(s, func(string) string { return "" }, func() (int64, bool) { return 0, false }); err != nil {
				return errors.New("want auto, off, or a size such as 512MiB or 2GiB")
			}
			memLimit = s
			return nil
		})
	f.value("memory-refuse-at", "percent", "share of the memory limit (the container's memory.max, else --memory-limit or GOMEMLIMIT; none: no budget) "+
		"past which new likes are refused with 507 while reads, repeats and likes from peers go on (those up to --memory-peers-refuse-at) (10 to 100)",
		func() string { return strconv.Itoa(int(math.Round(o.budget.RefuseAt * 100))) }, func(s string) error {
			n, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
			if err != nil || n < 10 || n > 100 {
				return errors.New("want a percentage from 10 to 100")
			}
			o.budget.RefuseAt = float64(n) / 100
			o.budget.ResumeBelow = min(o.budget.ResumeBelow, o.budget.RefuseAt)
			return nil
		})
	f.value("memory-peers-refuse-at", "percent", "share of the memory limit past which likes from peers (fast path and anti-entropy) are not applied nor acknowledged either: "+
		"their senders keep them and anti-entropy brings them once usage falls, so nothing acknowledged is lost and the node is not OOM-killed. "+
		"0: halfway from --memory-refuse-at to the limit (92.5 with the default 85); else from --memory-refuse-at to 100",
		func() string { return strconv.Itoa(int(math.Round(o.budget.PeersRefuseAt * 100))) }, func(s string) error {
			n, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
			if err != nil || n < 0 || n > 100 {
				return errors.New("want 0 or a percentage from --memory-refuse-at to 100")
			}
			o.budget.PeersRefuseAt = float64(n) / 100
			return nil
		})
	f.integer(&o.gcPercent, "gc-percent", 1, maxInt, "GC target (as GOGC): heap growth over the live heap before a collection. The replica is mostly pointer-free blocks, "+
		"so a low value costs little CPU and keeps RSS near the live data (GOGC wins when set and this is not)")
	trimBounds := fmt.Sprintf("0 (never) or a duration from %s to %s", memtrim.MinQuietFor, memtrim.MaxQuietFor)
	f.value("memory-trim-after", "duration", fmt.Sprintf("after a burst of allocation (a bulk import, a full sync: %d MiB at over %d MiB/s), once allocation has stayed under that rate this long, "+
		"compact the replica into fresh memory, collect the heap and return free memory to the OS rather than keep the burst's peak; during the burst's first %s, hold the memory limit near what the heap needs so freed pages go back as it runs (%s)", o.trim.MinBurst>>20, o.trim.QuietRate>>20, memtrim.MaxBurstHold, trimBounds),
		func() string { return o.trim.QuietFor.String() }, func(s string) error {
			d, err := time.ParseDuration(s)
			if err != nil || d != 0 && (d < memtrim.MinQuietFor || d > memtrim.MaxQuietFor) {
				return errors.New("want " + trimBounds)
			}
			o.trim.QuietFor = d
			return nil
		})
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp):
			printUsage(fs, out)
			return o, errHelp
		case f.failed != nil:
			return o, fmt.Errorf("--%s %q: %s", f.failed.flag, f.failed.value, f.failed.want)
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := o.fromEnvironment(f, environ); err != nil {
		return o, err
	}
	if err := o.memorySettings(f, memLimit, environ); err != nil {
		return o, err
	}
	if o.showVersion {
		return o, nil
	}
	if err := o.readKey(gossipKey, gossipKeyFile); err != nil {
		return o, err
	}
	if err := o.readTokens(tokenFile); err != nil {
		return o, err
	}
	handoffSet := false
	fs.Visit(func(fl *flag.Flag) { handoffSet = handoffSet || fl.Name == "handoff-timeout" })
	return o, o.finish(gossipAddr, advertise, join, nodeName, logLevel, handoffSet)
}

// fromEnvironment fills what the command line did not set from LIKESD_*
// variables, and notes the LIKESD_ variables that are no setting.
func (o *options) fromEnvironment(f *flags, environ []string) error {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	byEnv := map[string]string{}
	f.fs.VisitAll(func(fl *flag.Flag) {
		if fl.Name != "version" {
			byEnv[envName(fl.Name)] = fl.Name
		}
	})
	var unknown []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if k == "NO_COLOR" && v != "" {
			o.noColor = true
		}
		if !strings.HasPrefix(k, envPrefix) {
			continue
		}
		name, ok := byEnv[k]
		switch {
		case !ok:
			if !kubernetesServiceVar(k) {
				unknown = append(unknown, k)
			}
		case set[name] || v == "":
		default:
			f.failed = nil
			if err := f.fs.Set(name, v); err != nil {
				want := err.Error()
				if f.failed != nil {
					want = f.failed.want
				}
				return fmt.Errorf("%s=%q: %s", k, v, want)
			}
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		o.warnings = append(o.warnings, k+" is set but is not a likesd setting (misspelt?): ignored; likesd --help lists them")
	}
	return nil
}

// kubernetesServiceVar reports whether k looks like a variable Kubernetes
// injects for a Service named likesd (LIKESD_SERVICE_HOST, LIKESD_PORT_...):
// not a typo of ours, so no warning.
func kubernetesServiceVar(k string) bool {
	return strings.HasPrefix(k, envPrefix+"SERVICE_") || k == envPrefix+"PORT" || strings.HasPrefix(k, envPrefix+"PORT_")
}

// readKey decodes the gossip key from the flag or, failing that, the
// keyring file, and builds the keyring the cluster encrypts with.
func (o *options) readKey(b64, file string) error {
	var keys [][]byte
	switch {
	case b64 != "":
		key, err := decodeKey(strings.TrimSpace(b64), o.allowDemoKey)
		if err != nil {
			return fmt.Errorf("--gossip-key: %s", strings.TrimPrefix(err.Error(), errKeyring.Error()+": "))
		}
		keys = [][]byte{key}
	case file != "":
		raw, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--gossip-key-file: %w", err)
		}
		if keys, err = parseKeyring(string(raw), o.allowDemoKey); err != nil {
			return fmt.Errorf("--gossip-key-file %s: %s", file, strings.ReplaceAll(err.Error(), errKeyring.Error()+": ", ""))
		}
		o.keyFile = file
	default:
		return nil
	}
	ring, err := newKeyring(keys)
	if err != nil {
		return fmt.Errorf("gossip keyring: %w", err)
	}
	// The ring is what memberlist and the streams use; SecretKey (its
	// primary at start) is what the cluster's checks and start log read.
	o.cluster.Keyring, o.cluster.SecretKey = ring, keys[0]
	return nil
}

// readTokens reads --api-token-file.
func (o *options) readTokens(file string) error {
	if file == "" {
		return nil
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("--api-token-file: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	if o.tokens, err = api.ParseTokens(f); err != nil {
		return fmt.Errorf("--api-token-file %s: %s", file, strings.TrimPrefix(err.Error(), api.ErrTokens.Error()+": "))
	}
	return nil
}

func printUsage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprint(out, usageHeader)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if v, ok := f.Value.(*checkedValue); ok {
			name = v.kind
		}
		fmt.Fprintf(out, "  --%s %s\n    \t%s", f.Name, name, usage)
		if v, ok := f.Value.(*checkedValue); ok && v.bounds != "" {
			fmt.Fprintf(out, " (%s)", v.bounds)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
			fmt.Fprintf(out, " (default %s)", f.DefValue)
		}
		if f.Name != "version" {
			fmt.Fprintf(out, "\n    \tenv %s", envName(f.Name))
		}
		fmt.Fprintln(out)
	})
}

// finish turns the raw strings into config fields and validates everything.
func (o *options) finish(gossipAddr, advertise, join, nodeName, logLevel string, handoffSet bool) error {
	var err error
	if o.cluster.BindAddr, o.cluster.BindPort, err = splitHostPort(gossipAddr, true); err != nil || net.ParseIP(o.cluster.BindAddr) == nil {
		return fmt.Errorf("--gossip-addr %q: want an IP address and port, like 0.0.0.0:7946", gossipAddr)
	}
	if advertise != "" {
		host, port, err := splitHostPort(advertise, false)
		if err != nil {
			return fmt.Errorf("--advertise-addr %q: want host or host:port: %w", advertise, err)
		}
		if net.ParseIP(host) == nil { // memberlist needs an IP: resolve names
			addrs, err := net.LookupHost(host)
			if err != nil || len(addrs) == 0 {
				return fmt.Errorf("--advertise-addr: cannot resolve %q: %v", host, err)
			}
			host = addrs[0]
		}
		o.cluster.AdvertiseAddr, o.cluster.AdvertisePort = host, port
	}
	for _, s := range strings.Split(join, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if _, _, err := splitHostPort(s, true); err != nil {
				return fmt.Errorf("--join: seed %q: want host:port, like 10.0.0.1:7946", s)
			}
			o.cluster.Seeds = append(o.cluster.Seeds, s)
		}
	}
	if nodeName == "" {
		nodeName = defaultNodeName()
	}
	o.cluster.NodeName = nodeName
	o.cluster.MaxIDBytes = o.api.MaxIDBytes // peers' likes by the clients' rule
	if o.logLevel, err = zerolog.ParseLevel(logLevel); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
	}
	if o.api.AdminAddr != "" && o.api.AdminAddr == o.api.Addr {
		return fmt.Errorf("--admin-addr %q is --http-addr: the admin listener needs a port of its own", o.api.AdminAddr)
	}
	if o.cluster.ProbeTimeout >= o.cluster.ProbeInterval {
		return fmt.Errorf("--probe-timeout %v must be shorter than --probe-interval %v", o.cluster.ProbeTimeout, o.cluster.ProbeInterval)
	}
	if o.wal.Dir != "" {
		if err := o.wal.Validate(); err != nil {
			return err
		}
		if !handoffSet {
			o.cluster.HandoffTimeout = time.Second
		}
	}
	// Each flag checked its own value against its package's bounds; what
	// is left are rules across fields (the packages' messages name the
	// flags, or the Config fields no flag sets).
	return errors.Join(o.api.Validate(), o.cluster.Validate(), o.store.Validate(), o.trim.Validate(), o.budget.Validate())
}

// splitHostPort parses host:port; with portRequired false a bare host is
// accepted and yields port 0.
func splitHostPort(s string, portRequired bool) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if portRequired || strings.Contains(s, "]:") {
			return "", 0, err
		}
		return strings.Trim(s, "[]"), 0, nil
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, p, nil
}

// defaultNodeName is unique per process start, so a restarted process is a
// new member rather than a stale one coming back.
func defaultNodeName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "likesd"
	}
	var b [3]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return host + "-" + hex.EncodeToString(b[:])
}
