package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/api"
	"github.com/likesd/likesd/internal/cluster"
	"github.com/likesd/likesd/internal/store"
)

var errHelp = errors.New("help requested")

// options is everything the command line and environment set.
type options struct {
	api     api.Config
	cluster cluster.Config
	store   store.Config

	debugAddr       string
	memoryLimit     int64 // bytes for debug.SetMemoryLimit; -1: leave the runtime's (GOMEMLIMIT)
	gcPercent       int   // for debug.SetGCPercent; 0: leave the runtime's (GOGC)
	logLevel        zerolog.Level
	logFormat       string
	shutdownDrain   time.Duration
	shutdownTimeout time.Duration
	showVersion     bool
}

const usageHeader = `likesd: a clustered likes counter. Every node answers the HTTP API over its
in-memory replica, spreads each like to the others by gossip (memberlist), and
repairs divergence by anti-entropy, so all nodes converge to the same exact
counts: one user's like counts once, however often it is retried.

Usage:
  likesd [flags]                       start a node (a new cluster, or --join one)
  likesd --join 10.0.0.1:7946          join an existing cluster through a seed

Every flag can also be set by an environment variable LIKESD_<FLAG> (upper
case, dashes as underscores: --http-addr is LIKESD_HTTP_ADDR). A flag given on
the command line wins over the environment.

Flags:
`

// envName maps a flag to its environment variable.
func envName(flagName string) string {
	return "LIKESD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseOptions(args []string, getenv func(string) string, out io.Writer) (options, error) {
	o := options{api: api.DefaultConfig(), cluster: cluster.DefaultConfig(), store: store.DefaultConfig()}
	fs := flag.NewFlagSet("likesd", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by run; usage only on --help

	gossipAddr := "0.0.0.0:7946"
	var advertise, join, nodeName, logLevel, gossipKey, gossipKeyFile string
	fs.StringVar(&o.api.Addr, "http-addr", o.api.Addr, "host:port the HTTP API listens on")
	fs.StringVar(&gossipAddr, "gossip-addr", gossipAddr, "host:port memberlist binds to, TCP and UDP (port 0 picks a free one)")
	fs.StringVar(&advertise, "advertise-addr", "", "host[:port] other nodes use to reach this one (default: memberlist's choice; set to the pod IP in k8s)")
	fs.StringVar(&join, "join", "", "comma-separated seed host:port list to join (empty: start a new cluster)")
	fs.StringVar(&nodeName, "node-name", "", "unique node name (default: hostname plus a random suffix, new at every start)")
	fs.StringVar(&gossipKey, "gossip-key", "", "base64 AES key (16, 24 or 32 bytes) encrypting all gossip; every node needs the same one")
	fs.StringVar(&gossipKeyFile, "gossip-key-file", "", "file holding the base64 gossip key (a mounted Secret); used when --gossip-key is empty")
	fs.StringVar(&o.cluster.Label, "cluster-label", o.cluster.Label, "label on every gossip message; nodes with another label are ignored")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or console")
	fs.DurationVar(&o.cluster.PushPullInterval, "push-pull-interval", o.cluster.PushPullInterval, "anti-entropy period: version vectors exchanged with one random peer, gaps repaired")
	fs.DurationVar(&o.cluster.GossipInterval, "gossip-interval", o.cluster.GossipInterval, "how often queued likes are gossiped to peers")
	fs.DurationVar(&o.cluster.ProbeInterval, "probe-interval", o.cluster.ProbeInterval, "failure detection: how often one peer is probed")
	fs.DurationVar(&o.cluster.ProbeTimeout, "probe-timeout", o.cluster.ProbeTimeout, "failure detection: how long to wait for a probe's ack")
	fs.DurationVar(&o.cluster.RejoinInterval, "rejoin-interval", o.cluster.RejoinInterval, "how often seeds that are not alive members are joined again")
	fs.IntVar(&o.cluster.PacketSize, "packet-size", o.cluster.PacketSize, "largest gossip packet in bytes (raise only on jumbo-frame networks)")
	fs.StringVar(&o.cluster.FastPath, "fast-path", o.cluster.FastPath, "how new likes travel: direct (batched straight to every peer over TCP) or gossip (memberlist broadcasts, forwarded once)")
	fs.DurationVar(&o.cluster.FlushInterval, "flush-interval", o.cluster.FlushInterval, "longest a new like waits to be batched into a gossip frame")
	fs.IntVar(&o.cluster.DirectBatchBytes, "direct-batch-bytes", o.cluster.DirectBatchBytes, "largest batch of likes sent to a peer at once (direct fast path)")
	fs.IntVar(&o.cluster.PeerQueue, "peer-queue", o.cluster.PeerQueue, "batches waiting per peer before the oldest is dropped (left to repair)")
	fs.IntVar(&o.cluster.LogSize, "log-size", o.cluster.LogSize, "recent local likes kept to frame and to serve repair ranges; older gaps heal by snapshot")
	fs.DurationVar(&o.cluster.RepairDelay, "repair-delay", o.cluster.RepairDelay, "how long a gap may stay open before its range is requested (in-flight likes close most)")
	fs.DurationVar(&o.cluster.RetireAfter, "retire-after", o.cluster.RetireAfter, "how long a gone origin (a past process start) stays in version vectors once everyone holds its likes")
	fs.IntVar(&o.cluster.SnapshotChunkBytes, "snapshot-chunk-bytes", o.cluster.SnapshotChunkBytes, "target size of one snapshot message")
	fs.IntVar(&o.cluster.InboxSize, "inbox-size", o.cluster.InboxSize, "received messages waiting to be applied before new ones are dropped (left to repair)")
	fs.IntVar(&o.cluster.MaxQueuedFrames, "max-queued-frames", o.cluster.MaxQueuedFrames, "gossip broadcast queue bound (gossip fast path); the oldest frames are pruned")
	fs.IntVar(&o.store.Shards, "store-shards", o.store.Shards, "lock shards of the in-memory store (power of two)")
	fs.DurationVar(&o.shutdownDrain, "shutdown-drain", 0, "on SIGTERM, report not-ready for this long before closing HTTP (let load balancers notice)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 20*time.Second, "bound on graceful shutdown: draining requests, hand-off and leave")
	fs.StringVar(&o.debugAddr, "debug-addr", "", "host:port serving pprof (/debug/pprof/) for profiling; empty: off. Keep it private")
	memLimit := "auto"
	fs.StringVar(&memLimit, "memory-limit", memLimit, "soft memory limit for the Go runtime (GOMEMLIMIT): the GC works harder near it instead of growing past it. "+
		"auto: 90% of the container's memory limit when there is one, else none (GOMEMLIMIT wins when set); off; or a size such as 512MiB")
	fs.IntVar(&o.gcPercent, "gc-percent", defaultGCPercent, "GC target (GOGC): heap growth over the live heap before a collection. The replica is mostly pointer-free blocks, "+
		"so a low value costs little CPU and keeps RSS near the live data; GOGC wins when set and this flag is not")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, out)
			return o, errHelp
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	// The environment fills what the command line did not set.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(envName(f.Name))
		if set[f.Name] || v == "" || envErr != nil || f.Name == "version" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = fmt.Errorf("%s=%q: %v", envName(f.Name), v, err)
		}
	})
	if envErr != nil {
		return o, envErr
	}
	var err error
	if o.memoryLimit, err = memoryLimit(memLimit, getenv, cgroupMemoryMax); err != nil {
		return o, fmt.Errorf("--memory-limit %w", err)
	}
	if !set["gc-percent"] && getenv(envName("gc-percent")) == "" && getenv("GOGC") != "" {
		o.gcPercent = 0
	}
	if o.gcPercent < 0 {
		return o, fmt.Errorf("--gc-percent %d: want a positive percentage", o.gcPercent)
	}
	if o.showVersion {
		return o, nil
	}
	if err := o.readKey(gossipKey, gossipKeyFile); err != nil {
		return o, err
	}
	return o, o.finish(gossipAddr, advertise, join, nodeName, logLevel)
}

// readKey decodes the gossip key from the flag or, failing that, the file.
func (o *options) readKey(b64, file string) error {
	source := "--gossip-key"
	if b64 == "" && file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--gossip-key-file: %w", err)
		}
		b64, source = strings.TrimSpace(string(raw)), "--gossip-key-file "+file
	}
	if b64 == "" {
		return nil
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return fmt.Errorf("%s: not base64: %v", source, err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return fmt.Errorf("%s: key is %d bytes; want 16, 24 or 32 (e.g. head -c 32 /dev/urandom | base64)", source, n)
	}
	o.cluster.SecretKey = key
	return nil
}

func printUsage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprint(out, usageHeader)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(out, "  --%s %s\n    \t%s", f.Name, name, usage)
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
func (o *options) finish(gossipAddr, advertise, join, nodeName, logLevel string) error {
	var err error
	if o.cluster.BindAddr, o.cluster.BindPort, err = splitHostPort(gossipAddr, true); err != nil {
		return fmt.Errorf("--gossip-addr: %w", err)
	}
	if advertise != "" {
		host, port, err := splitHostPort(advertise, false)
		if err != nil {
			return fmt.Errorf("--advertise-addr: %w", err)
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
			o.cluster.Seeds = append(o.cluster.Seeds, s)
		}
	}
	if nodeName == "" {
		nodeName = defaultNodeName()
	}
	o.cluster.NodeName = nodeName
	if o.logLevel, err = zerolog.ParseLevel(logLevel); err != nil || logLevel == "" {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
	}
	if o.logFormat != "json" && o.logFormat != "console" {
		return fmt.Errorf("--log-format %q: want json or console", o.logFormat)
	}
	if o.shutdownDrain < 0 || o.shutdownTimeout <= 0 {
		return errors.New("--shutdown-drain must be >= 0 and --shutdown-timeout > 0")
	}
	return errors.Join(o.api.Validate(), o.cluster.Validate(), o.store.Validate())
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
