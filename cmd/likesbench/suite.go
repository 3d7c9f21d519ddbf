package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/likesd/likesd/internal/client"
	"github.com/likesd/likesd/internal/loadgen"
)

// suite starts its own nodes on 127.0.0.1 and runs, in one go, the
// baselines and likesd under the same generator, then writes a report.
type suite struct {
	likesd     string
	self       string
	dir        string
	duration   time.Duration
	soak       time.Duration
	conc       int
	writesRate float64
	extra      []string
	procs      []*exec.Cmd
	out        bytes.Buffer
}

// sections of the suite, in the order they run; --only picks some.
var sections = []string{"throughput", "sustained", "soak", "writes"}

func cmdSuite(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	s := &suite{}
	var outFile string
	fs.StringVar(&s.likesd, "likesd", "bin/likesd", "the likesd binary to measure")
	fs.StringVar(&outFile, "out", "", "write the markdown report here (default stdout only)")
	fs.DurationVar(&s.duration, "duration", 10*time.Second, "length of each throughput run")
	fs.DurationVar(&s.soak, "soak", 60*time.Second, "length of the sustained-rate run on 3 nodes")
	fs.IntVar(&s.conc, "concurrency", 64, "generator workers")
	fs.Float64Var(&s.writesRate, "writes-rate", 0, "offered likes/s of the write-level section's fixed-rate and node-stopped runs (0: 35 % and 70 % of what w=1 acked as fast as possible, the stopped runs at 35 %)")
	var extra, only string
	fs.StringVar(&extra, "likesd-flags", "", "extra flags for every likesd node, space-separated (tuning experiments)")
	fs.StringVar(&only, "only", "", "comma-separated sections to run (default all): "+strings.Join(sections, ", "))
	if err := fs.Parse(args); err != nil {
		return err
	}
	run := map[string]bool{}
	for _, name := range strings.Split(only, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if !slices.Contains(sections, name) {
			return fmt.Errorf("--only: unknown section %q (want %s)", name, strings.Join(sections, ", "))
		}
		run[name] = true
	}
	if len(run) == 0 {
		for _, name := range sections {
			run[name] = true
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	s.self = self
	s.extra = strings.Fields(extra)
	if s.dir, err = os.MkdirTemp("", "likesbench"); err != nil {
		return err
	}
	defer s.stopAll()

	s.printf("# likesd load benchmark\n\nRun %s on %s, %d cores (GOMAXPROCS %d); generator and nodes share the machine.\n"+
		"Command: `likesbench suite --duration %v --soak %v --concurrency %d --writes-rate %.0f --likesd-flags '%s' --only '%s'`.\n\n",
		time.Now().UTC().Format(time.RFC3339), hostCPU(), runtime.NumCPU(), runtime.GOMAXPROCS(0), s.duration, s.soak, s.conc, s.writesRate, extra, only)
	if run["throughput"] {
		s.throughput(ctx)
	}
	if run["sustained"] {
		s.sustained(ctx)
	}
	if run["soak"] {
		s.soakRun(ctx)
	}
	if run["writes"] {
		s.writeLevels(ctx)
	}
	fmt.Print(s.out.String())
	if outFile != "" {
		return os.WriteFile(outFile, s.out.Bytes(), 0o644)
	}
	return nil
}

// throughput runs the bare handler, one node and three nodes as fast as
// possible.
func (s *suite) throughput(ctx context.Context) {
	defer s.stopAll()

	s.printf("## Throughput, as fast as possible (%v each)\n\n| system | acked/s | ack p50 | ack p99 | errors | ratio to bare |\n|---|---|---|---|---|---|\n", s.duration)
	bare := s.run(ctx, "bare net/http handler (HTTP ceiling)", s.startBare(), 0, false)
	ratio := func(r loadgen.Report) string { return fmt.Sprintf("%.2f", r.AckedPerSec/bare.AckedPerSec) }
	s.row("bare net/http handler", bare, "1.00")
	one := s.startLikesd(1)
	single := s.run(ctx, "likesd, 1 node", one, 0, false)
	s.row("likesd, 1 node", single, ratio(single))
	s.stopAll()
	three := s.startLikesd(3)
	cluster := s.run(ctx, "likesd, 3 nodes", three, 0, true)
	s.row("likesd, 3 nodes (likes spread over all)", cluster, ratio(cluster))
	s.printf("\n")
}

// sustained raises the offered rate on the seed design and on likesd until
// one is not sustained.
func (s *suite) sustained(ctx context.Context) {
	defer s.stopAll()

	s.printf("## Sustained rates with replication lag (%v each; lag = ack on one node → visible on every other, sampled)\n\n"+
		"| system | offered/s | acked/s | missed | lag p50 | lag p99 | lag max | lag timeouts | all nodes converged after |\n|---|---|---|---|---|---|---|---|---|\n", s.duration)
	best := func(name string, targets []string, rates []float64) float64 {
		sustained := 0.0
		for _, rate := range rates {
			rep := s.run(ctx, fmt.Sprintf("%s at %.0f/s", name, rate), targets, rate, true)
			conv, ok := s.converge(ctx, targets, rep)
			s.printf("| %s | %.0f | %.0f | %d | %v | %v | %v | %d | %s |\n", name, rate, rep.AckedPerSec, rep.Missed,
				ms(rep.LagP50), ms(rep.LagP99), ms(rep.LagMax), rep.LagTimeouts, conv)
			if !ok || rep.LagTimeouts > 0 || rep.LagP99 > time.Second || float64(rep.Missed) > 0.01*rate*s.duration.Seconds() {
				break
			}
			sustained = rate
		}
		return sustained
	}
	s.stopAll()
	seed := best("seed design, 3 nodes", s.startSeed(3), []float64{100, 200, 400, 800, 1600})
	s.stopAll()
	likes := best("likesd, 3 nodes", s.startLikesd(3), []float64{2500, 5000, 10000, 20000, 40000})
	s.printf("\nHighest sustained rate (lag p99 ≤ 1 s, no timeouts, converged, < 1%% missed): seed design **%.0f/s**, likesd **%.0f/s**", seed, likes)
	if seed > 0 {
		s.printf(" (**%.0f×**)", likes/seed)
	}
	s.printf(".\n\n")
}

// soakRun holds 3 nodes at 20,000/s offered for --soak and reports memory.
func (s *suite) soakRun(ctx context.Context) {
	defer s.stopAll()
	targets := s.startLikesd(3)
	rate := 20000.0
	s.printf("## Soak: 3 likesd nodes at %.0f/s offered for %v\n\n", rate, s.soak)
	soak := s.runFor(ctx, "soak", targets, rate, s.soak)
	conv, _ := s.converge(ctx, targets, soak)
	s.printf("%s; converged after %s.\n\n| node | rss start | rss end | rss peak | heap start | heap end | heap bytes per like stored |\n|---|---|---|---|---|---|---|\n", soak, conv)
	for _, m := range soak.Memory {
		s.printf("| %s | %s | %s | %s | %s | %s | %.0f |\n", m.Target, mib(m.Start), mib(m.End), mib(m.Peak), mib(m.HeapStart), mib(m.HeapEnd),
			float64(m.HeapEnd-m.HeapStart)/float64(max(1, soak.Acked)))
	}
	s.printf("\n")
}

func (s *suite) printf(format string, args ...any) { fmt.Fprintf(&s.out, format, args...) }

func (s *suite) row(name string, r loadgen.Report, ratio string) {
	s.printf("| %s | %.0f | %v | %v | %d | %s |\n", name, r.AckedPerSec, us(r.AckP50), us(r.AckP99), r.Errors, ratio)
}

func (s *suite) run(ctx context.Context, name string, targets []string, rate float64, lag bool) loadgen.Report {
	return s.runWith(ctx, name, targets, rate, s.duration, lag)
}

func (s *suite) runFor(ctx context.Context, name string, targets []string, rate float64, d time.Duration) loadgen.Report {
	return s.runWith(ctx, name, targets, rate, d, true)
}

func (s *suite) runWith(ctx context.Context, name string, targets []string, rate float64, d time.Duration, lag bool) loadgen.Report {
	return s.load(ctx, name, s.config(targets, rate, d, lag))
}

// config is the suite's generator setup: zipf over 10,000 posts, --concurrency
// workers, 20 lag samples a second when lag is asked and there is another
// node to see the likes.
func (s *suite) config(targets []string, rate float64, d time.Duration, lag bool) loadgen.Config {
	// The replication sections measure the fast path as they always did,
	// at w=1 (the default before acknowledged writes); the write-level
	// section sets its own level.
	cfg := loadgen.Config{Targets: targets, Rate: rate, Duration: d, Concurrency: s.conc, Posts: 10000, Zipf: true, WriteLevel: "1"}
	if lag && len(targets) > 1 {
		cfg.LagSamples = 20
	}
	return cfg
}

func (s *suite) load(ctx context.Context, name string, cfg loadgen.Config) loadgen.Report {
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	}
	fmt.Fprintf(os.Stderr, "%-40s %s\n", name, rep)
	return rep
}

// converge waits (up to 30s) until every target holds exactly the likes the
// run acknowledged, and says how long after the last like that took (lag
// sampling may already have waited part of it).
func (s *suite) converge(ctx context.Context, targets []string, rep loadgen.Report) (string, bool) {
	start := rep.Ended
	want := rep.Acked
	for time.Since(start) < 40*time.Second {
		done := true
		for _, t := range targets {
			if total(ctx, t, rep.Posts) < want {
				done = false
				break
			}
		}
		if done {
			return ms(time.Since(start)).String(), true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "not within 40s", false
}

// total sums the counts of posts on one node. Runs use unique users, so
// after a converged run it equals the likes acknowledged in all runs so far
// against these nodes; the suite restarts nodes between scenarios that
// compare totals.
func total(ctx context.Context, target string, posts []string) int64 {
	c := client.New(target, &http.Client{Timeout: 5 * time.Second})
	var sum int64
	for i := 0; i < len(posts); i += 1000 {
		counts, err := c.Counts(ctx, posts[i:min(i+1000, len(posts))]...)
		if err != nil {
			return -1
		}
		for _, n := range counts {
			sum += int64(n)
		}
	}
	return sum
}

func (s *suite) start(name string, args ...string) {
	logf, _ := os.Create(filepath.Join(s.dir, name+".log"))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // a stopped node must not outlive the suite
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "start %s: %v\n", name, err)
		return
	}
	s.procs = append(s.procs, cmd)
}

func (s *suite) stopAll() {
	stopProcs(s.procs)
	s.procs = nil
}

// stopProcs interrupts every child, then kills what is left after 10 s. A
// child the write-level section stopped (SIGSTOP) is continued, so it
// handles the interrupt.
func stopProcs(procs []*exec.Cmd) {
	for _, p := range procs {
		_ = p.Process.Signal(os.Interrupt)
		_ = p.Process.Signal(syscall.SIGCONT)
	}
	for _, p := range procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
}

func (s *suite) startBare() []string {
	addr := freeAddr()
	s.start("bare", s.self, "bare", "--addr", addr)
	return s.ready("http://" + addr)
}

// startNodes starts n nodes on fresh loopback ports, each joining the
// first one's gossip address; args builds a node's command line.
func (s *suite) startNodes(kind string, n int, args func(i int, httpAddr, gossipAddr, seed string) []string) []string {
	var targets []string
	seed := ""
	for i := 0; i < n; i++ {
		httpAddr, gossipAddr := freeAddr(), freeAddr()
		s.start(fmt.Sprintf("%s-%d-%d", kind, len(s.procs), i), args(i, httpAddr, gossipAddr, seed)...)
		if seed == "" {
			seed = gossipAddr
		}
		targets = append(targets, s.ready("http://"+httpAddr)...)
	}
	return targets
}

// startLikesd starts n likesd nodes with default tuning (plus --likesd-flags).
func (s *suite) startLikesd(n int) []string {
	targets := s.startNodes("likesd", n, func(i int, httpAddr, gossipAddr, seed string) []string {
		args := []string{s.likesd, "--http-addr", httpAddr, "--gossip-addr", gossipAddr, "--log-level", "warn",
			"--node-name", fmt.Sprintf("n%d", i+1)}
		if seed != "" {
			args = append(args, "--join", seed)
		}
		return append(args, s.extra...)
	})
	s.waitMembers(targets)
	return targets
}

// startSeed starts n nodes of the seed design.
func (s *suite) startSeed(n int) []string {
	targets := s.startNodes("seed", n, func(_ int, httpAddr, gossipAddr, seed string) []string {
		args := []string{s.self, "seed", "--http-addr", httpAddr, "--gossip-addr", gossipAddr}
		if seed != "" {
			args = append(args, "--join", seed)
		}
		return args
	})
	time.Sleep(2 * time.Second) // the seed design has no membership endpoint: let it settle
	return targets
}

func (s *suite) ready(url string) []string {
	for i := 0; i < 200; i++ {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound {
				return []string{url}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "%s never became ready\n", url)
	return []string{url}
}

func (s *suite) waitMembers(targets []string) {
	for i := 0; i < 200; i++ {
		ok := true
		for _, t := range targets {
			cl, err := client.New(t, nil).Cluster(context.Background())
			if err != nil || len(cl.Alive()) != len(targets) {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func hostCPU() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "model name") {
			_, v, _ := strings.Cut(line, ":")
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
func us(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
