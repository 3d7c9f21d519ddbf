package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// linkBench is `likesbench link` (issue 21's benchmarks): the binary of a
// commit before the link's work against the current one, on 3 local
// nodes, in the same run, rounds alternating which goes first:
//
//   - issue 21's independent measure: one wrk per node at once, each
//     posting fresh likes (front's script), ?w=1 then the default w=2;
//   - the suite's generator (zipf, 64 workers, fresh likes over the three
//     nodes) at w=1 and w=2, as its write-level section runs them;
//
// each with the nodes' CPU per like (utime + stime from /proc/PID/stat,
// summed over the three, over the run, per like answered 2xx). The
// nodes run with a random cluster key, as deployed; --plaintext drops it.
//
// The suite's process helpers start and stop the nodes, front's wrk
// driver runs wrk; every run is bounded by its duration, every child
// stopped on the way out (and killed by the kernel if likesbench dies).
type linkBench struct {
	s                *suite
	f                *front
	bins             []linkBin // before, after
	rounds           int
	key              string // base64; empty: plaintext
	profile          string
	profileFor       time.Duration
	repairBenchtime  string
	repo             string
	out              bytes.Buffer
	wrkRuns, genRuns []linkRun
}

// linkBin is one of the two binaries compared.
type linkBin struct{ name, path, version string }

// linkRun is one measured run of one binary.
type linkRun struct {
	bin, round int
	w          string
	likes      float64       // answered 2xx, all nodes (wrk: its rate × its duration)
	rate       float64       // likes per second
	p99        time.Duration // wrk: the worst node's p99; generator: over all acks
	accepted   float64       // 202s (the nodes' likesd_writes_accepted_total over the run)
	errors     int64         // non-2xx and socket errors (wrk), errors (generator)
	cpuPerLike time.Duration // the nodes' CPU over the run ÷ likes answered 2xx
	load       string        // /proc/loadavg after the run
}

const (
	linkStart = "<!-- bench-link:start -->"
	linkEnd   = "<!-- bench-link:end -->"
)

var linkLevels = []string{"1", "2"}

func cmdLink(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("link", flag.ContinueOnError)
	l := &linkBench{}
	var after, before, beforeCommit, outFile string
	var genDuration, wrkDuration, timeout time.Duration
	var conc, conns int
	var plaintext bool
	fs.StringVar(&after, "likesd", "bin/likesd", "the likesd binary of now (after)")
	fs.StringVar(&beforeCommit, "before-commit", "dd23aa6^", "commit to build the before binary from, in a temporary git worktree of this repository (removed after)")
	fs.StringVar(&before, "before", "", "a before binary already built (then --before-commit only names it)")
	fs.StringVar(&outFile, "out", "", "markdown file whose bench-link section is replaced (appended if absent); default stdout only")
	fs.IntVar(&l.rounds, "rounds", 3, "rounds; each runs both binaries, in alternating order")
	fs.DurationVar(&wrkDuration, "wrk-duration", 8*time.Second, "length of each wrk run (whole seconds)")
	fs.IntVar(&conns, "connections", 16, "wrk connections per node (-c; one thread)")
	fs.DurationVar(&genDuration, "duration", 6*time.Second, "length of each generator run")
	fs.IntVar(&conc, "concurrency", 64, "generator workers")
	fs.BoolVar(&plaintext, "plaintext", false, "run the nodes without a cluster key")
	fs.StringVar(&l.profile, "profile", "", "after the rounds, the after binary once more under wrk at w=1, then w=2, a CPU profile of each node over each run's middle half written to this path plus .w1.n1.pprof ... .w2.n3.pprof")
	fs.DurationVar(&l.profileFor, "profile-duration", 20*time.Second, "length of each profiled wrk run (whole seconds)")
	fs.StringVar(&l.repairBenchtime, "repair-benchtime", "6x", "-benchtime of the anti-entropy repair benchmark (go test BenchmarkRepair10k, internal/cluster); empty: not run")
	fs.DurationVar(&timeout, "timeout", 15*time.Minute, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if l.rounds < 1 || l.rounds > 20 || wrkDuration < time.Second || wrkDuration > 5*time.Minute || genDuration <= 0 || genDuration > 5*time.Minute ||
		l.profileFor < 4*time.Second || l.profileFor > 5*time.Minute {
		return errors.New("want 1 to 20 rounds, runs of 1s to 5m (profiled ones of 4s at least)")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk not found (apt-get install wrk): %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "likesbench-link")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if top, err := exec.CommandContext(ctx, "git", "rev-parse", "--show-toplevel").Output(); err == nil {
		l.repo = strings.TrimSpace(string(top))
	}
	beforeName := beforeCommit
	if short, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", beforeCommit).Output(); err == nil {
		beforeName = fmt.Sprintf("%s (%s)", beforeCommit, strings.TrimSpace(string(short)))
	}
	if before == "" {
		if before, err = buildAt(ctx, beforeCommit, dir); err != nil {
			return err
		}
	}
	l.bins = []linkBin{{"before: " + beforeName, before, binVersion(before)}, {"after: " + after, after, binVersion(after)}}
	if !plaintext {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return err
		}
		l.key = base64.StdEncoding.EncodeToString(raw)
	}
	l.s = &suite{self: self, dir: dir, duration: genDuration, conc: conc}
	l.f = &front{wrk: "wrk", dir: dir, duration: wrkDuration, threads: 1, conns: conns}
	defer l.s.stopAll()
	if err := os.WriteFile(filepath.Join(dir, "fresh.lua"), []byte(frontLua), 0o644); err != nil {
		return err
	}

	profileArgs := ""
	if l.profile != "" {
		profileArgs = fmt.Sprintf(" --profile %s --profile-duration %v", l.profile, l.profileFor)
	}
	keyed := "a random cluster key (`--gossip-key`)"
	if plaintext {
		keyed = "no cluster key (plaintext)"
	}
	l.printf("%s\n## The link (issue 21)\n\n"+
		"Run %s on %s, %d cores shared with other work (load average %s at the start), %s; nodes with %s, `--log-level warn`, in memory.\n"+
		"Before: `%s` %s; after: `%s` %s.\n"+
		"Command: `likesbench link --before-commit '%s' --rounds %d --wrk-duration %v --connections %d --duration %v --concurrency %d --plaintext=%v --repair-benchtime '%s'%s` (`make bench-link`).\n\n",
		linkStart, time.Now().UTC().Format(time.RFC3339), hostCPU(), runtime.NumCPU(), loadAvg(), runtime.Version(), keyed,
		l.bins[0].name, l.bins[0].version, l.bins[1].name, l.bins[1].version,
		beforeCommit, l.rounds, wrkDuration, conns, genDuration, conc, plaintext, l.repairBenchtime, profileArgs)

	for r := 0; r < l.rounds && ctx.Err() == nil; r++ {
		for _, b := range linkOrder(r) {
			if ctx.Err() != nil {
				break
			}
			l.round(ctx, r, b)
		}
	}
	l.report(wrkDuration, genDuration, conns)
	if l.profile != "" && ctx.Err() == nil {
		if rates, err := l.profileRun(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "profile: %v\n", err)
			l.printf("Profile: failed: %v.\n\n", err)
		} else {
			l.printf("CPU profiles of the three nodes (after) under the same wrk load, %v at w=1 then %v at w=2 on 3 fresh nodes after the rounds, each over its run's middle half: "+
				"`%s.w1.n{1,2,3}.pprof` (the nodes answered %.0f likes/s) and `%s.w2.n{1,2,3}.pprof` (%.0f likes/s).\n\n", l.profileFor, l.profileFor, l.profile, rates["1"], l.profile, rates["2"])
		}
	}
	if l.repairBenchtime != "" && ctx.Err() == nil {
		l.repairBench(ctx)
	}
	l.printf("Load average at the end: %s.\n\n%s\n", loadAvg(), linkEnd)
	fmt.Print(l.out.String())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if outFile == "" {
		return nil
	}
	return replaceMarked(outFile, linkStart, linkEnd, l.out.String())
}

// linkOrder is the order of the two binaries (0 before, 1 after) in round
// r: before first in even rounds, after first in odd ones, so a drift of
// the shared machine weighs on both.
func linkOrder(r int) []int {
	if r%2 == 0 {
		return []int{0, 1}
	}
	return []int{1, 0}
}

// buildAt builds cmd/likesd at commit in a temporary detached worktree of
// this repository, removed after, and returns the binary's path in dir.
func buildAt(ctx context.Context, commit, dir string) (string, error) {
	src := filepath.Join(dir, "before-src")
	bin := filepath.Join(dir, "likesd-before")
	if out, err := exec.CommandContext(ctx, "git", "worktree", "add", "--detach", src, commit).CombinedOutput(); err != nil {
		return "", fmt.Errorf("git worktree add %s: %w: %s", commit, err, out)
	}
	defer func() {
		if out, err := exec.Command("git", "worktree", "remove", "--force", src).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "git worktree remove %s: %v: %s\n", src, err, out)
		}
	}()
	fmt.Fprintf(os.Stderr, "link: building %s in %s\n", commit, src)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-X main.version="+commit, "-o", bin, "./cmd/likesd")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build at %s: %w: %s", commit, err, out)
	}
	return bin, nil
}

func (l *linkBench) printf(format string, args ...any) { fmt.Fprintf(&l.out, format, args...) }

// start starts 3 nodes of binary b, with the key; node i has a pprof
// listener at debug[i] when debug is not nil.
func (l *linkBench) start(b int, debug []string) ([]string, []int) {
	from := len(l.s.procs)
	targets := l.s.startNodes("link", 3, func(i int, httpAddr, gossipAddr, seed string) []string {
		args := []string{l.bins[b].path, "--http-addr", httpAddr, "--gossip-addr", gossipAddr, "--log-level", "warn",
			"--node-name", fmt.Sprintf("n%d", i+1)}
		if seed != "" {
			args = append(args, "--join", seed)
		}
		if l.key != "" {
			args = append(args, "--gossip-key", l.key)
		}
		if debug != nil {
			args = append(args, "--debug-addr", debug[i])
		}
		return args
	})
	l.s.waitMembers(targets)
	var pids []int
	for _, p := range l.s.procs[from:] {
		pids = append(pids, p.Process.Pid)
	}
	return targets, pids
}

// round runs binary b on 3 fresh nodes: wrk at w=1 and w=2, then the
// generator at w=1 and w=2, on the same nodes.
func (l *linkBench) round(ctx context.Context, r, b int) {
	defer l.s.stopAll()
	targets, pids := l.start(b, nil)
	if len(pids) != 3 {
		fmt.Fprintf(os.Stderr, "round %d, %s: %d of 3 nodes started\n", r+1, l.bins[b].name, len(pids))
		return
	}
	for _, w := range linkLevels {
		run := l.measure(ctx, targets, pids, func() linkRun {
			return wrkEach(ctx, l.f, targets, w, fmt.Sprintf("r%db%dw%s", r, b, w))
		})
		run.bin, run.round, run.w = b, r, w
		l.wrkRuns = append(l.wrkRuns, run)
		fmt.Fprintf(os.Stderr, "round %d %-40s wrk w=%s %8.0f likes/s p99 %v cpu/like %v 202 %.0f errors %d load %s\n",
			r+1, l.bins[b].name, w, run.rate, run.p99, run.cpuPerLike, run.accepted, run.errors, run.load)
	}
	for _, w := range linkLevels {
		run := l.measure(ctx, targets, pids, func() linkRun {
			cfg := l.s.config(targets, 0, l.s.duration, false)
			cfg.WriteLevel = w
			rep := l.s.load(ctx, fmt.Sprintf("round %d, %s, generator w=%s", r+1, l.bins[b].name, w), cfg)
			likes := float64(rep.Acked + rep.Accepted)
			return linkRun{likes: likes, rate: likes / l.s.duration.Seconds(), p99: rep.AckP99, errors: rep.Errors}
		})
		run.bin, run.round, run.w = b, r, w
		l.genRuns = append(l.genRuns, run)
	}
}

// measure runs one load and adds the nodes' CPU and 202s over it.
func (l *linkBench) measure(ctx context.Context, targets []string, pids []int, load func() linkRun) linkRun {
	cpu0, m0 := cpuSum(pids), scrape(ctx, targets)
	run := load()
	cpu, m := cpuSum(pids)-cpu0, scrape(ctx, targets).minus(m0)
	run.accepted = m.accepted
	if run.likes > 0 {
		run.cpuPerLike = time.Duration(float64(cpu) / run.likes)
	}
	run.load = loadAvg()
	return run
}

// cpuSum is the CPU the processes used so far, summed.
func cpuSum(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		sum += cpuOf(pid)
	}
	return sum
}

// wrkEach runs one wrk per target at once with f's settings, each posting
// fresh likes at level w ("2" is the nodes' default: no ?w=), and sums
// them.
func wrkEach(ctx context.Context, f *front, targets []string, w, run string) linkRun {
	query := "?w=" + w
	if w == "2" {
		query = ""
	}
	res := make([]frontResult, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { res[i], errs[i] = f.runWrk(ctx, t, fmt.Sprintf("%sn%d", run, i), query) })
	}
	wg.Wait()
	var out linkRun
	for i, r := range res {
		if errs[i] != nil {
			fmt.Fprintf(os.Stderr, "wrk against %s: %v\n", targets[i], errs[i])
			out.errors++
			continue
		}
		out.rate += r.rps
		out.likes += r.rps * f.duration.Seconds()
		out.errors += r.non2xx + r.errors
		if d, err := time.ParseDuration(r.p99); err == nil {
			out.p99 = max(out.p99, d)
		}
	}
	return out
}

// profileRun starts the after binary with a pprof listener on every node
// and runs wrk at w=1, then at w=2, for profileFor each, taking a CPU
// profile of each node over each run's middle half: l.profile with
// .w1.n1.pprof ... .w2.n3.pprof added (go tool pprof merges a level's
// three). It returns the likes the three nodes answered per second at each
// level.
func (l *linkBench) profileRun(ctx context.Context) (map[string]float64, error) {
	defer l.s.stopAll()
	debug := []string{freeAddr(), freeAddr(), freeAddr()}
	targets, pids := l.start(1, debug)
	if len(pids) != 3 {
		return nil, fmt.Errorf("%d of 3 nodes started", len(pids))
	}
	f := *l.f
	f.duration = l.profileFor
	rates := map[string]float64{}
	for _, w := range linkLevels {
		errs := make([]error, len(debug))
		var wg sync.WaitGroup
		for i, addr := range debug {
			wg.Go(func() {
				sleepCtx(ctx, f.duration/4)
				secs := max(1, int(f.duration.Seconds()/2))
				body, err := get(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
				if err == nil {
					err = os.WriteFile(fmt.Sprintf("%s.w%s.n%d.pprof", l.profile, w, i+1), body, 0o644)
				}
				errs[i] = err
			})
		}
		run := wrkEach(ctx, &f, targets, w, "profile"+w)
		wg.Wait()
		fmt.Fprintf(os.Stderr, "profile run: wrk w=%s %.0f likes/s (profiled, not in the tables)\n", w, run.rate)
		rates[w] = run.rate
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return rates, nil
}

// report writes the runs and the summary.
func (l *linkBench) report(wrkDuration, genDuration time.Duration, conns int) {
	l.printf("### Issue 21's measure: one `wrk -t1 -c%d -d%v` per node at once, fresh likes\n\n"+
		"Each round starts 3 fresh nodes of each binary (the order alternates round by round) and runs, on the same nodes, wrk at `?w=1`, then at the default w=2, "+
		"then the generator (below). likes/s is the three wrks' 2xx replies per second summed; p99 is the worst of the three wrks' latency p99; "+
		"202 are the nodes' `likesd_writes_accepted_total` over the run (acknowledged by fewer nodes than asked within the write timeout); "+
		"CPU per like is the three nodes' utime + stime over the run (/proc/PID/stat) ÷ the likes answered; load is /proc/loadavg after the run.\n\n", conns, wrkDuration)
	l.runTable(l.wrkRuns)
	l.printf("### The suite's generator: zipf over 10,000 posts, %d workers over the three nodes, %v, fresh likes\n\n"+
		"As `likesbench suite --only writes` runs its as-fast-as-possible rows; p99 is of acknowledged likes (201/200); the generator shares the two cores with the nodes.\n\n",
		l.s.conc, genDuration)
	l.runTable(l.genRuns)
	l.printf("### Summary (medians over the rounds)\n\n" +
		"| measure | binary | w=1 likes/s | w=2 likes/s | **w=2 ÷ w=1** (median of the rounds' ratios) | w=1 p99 | w=2 p99 | w=1 CPU per like | w=2 CPU per like | w=2 CPU per like − w=1's |\n" +
		"|---|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range []struct {
		name string
		runs []linkRun
	}{{"wrk ×3", l.wrkRuns}, {"generator", l.genRuns}} {
		for b := range l.bins {
			s := summarize(m.runs, b)
			l.printf("| %s | %s | %.0f | %.0f | **%s** | %v | %v | %v | %v | %v |\n", m.name, l.bins[b].name, s.rate["1"], s.rate["2"], ratioText(s.ratio, 1, 2),
				us(s.p99["1"]), us(s.p99["2"]), s.cpu["1"].Round(100*time.Nanosecond), s.cpu["2"].Round(100*time.Nanosecond),
				(s.cpu["2"] - s.cpu["1"]).Round(100*time.Nanosecond))
		}
		a, b := summarize(m.runs, 0), summarize(m.runs, 1)
		l.printf("| %s | after ÷ before | %s | %s | | %s | %s | %s | %s | |\n", m.name,
			ratioText(b.rate["1"], a.rate["1"], 2), ratioText(b.rate["2"], a.rate["2"], 2),
			ratioText(float64(b.p99["1"]), float64(a.p99["1"]), 2), ratioText(float64(b.p99["2"]), float64(a.p99["2"]), 2),
			ratioText(float64(b.cpu["1"]), float64(a.cpu["1"]), 2), ratioText(float64(b.cpu["2"]), float64(a.cpu["2"]), 2))
	}
	l.printf("\n")
}

func (l *linkBench) runTable(runs []linkRun) {
	l.printf("| round | binary | w | likes/s | p99 | 202 | errors | CPU per like | load after |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		l.printf("| %d | %s | %s | %.0f | %v | %.0f | %d | %v | %s |\n", r.round+1, l.bins[r.bin].name, r.w, r.rate, us(r.p99), r.accepted, r.errors,
			r.cpuPerLike.Round(100*time.Nanosecond), r.load)
	}
	l.printf("\n")
}

// linkSummary is one binary's medians over the rounds, by level.
type linkSummary struct {
	rate  map[string]float64
	p99   map[string]time.Duration
	cpu   map[string]time.Duration
	ratio float64 // median over rounds of w=2's rate ÷ w=1's
}

// summarize takes the medians of binary b's runs; the ratio pairs the two
// levels of one round (the same nodes, seconds apart).
func summarize(runs []linkRun, b int) linkSummary {
	s := linkSummary{rate: map[string]float64{}, p99: map[string]time.Duration{}, cpu: map[string]time.Duration{}}
	rates, p99s, cpus := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	byRound := map[int]map[string]float64{}
	for _, r := range runs {
		if r.bin != b {
			continue
		}
		rates[r.w] = append(rates[r.w], r.rate)
		p99s[r.w] = append(p99s[r.w], float64(r.p99))
		cpus[r.w] = append(cpus[r.w], float64(r.cpuPerLike))
		if byRound[r.round] == nil {
			byRound[r.round] = map[string]float64{}
		}
		byRound[r.round][r.w] = r.rate
	}
	for _, w := range linkLevels {
		s.rate[w] = median(rates[w])
		s.p99[w] = time.Duration(median(p99s[w]))
		s.cpu[w] = time.Duration(median(cpus[w]))
	}
	var ratios []float64
	for _, lv := range byRound {
		if lv["1"] > 0 {
			ratios = append(ratios, lv["2"]/lv["1"])
		}
	}
	s.ratio = median(ratios)
	return s
}

// repairBench runs the anti-entropy benchmark of internal/cluster (the
// current tree: sessions against memberlist, one dial per message) and
// adds its lines.
func (l *linkBench) repairBench(ctx context.Context) {
	l.printf("### Anti-entropy: a 10,000-like difference between two nodes (`BenchmarkRepair10k`, internal/cluster)\n\n" +
		"Two nodes (real memberlists on loopback, a cluster key) hold the same 100,000 likes (10 on each of 10,000 posts); 10,000 more, one new liker on every post, " +
		"are put in one node's store only and anti-entropy repairs them: over the sessions (this version), or through memberlist, one dial per message " +
		"(the other node speaks stream version 1 only, as a node of the version before sessions does). s/repair runs from the likes landing until the other node holds them all " +
		"(it includes the wait for the next session, sync interval 100ms); KiB/repair is the anti-entropy bytes both nodes received until then; " +
		"sessions/repair, the sessions that had ended by then, both nodes' (each starts its own every interval, so two may repair at once).\n\n")
	if l.repo == "" {
		l.printf("Not run: not in a git checkout.\n\n")
		return
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkRepair10k$", "-benchtime", l.repairBenchtime, "-count", "1", "./internal/cluster")
	cmd.Dir = l.repo
	out, err := cmd.CombinedOutput()
	var lines []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Benchmark") {
			lines = append(lines, line)
		}
	}
	if err != nil {
		l.printf("Failed: %v\n\n```\n%s\n```\n\n", err, strings.TrimSpace(string(out)))
		return
	}
	l.printf("Command: `go test -run '^$' -bench '^BenchmarkRepair10k$' -benchtime %s -count 1 ./internal/cluster`; load average after: %s.\n\n```\n%s\n```\n\n",
		l.repairBenchtime, loadAvg(), strings.Join(lines, "\n"))
}
