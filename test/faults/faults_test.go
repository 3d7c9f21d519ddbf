//go:build faults

// Package faults runs likesd as real processes, each a host of its own in a
// network namespace, under seeded schedules of faults with a client load
// running throughout, then heals and judges the history with
// internal/faultcheck. Needs root. Run it with make faults; see
// docs/faults.md for the knobs and how to read the result.
package faults

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/faultcheck"
)

// config is the run, from FAULT_* environment variables.
type config struct {
	bin      string
	seeds    []uint64
	nodes    int
	joinAll  bool // every node --joins every other; default: all join node 1
	rate     int
	strict   bool
	check    faultcheck.Config
	converge time.Duration // heal → identical replicas, at most
	logRoot  string
	keepLogs bool
	memory   bool // FAULT_MEMORY=1: no --data-dir, as likesd ran before it had one
}

func configFromEnv(t *testing.T) config {
	t.Helper()
	c := config{
		nodes:    envInt(t, "FAULT_NODES", 5),
		rate:     envInt(t, "FAULT_RATE", 500),
		strict:   os.Getenv("FAULT_STRICT") == "1",
		check:    faultcheck.DefaultConfig(),
		converge: envDuration(t, "FAULT_CONVERGE_TIMEOUT", 30*time.Second),
		keepLogs: os.Getenv("FAULT_KEEP_LOGS") == "1",
		memory:   os.Getenv("FAULT_MEMORY") == "1",
	}
	c.check.AsyncWindow = envDuration(t, "FAULT_ASYNC_WINDOW", c.check.AsyncWindow)
	require.GreaterOrEqual(t, c.nodes, 3, "FAULT_NODES")
	require.LessOrEqual(t, c.nodes, 50, "FAULT_NODES")
	require.True(t, c.rate > 0 && c.rate <= 2000, "FAULT_RATE must be in 1..2000")
	switch j := os.Getenv("FAULT_JOIN"); j {
	case "", "seed":
	case "all":
		c.joinAll = true
	default:
		t.Fatalf("FAULT_JOIN=%q: want seed or all", j)
	}
	switch s := os.Getenv("FAULT_SEEDS"); {
	case s != "":
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			require.NoError(t, err, "FAULT_SEEDS=%q", s)
			c.seeds = append(c.seeds, v)
		}
	default:
		// Seeds 1..numKinds start with each kind once: the fixed CI set.
		for s := range uint64(envInt(t, "FAULT_SCHEDULES", int(numKinds))) {
			c.seeds = append(c.seeds, s+1)
		}
	}
	c.bin = os.Getenv("FAULT_BIN")
	if c.bin == "" {
		c.bin = buildLikesd(t)
	}
	abs, err := filepath.Abs(c.bin)
	require.NoError(t, err)
	c.bin = abs
	require.FileExists(t, c.bin, "FAULT_BIN")
	c.logRoot = os.Getenv("FAULT_LOGDIR")
	if c.logRoot == "" {
		c.logRoot, err = os.MkdirTemp("", "likesd-faults-")
		require.NoError(t, err)
	}
	return c
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	require.NoError(t, err, name)
	return v
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	require.NoError(t, err, name)
	return v
}

func buildLikesd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "likesd")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/likesd").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func TestFaults(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the fault test needs root: network namespaces and nftables")
	}
	cfg := configFromEnv(t)
	if swept := sweepStale(); len(swept) > 0 {
		t.Logf("removed what earlier runs left behind: %v", swept)
	}
	rig := newNetRig(cfg.nodes)
	require.NoError(t, rig.up())
	t.Cleanup(rig.teardown)
	t.Cleanup(teardownOnSignal(rig))
	t.Logf("binary %s, %d nodes, join=%s, %d likes/s, data=%s, seeds %v, logs in %s",
		cfg.bin, cfg.nodes, map[bool]string{false: "seed", true: "all"}[cfg.joinAll], cfg.rate,
		map[bool]string{false: "--data-dir", true: "memory"}[cfg.memory], cfg.seeds, cfg.logRoot)

	summary := faultcheck.Summary{Strict: cfg.strict}
	deadline, hasDeadline := t.Deadline()
	var (
		notRun  []uint64
		failing []string
	)
	for i, seed := range cfg.seeds {
		// A schedule takes about a minute; never let go test's timeout kill
		// the run mid-schedule (its panic skips every cleanup).
		if hasDeadline && time.Until(deadline) < 3*time.Minute {
			notRun = cfg.seeds[i:]
			break
		}
		s := plan(seed, cfg.nodes)
		name := fmt.Sprintf("seed=%d", seed)
		judged := false
		ok := t.Run(name, func(t *testing.T) {
			r := runSchedule(t, cfg, rig, s)
			judged = true
			failures := summary.Add(name, r)
			verdict := "PASS"
			if len(failures) > 0 {
				verdict = "FAIL: " + strings.Join(failures, ", ")
				t.Errorf("replay with FAULT_SEEDS=%d: %s", seed, strings.Join(failures, ", "))
			}
			report(t, "faults: seed=%d [%s] %s %s", seed, s, r.Line(), verdict)
			if len(r.LostBy) > 0 {
				t.Logf("  lost by acknowledging process: %s", lostBy(r.LostBy))
			}
			for _, e := range r.Examples {
				t.Log("  " + e)
			}
		})
		if !judged {
			summary.AddUnjudged(name)
		}
		if !ok {
			failing = append(failing, strconv.FormatUint(seed, 10))
		}
	}
	if len(notRun) > 0 {
		t.Errorf("out of time: seeds %v not run", notRun)
	}
	// Failing seeds include those that failed on a rig error after the
	// verdict: the summary does not count those.
	if len(failing) > 0 {
		report(t, "faults: failing seeds, replay with FAULT_SEEDS=%s", strings.Join(failing, ","))
	}
	report(t, "%s", summary.Line())
}

func lostBy(m map[faultcheck.Life]int) string {
	lives := make([]faultcheck.Life, 0, len(m))
	for l := range m {
		lives = append(lives, l)
	}
	slices.SortFunc(lives, func(a, b faultcheck.Life) int { return cmp.Or(a.Node-b.Node, a.Gen-b.Gen) })
	parts := make([]string, len(lives))
	for i, l := range lives {
		parts[i] = fmt.Sprintf("%s=%d", l, m[l])
	}
	return strings.Join(parts, " ")
}

// report logs a line and also prints it, so it shows without -v.
func report(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	if !testing.Verbose() {
		fmt.Println(line)
	}
}

// teardownOnSignal removes the network (which kills every node in it) on
// SIGINT, SIGTERM or SIGHUP, then exits; the returned func disarms it.
func teardownOnSignal(rig *netRig) func() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			fmt.Fprintf(os.Stderr, "faults: %v: removing namespaces %s*\n", sig, rig.prefix)
			rig.teardown()
			os.Exit(2)
		case <-done:
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

const (
	readyTimeout = 60 * time.Second
	warmup       = 3 * time.Second
	calm         = 2 * time.Second // between faults
	numPosts     = 200
	numSample    = 20
	// clientTimeout must stay below the shortest kill -9 downtime (1.5 s),
	// so an acknowledgement is always from the life its request started in.
	clientTimeout = time.Second
)

// cluster is one schedule's nodes, network and history.
type cluster struct {
	t     *testing.T
	rig   *netRig
	nodes []*node // index 0 is node 1
	rec   *recorder
	hc    *http.Client

	lastHeal time.Time
	keys     [][]byte // every node's keyring file holds these (keys_test.go)
}

// crashed records a life that ended by itself: a finding, not a fault.
func (c *cluster) crashed(e faultcheck.End, err error) {
	e.Crash = true
	c.rec.end(e)
	c.t.Logf("%s exited by itself: %v", e.Life, err)
}

func (c *cluster) node(i int) *node { return c.nodes[i-1] }

func runSchedule(t *testing.T, cfg config, rig *netRig, s schedule) faultcheck.Report {
	c := newCluster(t, cfg, rig, fmt.Sprintf("seed-%d", s.seed))
	rec := c.rec
	t.Logf("schedule %d: %s", s.seed, s)

	require.NoError(t, c.startAll(cfg.nodes, cfg.joinAll))

	posts := make([]string, numPosts)
	for i := range posts {
		posts[i] = fmt.Sprintf("s%d-p%03d", s.seed, i)
	}
	l := &load{
		// A stopped node holds a worker for the whole timeout, and it is
		// the first choice of 1/N of the likes: rate/2 workers keep the
		// rate through a SIGSTOP.
		cfg: loadConfig{rate: cfg.rate, workers: max(cfg.rate/2, 4), timeout: clientTimeout,
			tag: fmt.Sprintf("s%d-u", s.seed), posts: posts, sample: posts[:numSample]},
		nodes: c.nodes, hc: c.hc, rec: rec,
	}
	rec.start(time.Now())
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	var wg sync.WaitGroup
	wg.Go(func() { l.run(ctx) })
	wg.Go(func() { l.pollCounts(ctx, 250*time.Millisecond) })

	time.Sleep(warmup) // load before the first fault: not an assertion
	for _, f := range s.faults {
		if err := c.inject(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		time.Sleep(calm)
	}
	stopLoad()
	wg.Wait()
	healed := time.Now()
	if err := c.healAll(); err != nil {
		t.Errorf("heal: %v", err)
	}
	if c.lastHeal.After(healed) {
		healed = c.lastHeal
	}

	final, converged := c.converge(posts, cfg.converge)
	h := rec.history()
	h.Final, h.Healed, h.Converged = final, healed, converged
	t.Logf("load: %d likes sent, %d given up after every node failed, %d shed (workers busy)",
		len(h.Sent), l.given.Load(), l.shed.Load())
	return faultcheck.Check(h, cfg.check)
}

// newCluster prepares (does not start) the nodes of one run on rig, with
// their logs under name, and removes them when t ends.
func newCluster(t *testing.T, cfg config, rig *netRig, name string) *cluster {
	logDir := filepath.Join(cfg.logRoot, name)
	require.NoError(t, os.MkdirAll(logDir, 0o755))
	rec := &recorder{}
	rig.setOnCut(rec.cut)
	c := &cluster{t: t, rig: rig, rec: rec, hc: newHTTPClient(clientTimeout, 256)}
	readyHC := newHTTPClient(clientTimeout, 2)
	for i := 1; i <= rig.nodes; i++ {
		n := &node{id: i, ns: rig.ns(i), ip: rig.ip(i), url: fmt.Sprintf("http://%s:%d", rig.ip(i), httpPort),
			bin: cfg.bin, logDir: logDir, onEnd: rec.end, onCrash: c.crashed, readyHC: readyHC}
		if !cfg.memory {
			n.dataDir = filepath.Join(logDir, fmt.Sprintf("data-n%d", i))
		}
		c.nodes = append(c.nodes, n)
	}
	// Gossip is encrypted, as deployed: every node reads a keyring file of
	// its own, which rotate-key rewrites.
	c.keys = [][]byte{newGossipKey(t)}
	for _, n := range c.nodes {
		n.keyFile = filepath.Join(logDir, n.name()+".key")
		require.NoError(t, writeKeyring(n.keyFile, c.keys))
	}
	for _, n := range c.nodes {
		for _, m := range c.nodes {
			if m != n && (cfg.joinAll || (m.id == 1 && n.id != 1)) {
				n.joinTo = append(n.joinTo, m.gossipAddr())
			}
		}
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.shutdown()
		}
		_ = rig.heal()
		rig.closeCuts()
		rig.setOnCut(nil)
		if !t.Failed() && !cfg.keepLogs {
			_ = os.RemoveAll(logDir)
		} else {
			t.Logf("node logs: %s", logDir)
		}
	})
	return c
}

// startAll starts node 1, then the others (with joinAll, every node at
// once: each one waits for another to join), and waits until every node is
// ready and sees every other alive.
func (c *cluster) startAll(n int, joinAll bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	rest := c.nodes
	if !joinAll {
		if err := c.startReady(ctx, c.node(1)); err != nil {
			return err
		}
		rest = c.nodes[1:]
	}
	for _, x := range rest {
		if err := x.start(); err != nil {
			return err
		}
	}
	for _, x := range rest {
		if err := x.waitReady(ctx); err != nil {
			return err
		}
	}
	for _, x := range c.nodes {
		for {
			cl, err := readCluster(ctx, c.hc, x)
			if err == nil && cl == n {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s sees %d alive members, want %d: %w", x.name(), cl, n, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func readCluster(ctx context.Context, hc *http.Client, n *node) (int, error) {
	var reply struct {
		Members []struct {
			State string `json:"state"`
		} `json:"members"`
	}
	if err := getJSON(ctx, hc, n.url+"/v1/cluster", &reply); err != nil {
		return 0, err
	}
	alive := 0
	for _, m := range reply.Members {
		if m.State == "alive" {
			alive++
		}
	}
	return alive, nil
}

func (c *cluster) startReady(ctx context.Context, n *node) error {
	if err := n.start(); err != nil {
		return err
	}
	return n.waitReady(ctx)
}

// restart starts n again after down and waits until it is ready.
func (c *cluster) restart(n *node, down time.Duration) error {
	time.Sleep(down) // the fault's downtime: not an assertion
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	err := c.startReady(ctx, n)
	c.lastHeal = time.Now()
	return err
}

// restartAll starts every node again after down, at once, and waits until
// every one is ready.
func (c *cluster) restartAll(down time.Duration) error {
	time.Sleep(down) // the fault's downtime: not an assertion
	var err error
	for _, n := range c.nodes {
		err = errors.Join(err, n.start())
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, n := range c.nodes {
		err = errors.Join(err, n.waitReady(ctx))
	}
	c.lastHeal = time.Now()
	return err
}

// hold keeps a network fault for d, then heals it.
func (c *cluster) hold(d time.Duration, err error) error {
	if err != nil {
		return err
	}
	time.Sleep(d) // the fault's duration: not an assertion
	err = c.rig.heal()
	c.lastHeal = time.Now()
	return err
}

// inject runs one fault to its end: healed, every node running.
func (c *cluster) inject(f fault) error {
	c.t.Logf("%s fault %s", time.Now().Format("15:04:05.000"), f)
	n := c.node(f.nodes[0])
	switch f.kind {
	case kill9, killSeed:
		if err := n.kill9(); err != nil {
			return err
		}
		return c.restart(n, f.down)
	case pause:
		if err := n.pause(true); err != nil {
			return err
		}
		time.Sleep(f.hold) // the fault's duration: not an assertion
		err := n.pause(false)
		c.lastHeal = time.Now()
		return err
	case halves:
		return c.hold(f.hold, c.rig.partition(f.nodes, f.other))
	case oneWay:
		return c.hold(f.hold, c.rig.block(f.nodes[0], f.other[0]))
	case loss:
		return c.hold(f.hold, c.rig.lose(f.pct, f.nodes...))
	case isolateSeed:
		return c.hold(f.hold, c.rig.isolate(1))
	case cutKill:
		if err := c.rig.isolate(n.id); err != nil {
			return err
		}
		time.Sleep(f.hold) // the fault's duration: not an assertion
		killErr := n.kill9()
		if err := c.rig.heal(); err != nil || killErr != nil {
			return fmt.Errorf("kill: %v, heal: %v", killErr, err)
		}
		return c.restart(n, f.down)
	case cutHealKill:
		if err := c.hold(f.hold, c.rig.isolate(n.id)); err != nil {
			return err
		}
		time.Sleep(f.after) // the fault's delay: not an assertion
		if err := n.kill9(); err != nil {
			return err
		}
		return c.restart(n, f.down)
	case stopAll, killAll, powerCut:
		// Every node at once, as a node-pool upgrade or a power cut does:
		// only what their disks hold survives.
		var wg sync.WaitGroup
		errs := make([]error, len(c.nodes))
		for i, x := range c.nodes {
			wg.Go(func() {
				switch f.kind {
				case stopAll:
					errs[i] = x.term()
				case killAll:
					errs[i] = x.kill9()
				case powerCut:
					errs[i] = x.powerCut(c.t)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		return c.restartAll(f.down)
	case rotateKey:
		return c.rotateKey(f.nodes, f.hold)
	case rollSeedFirst, rollSeedLast, rollRandom:
		// Like a Kubernetes rollout: the next pod only once the new one
		// is ready.
		for _, i := range f.nodes {
			x := c.node(i)
			if err := x.term(); err != nil {
				return err
			}
			if err := c.restart(x, 0); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown fault %v", f.kind)
}

// healAll removes every rule, resumes and restarts what a failed fault left
// behind, and waits for every node to be ready.
func (c *cluster) healAll() error {
	err := c.rig.heal()
	c.rig.closeCuts()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, n := range c.nodes {
		if !n.running() {
			err = errors.Join(err, n.start())
			c.lastHeal = time.Now()
		} else {
			_ = n.pause(false)
		}
	}
	for _, n := range c.nodes {
		err = errors.Join(err, n.waitReady(ctx))
	}
	return err
}

// converge polls until every node holds the same likers for every post, or
// timeout. It returns what every node held at the end and when they first
// matched (zero if they never did).
func (c *cluster) converge(posts []string, timeout time.Duration) (map[int]map[string][]string, time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for ctx.Err() == nil {
		counts, ok := c.allCounts(ctx, posts)
		at := time.Now()
		if ok {
			final, err := c.readAll(ctx, posts)
			// Sets only grow: equal to the counts read before means they
			// were already identical then.
			if err == nil && identical(final) && sizesMatch(final, counts[0]) {
				return final, at
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	rctx, rcancel := context.WithTimeout(context.Background(), readyTimeout)
	defer rcancel()
	final, err := c.readAll(rctx, posts)
	if err != nil {
		c.t.Errorf("reading the final state: %v", err)
	}
	return final, time.Time{}
}

// allCounts reads every post's count from every node; ok when all agree.
func (c *cluster) allCounts(ctx context.Context, posts []string) ([]map[string]int, bool) {
	out := make([]map[string]int, len(c.nodes))
	for i, n := range c.nodes {
		got, err := readCounts(ctx, c.hc, n, posts)
		if err != nil {
			return nil, false
		}
		out[i] = got
	}
	for _, m := range out[1:] {
		if !reflect.DeepEqual(m, out[0]) {
			return out, false
		}
	}
	return out, true
}

// readAll reads every post's likers from every node, nodes in parallel. A
// node that cannot be read is left out (and reported).
func (c *cluster) readAll(ctx context.Context, posts []string) (map[int]map[string][]string, error) {
	var (
		mu   sync.Mutex
		out  = map[int]map[string][]string{}
		errs []error
		wg   sync.WaitGroup
	)
	for _, n := range c.nodes {
		wg.Go(func() {
			got := map[string][]string{}
			for _, p := range posts {
				users, err := readLikers(ctx, c.hc, n, p)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				got[p] = users
			}
			mu.Lock()
			out[n.id] = got
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return out, fmt.Errorf("%d node(s) unreadable: %v", len(errs), errs[0])
	}
	return out, nil
}

func identical(final map[int]map[string][]string) bool {
	var first map[string][]string
	for _, byPost := range final {
		if first == nil {
			first = byPost
			continue
		}
		if len(byPost) != len(first) {
			return false
		}
		for p, users := range byPost {
			if !slices.Equal(users, first[p]) { // pages are in byte order
				return false
			}
		}
	}
	return true
}

func sizesMatch(final map[int]map[string][]string, counts map[string]int) bool {
	for _, byPost := range final {
		for p, users := range byPost {
			if len(users) != counts[p] {
				return false
			}
		}
	}
	return true
}
