package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/likesd/likesd/internal/loadgen"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/wal"
)

// durableBench is `likesbench durable` (issue 19): what --data-dir costs
// on the write path (3 nodes at w=2, in memory against on disk, rounds
// alternating), how fast a node recovers S2 from a snapshot plus a log
// tail beside redis-server loading the same likes from an RDB and from
// AOFs, and the data dir's bytes per like beside the recovered process's
// RSS.
//
// The write path reuses the suite's process helpers and the recovery the
// memory benchmark's. Every child is stopped when it returns (and killed
// by the kernel if likesbench dies: Pdeathsig), every load is bounded by
// its duration or its dataset, every wait by a deadline, the whole run by
// --timeout. The data dir to recover is built in this process with
// internal/store and internal/wal (no product flag is needed to force a
// snapshot): this tool, like cmd/likesd, may know every piece.
type durableBench struct {
	likesd, redisServer, redisCli string
	duration                      time.Duration
	rounds, restarts              int
	rate                          float64 // the fixed-rate runs' offered likes/s; 0 until the first in-memory run sets it
	noRedis                       bool
	dir                           string
	s                             *suite    // the write path's nodes
	m                             *memBench // recovery's processes
	out                           bytes.Buffer
}

const (
	durableStart = "<!-- bench-durable:start -->"
	durableEnd   = "<!-- bench-durable:end -->"
	// snapLikes of the recovery dataset are in the snapshot, the rest in
	// the log after it.
	snapLikes = 10_000_000
)

// recoveryData is S2 (its first 10M likes: rounds 0 to 99 of likes()) and
// 1M more, ten more likers of every post.
func recoveryData() dataset {
	return uniform("S2+1M", "S2 and 1M more likes: 100,000 posts × 110, 8-byte ids (the first 10M are S2's likes)", 100_000, 110, shortUser, 8)
}

// durableMode is one way of running the write path's nodes.
type durableMode struct {
	name  string
	flags []string // nil: in memory
}

var durableModes = []durableMode{
	{"in memory", nil},
	{"`--data-dir`, `--fsync always`", []string{"--fsync", "always"}},
	{"`--data-dir`, `--fsync interval` (100ms)", []string{"--fsync", "interval", "--fsync-interval", "100ms"}},
}

var durableSections = []string{"write", "recovery"}

func cmdDurable(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("durable", flag.ContinueOnError)
	d := &durableBench{}
	var outFile, parent, only string
	var conc int
	var settle, timeout time.Duration
	fs.StringVar(&d.likesd, "likesd", "bin/likesd", "the likesd binary to measure")
	fs.StringVar(&d.redisServer, "redis-server", "redis-server", "the redis-server binary")
	fs.StringVar(&d.redisCli, "redis-cli", "redis-cli", "the redis-cli binary (loads Redis with --pipe)")
	fs.StringVar(&outFile, "out", "", "markdown file whose bench-durable section is replaced (appended if absent); default stdout only")
	fs.StringVar(&parent, "dir", "", "directory to make the run's temporary directory in: the data dirs live there, so put it on the disk to measure (default $TMPDIR)")
	fs.DurationVar(&d.duration, "duration", 10*time.Second, "length of each write-path run")
	fs.IntVar(&d.rounds, "rounds", 2, "write-path rounds; each runs every mode once, in alternating order")
	fs.IntVar(&conc, "concurrency", 64, "write-path generator workers")
	fs.Float64Var(&d.rate, "rate", 0, "offered likes/s of the write path's fixed-rate runs (0: half what the first in-memory run acked as fast as possible)")
	fs.IntVar(&d.restarts, "restarts", 3, "times each recovery is timed (likesd, and Redis from each file)")
	fs.DurationVar(&settle, "settle", 2*time.Minute, "longest wait for the recovered likesd's RSS to settle (at least 60 s, then under 1% change over 20 s)")
	fs.BoolVar(&d.noRedis, "no-redis", false, "skip Redis")
	fs.StringVar(&only, "only", "", "comma-separated sections to run (default all): "+strings.Join(durableSections, ", "))
	fs.DurationVar(&timeout, "timeout", 45*time.Minute, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	run, err := pickSections(only, durableSections)
	if err != nil {
		return err
	}
	if d.rounds < 1 || d.restarts < 1 {
		return errors.New("--rounds and --restarts must be at least 1")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if d.dir, err = os.MkdirTemp(parent, "likesbench-durable"); err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(d.dir) }()
	d.s = &suite{likesd: d.likesd, self: self, dir: d.dir, duration: d.duration, conc: conc}
	d.m = &memBench{likesd: d.likesd, redisServer: d.redisServer, redisCli: d.redisCli, settle: settle, workers: 2, dir: d.dir}
	defer d.s.stopAll()
	defer d.m.stopAll()

	redisVersion, _ := exec.Command(d.redisServer, "--version").Output()
	likesdVersion, _ := exec.Command(d.likesd, "--version").Output()
	d.printf("%s\n## Durability: `--data-dir` beside memory and Redis (issue 19, `make bench-durable`)\n\n"+
		"Run %s on %s, %d cores shared with other work (load average %s at the start); likesd `%s` (%s), built with %s; %s.\n"+
		"Data dirs on %s. Command: `likesbench durable --duration %v --rounds %d --concurrency %d --rate %.0f --restarts %d --settle %v --only '%s'`.\n\n",
		durableStart, time.Now().UTC().Format(time.RFC3339), hostCPU(), runtime.NumCPU(), loadAvg(), d.likesd,
		strings.TrimSpace(string(likesdVersion)), runtime.Version(), strings.TrimSpace(string(redisVersion)),
		diskOf(d.dir), d.duration, d.rounds, conc, d.rate, d.restarts, settle, only)

	if run["write"] {
		d.writePath(ctx)
	}
	if run["recovery"] {
		if err := d.recovery(ctx); err != nil {
			d.printf("\nRecovery failed: %v\n\n", err)
			fmt.Fprintf(os.Stderr, "recovery: %v\n", err)
		}
	}
	d.printf("Load average at the end: %s.\n\n%s\n", loadAvg(), durableEnd)
	fmt.Print(d.out.String())
	if outFile == "" {
		return ctx.Err()
	}
	return replaceMarked(outFile, durableStart, durableEnd, d.out.String())
}

// pickSections parses --only: the named sections, or all of them.
func pickSections(only string, all []string) (map[string]bool, error) {
	run := map[string]bool{}
	for _, name := range strings.Split(only, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if !slices.Contains(all, name) {
			return nil, fmt.Errorf("--only: unknown section %q (want %s)", name, strings.Join(all, ", "))
		}
		run[name] = true
	}
	if len(run) == 0 {
		for _, name := range all {
			run[name] = true
		}
	}
	return run, nil
}

func (d *durableBench) printf(format string, args ...any) { fmt.Fprintf(&d.out, format, args...) }

// --- write path ------------------------------------------------------------

// nodeDisk is one node's log counters over a run.
type nodeDisk struct{ syncs, records, bytes float64 }

// measured is one load on a set of nodes: what the generator saw and each
// node's log counters (nil in memory).
type measured struct {
	rep   loadgen.Report
	nodes []nodeDisk
	err   error
}

// writeRun is one mode's runs in one round: as fast as possible, then at
// the fixed rate on the same nodes.
type writeRun struct {
	mode, round int
	max, fixed  measured
}

// writePath runs every mode on 3 fresh nodes per round, in alternating
// order (drift of the shared machine then weighs on both ends), and writes
// each run and a summary against the in-memory runs.
func (d *durableBench) writePath(ctx context.Context) {
	d.printf("### Write path: 3 nodes, w=2, fresh likes\n\n"+
		"Each run starts 3 fresh likesd on 127.0.0.1 (each with its own data dir when on disk) and drives them for %v with %d workers "+
		"(zipf over 10,000 posts, a new user per like, `?w=2`: the 201 waits for this node's log and one peer's ack, which that peer sends after its own sync), "+
		"first as fast as possible, then on the same nodes at a fixed rate (latencies compare at equal load; at the highest rate they are mostly the 64 workers' queueing). "+
		"Modes alternate within a round (round 1 in order, round 2 reversed, ...). The log columns are each node's `/metrics` over the run "+
		"(`likesd_wal_syncs_total`, `likesd_wal_records_total`, `likesd_wal_bytes_total`): every node logs every like, its own and its peers'.\n\n", d.duration, d.s.conc)
	var runs []writeRun
	var maxRows, fixedRows strings.Builder
	for r := 0; r < d.rounds && ctx.Err() == nil; r++ {
		order := []int{0, 1, 2}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, m := range order {
			if ctx.Err() != nil {
				break
			}
			w := d.writeOnce(ctx, m, r)
			runs = append(runs, w)
			fmt.Fprintf(&maxRows, "%s\n", w.max.row(w, d.duration, 0))
			fmt.Fprintf(&fixedRows, "%s\n", w.fixed.row(w, d.duration, d.rate))
		}
	}
	header := "| round | mode | offered/s | acked/s | ack p50 | ack p99 | 202 | errors | fsyncs/s (n1, n2, n3) | likes per fsync (n1, n2, n3) | log B/like |\n" +
		"|---|---|---|---|---|---|---|---|---|---|---|\n"
	d.printf("#### As fast as possible\n\n%s%s\n%s\n", header, maxRows.String(), writeSummary(points(runs, func(w writeRun) loadgen.Report { return w.max.rep })))
	d.printf("#### At %.0f likes/s offered (half the first in-memory run's rate unless --rate)\n\n%s%s\n%s\n", d.rate, header, fixedRows.String(),
		writeSummary(points(runs, func(w writeRun) loadgen.Report { return w.fixed.rep })))
}

// writeOnce runs mode m on 3 fresh nodes, as fast as possible and then at
// d.rate, and stops them. The first in-memory run sets d.rate when it is
// 0.
func (d *durableBench) writeOnce(ctx context.Context, m, round int) writeRun {
	defer d.s.stopAll()
	mode := durableModes[m]
	w := writeRun{mode: m, round: round}
	var dirs []string
	defer func() {
		for _, dir := range dirs {
			_ = os.RemoveAll(dir)
		}
	}()
	targets := d.s.startNodes("likesd", 3, func(i int, httpAddr, gossipAddr, seed string) []string {
		args := []string{d.likesd, "--http-addr", httpAddr, "--gossip-addr", gossipAddr, "--log-level", "warn",
			"--node-name", fmt.Sprintf("n%d", i+1)}
		if seed != "" {
			args = append(args, "--join", seed)
		}
		if mode.flags != nil {
			dir := filepath.Join(d.dir, fmt.Sprintf("write-r%d-m%d-n%d", round+1, m, i+1))
			dirs = append(dirs, dir)
			args = append(append(args, "--data-dir", dir), mode.flags...)
		}
		return args
	})
	d.s.waitMembers(targets)
	w.max = d.measure(ctx, fmt.Sprintf("round %d, %s, as fast as possible", round+1, mode.name), targets, 0, mode.flags != nil)
	if d.rate == 0 {
		d.rate = max(100, math.Round(w.max.rep.AckedPerSec/2/100)*100)
	}
	w.fixed = d.measure(ctx, fmt.Sprintf("round %d, %s, at %.0f/s", round+1, mode.name, d.rate), targets, d.rate, mode.flags != nil)
	return w
}

// measure runs the generator at w=2 against targets at rate (0: as fast as
// possible) and reads each node's log counters around it when onDisk.
func (d *durableBench) measure(ctx context.Context, name string, targets []string, rate float64, onDisk bool) measured {
	before := make([]map[string]float64, len(targets))
	for i, t := range targets {
		before[i] = metricValues(ctx, t)
	}
	cfg := d.s.config(targets, rate, d.duration, false)
	cfg.WriteLevel = "2"
	out := measured{rep: d.s.load(ctx, name, cfg)}
	if !onDisk {
		return out
	}
	for i, t := range targets {
		after := metricValues(ctx, t)
		if _, ok := after["likesd_wal_syncs_total"]; !ok { // a renamed metric must not read as 0 syncs
			out.err = fmt.Errorf("%s: no likesd_wal_syncs_total in /metrics", t)
			continue
		}
		delta := func(name string) float64 { return after[name] - before[i][name] }
		out.nodes = append(out.nodes, nodeDisk{syncs: delta("likesd_wal_syncs_total"), records: delta("likesd_wal_records_total"), bytes: delta("likesd_wal_bytes_total")})
	}
	return out
}

// row is the run's line of a write-path table; rate 0 is as fast as
// possible.
func (x measured) row(w writeRun, d time.Duration, rate float64) string {
	syncs, per, perLike := "—", "—", "—"
	if len(x.nodes) > 0 {
		var a, b []string
		var bytes, records float64
		for _, n := range x.nodes {
			a = append(a, fmt.Sprintf("%.0f", n.syncs/d.Seconds()))
			b = append(b, ratioText(n.records, n.syncs, 1))
			bytes, records = bytes+n.bytes, records+n.records
		}
		syncs, per, perLike = strings.Join(a, ", "), strings.Join(b, ", "), ratioText(bytes, records, 1)
	}
	if x.err != nil {
		perLike += " (" + x.err.Error() + ")"
	}
	offered := "max"
	if rate > 0 {
		offered = fmt.Sprintf("%.0f", rate)
	}
	r := x.rep
	return fmt.Sprintf("| %d | %s | %s | %.0f | %v | %v | %d | %d | %s | %s | %s |", w.round+1, durableModes[w.mode].name, offered, r.AckedPerSec,
		us(r.AckP50), us(r.AckP99), r.Accepted, r.Errors, syncs, per, perLike)
}

// ratioText is x/y with the given decimals, or a dash when y is not
// positive.
func ratioText(x, y float64, decimals int) string {
	if y <= 0 {
		return "—"
	}
	return strconv.FormatFloat(x/y, 'f', decimals, 64)
}

// point is one run's figures for the summary.
type point struct {
	mode, round int
	rate        float64 // acked/s
	p99         time.Duration
}

func points(runs []writeRun, of func(writeRun) loadgen.Report) []point {
	var ps []point
	for _, w := range runs {
		r := of(w)
		ps = append(ps, point{mode: w.mode, round: w.round, rate: r.AckedPerSec, p99: r.AckP99})
	}
	return ps
}

// writeSummary compares each mode's runs with the in-memory runs (mode 0)
// of the same rounds, neighbours in time: the rate summed over those
// rounds and its ratio to in memory's (each round's in brackets), the ack
// p99 of each round and the worst one's ratio to in memory's worst, and the
// verdict against issue 19's targets (≥ 80 % of the in-memory rate, ack
// p99 ≤ 25 ms in every round).
func writeSummary(ps []point) string {
	var b strings.Builder
	b.WriteString("| mode | acked/s, mean of rounds | rate ratio to in memory (each round) | ack p99, each round | worst p99 ÷ in memory's worst | target: rate ≥ 0.80 × in memory, ack p99 ≤ 25 ms |\n" +
		"|---|---|---|---|---|---|\n")
	base := map[int]point{}
	var baseWorst time.Duration
	for _, p := range ps {
		if p.mode == 0 {
			base[p.round] = p
			baseWorst = max(baseWorst, p.p99)
		}
	}
	for m, mode := range durableModes {
		var n int
		var total, paired, pairedBase float64
		var each, p99s []string
		var worst time.Duration
		for _, p := range ps {
			if p.mode != m {
				continue
			}
			n++
			total += p.rate
			p99s = append(p99s, ms(p.p99).String())
			worst = max(worst, p.p99)
			if q, ok := base[p.round]; ok && q.rate > 0 {
				paired, pairedBase = paired+p.rate, pairedBase+q.rate
				each = append(each, fmt.Sprintf("%.2f", p.rate/q.rate))
			}
		}
		if n == 0 {
			continue
		}
		ratio, verdict := "—", "(the baseline)"
		if pairedBase > 0 {
			ratio = fmt.Sprintf("**%.2f** (%s)", paired/pairedBase, strings.Join(each, ", "))
			if m != 0 {
				verdict = fmt.Sprintf("rate %s, p99 %s", okMiss(paired/pairedBase >= 0.80), okMiss(worst <= 25*time.Millisecond))
			}
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s |\n", mode.name, total/float64(n), ratio, strings.Join(p99s, ", "),
			ratioText(float64(worst), float64(baseWorst), 2), verdict)
	}
	return b.String()
}

// --- recovery --------------------------------------------------------------

// built is what buildDataDir wrote.
type built struct {
	took                    time.Duration
	snapshotLikes           uint64        // what the second open recovered from the snapshot
	snapshotOpen, openCPU   time.Duration // the second open: wall and this process's CPU
	snapshotWrite, writeCPU time.Duration // the first close, which writes the snapshot
	tailRecords             uint64
	snapshotBytes, logBytes int64
	files                   []string
}

// buildDataDir writes, in this process, a data dir holding the first
// snapLikes likes of data in a snapshot and the rest in the log after it.
// First open: the store is filled without logging but for the last 1,000
// likes, which are logged past a 4 KiB SnapshotBytes, so closing the log
// syncs them, rotates and writes the snapshot of the whole store (and
// deletes the segment before it). Second open, with the default
// SnapshotBytes: it recovers the snapshot into a fresh store, and the
// rest of the likes are logged. Both opens sync every 10 s, and at close.
func buildDataDir(ctx context.Context, dir string, data dataset, snapLikes int64) (built, error) {
	start := time.Now()
	var b built
	next, stop := iter.Pull2(data.likes())
	defer stop()
	const logged = 1000
	open := func(snapshotBytes int64) (*store.Store, *wal.Log, wal.Recovery, error) {
		st, err := store.New(store.DefaultConfig())
		if err != nil {
			return nil, nil, wal.Recovery{}, err
		}
		cfg := wal.DefaultConfig(dir)
		cfg.Fsync, cfg.Interval, cfg.SnapshotBytes = wal.FsyncInterval, 10*time.Second, snapshotBytes
		lg, rec, err := wal.Open(cfg, st)
		if err != nil {
			return nil, nil, rec, err
		}
		st.SetJournal(lg)
		return st, lg, rec, nil
	}
	feed := func(n int64, add func(post, user string)) error {
		for i := int64(0); i < n; i++ {
			post, user, ok := next()
			if !ok {
				return fmt.Errorf("the dataset ended after %d likes", i)
			}
			add(post, user)
			if i%(1<<20) == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
		}
		return nil
	}

	st, lg, _, err := open(4 << 10)
	if err != nil {
		return b, err
	}
	if err := feed(snapLikes-logged, st.RestoreLike); err != nil {
		_ = lg.Close(context.Background())
		return b, err
	}
	if err := feed(logged, func(p, u string) { st.Like(p, u) }); err != nil {
		_ = lg.Close(context.Background())
		return b, err
	}
	w0, c0 := time.Now(), selfCPU()
	if err := lg.Close(ctx); err != nil { // syncs, rotates and writes the snapshot
		return b, fmt.Errorf("closing the first log: %w", err)
	}
	b.snapshotWrite, b.writeCPU = time.Since(w0), selfCPU()-c0
	if s := lg.Stats(); s.Snapshots != 1 || s.SnapshotErrors != 0 {
		return b, fmt.Errorf("the first log wrote %d snapshots (%d failed), want 1", s.Snapshots, s.SnapshotErrors)
	}
	st = nil
	runtime.GC()

	t0, c0 := time.Now(), selfCPU()
	st, lg, rec, err := open(wal.DefaultConfig("").SnapshotBytes)
	if err != nil {
		return b, err
	}
	b.snapshotOpen, b.openCPU = time.Since(t0), selfCPU()-c0
	b.snapshotLikes = rec.SnapshotLikes
	if rec.SnapshotLikes != uint64(snapLikes) || rec.Incomplete {
		_ = lg.Close(context.Background())
		return b, fmt.Errorf("the second open recovered %d likes from the snapshot (incomplete %v), want %d", rec.SnapshotLikes, rec.Incomplete, snapLikes)
	}
	if err := feed(data.total-snapLikes, func(p, u string) { st.Like(p, u) }); err != nil {
		_ = lg.Close(context.Background())
		return b, err
	}
	if err := lg.Close(ctx); err != nil {
		return b, fmt.Errorf("closing the second log: %w", err)
	}
	s := lg.Stats()
	if s.Snapshots != 0 {
		return b, fmt.Errorf("the second log wrote %d snapshots, want none", s.Snapshots)
	}
	b.tailRecords = s.Appended
	b.took = time.Since(start)
	b.snapshotBytes, b.logBytes, b.files, err = dataDirBytes(dir)
	return b, err
}

// selfCPU is the CPU time this process used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// dataDirBytes sums the sizes of a data dir's snapshots and segments.
func dataDirBytes(dir string) (snap, log int64, files []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, nil, err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return 0, 0, nil, err
		}
		switch filepath.Ext(e.Name()) {
		case ".snap":
			snap += info.Size()
		case ".wal":
			log += info.Size()
		default:
			continue
		}
		files = append(files, fmt.Sprintf("%s %s", e.Name(), mib(info.Size())))
	}
	return snap, log, files, nil
}

// recovered is the fields of likesd's "recovered the data dir" log line.
type recovered struct {
	Took          float64 `json:"took"` // zerolog's default: milliseconds
	SnapshotLikes uint64  `json:"snapshot_likes"`
	Records       uint64  `json:"records"`
	Segments      int     `json:"segments"`
	Incomplete    bool    `json:"incomplete"`
}

// parseRecovered finds the recovery line in a JSON log.
func parseRecovered(log []byte) (recovered, bool) {
	for _, line := range bytes.Split(log, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"message":"recovered the data dir"`)) {
			continue
		}
		var r recovered
		if json.Unmarshal(line, &r) == nil {
			return r, true
		}
	}
	return recovered{}, false
}

// recoveryRun is one timed start of a process on recovered data: from
// exec until it served, the CPU it used until then (every thread) and how
// long its threads waited for a core meanwhile (the machine is shared).
type recoveryRun struct {
	ready, cpu, wait time.Duration
	log              recovered // likesd only
}

// timed is a recoveryRun for the process pid that served after ready.
func timed(pid int, ready time.Duration) recoveryRun {
	cpu, wait, err := procCPU(pid)
	if err != nil {
		cpu, wait = -1, -1
	}
	return recoveryRun{ready: ready, cpu: cpu, wait: wait}
}

// procCPU reads the CPU time pid used (utime + stime, in clock ticks of
// 10 ms) and the time its live threads waited on a run queue
// (schedstat's second field).
func procCPU(pid int) (cpu, wait time.Duration, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	cpu, err = statCPU(string(raw))
	if err != nil {
		return 0, 0, err
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return cpu, 0, err
	}
	for _, t := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		if f := strings.Fields(string(raw)); len(f) >= 2 {
			ns, _ := strconv.ParseInt(f[1], 10, 64)
			wait += time.Duration(ns)
		}
	}
	return cpu, wait, nil
}

// statCPU is utime + stime of a /proc/PID/stat line (fields 14 and 15,
// counted after the command in brackets, which may hold spaces).
func statCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, errors.New("stat: too few fields")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("stat: bad utime or stime")
	}
	return time.Duration(u+k) * 10 * time.Millisecond, nil
}

// cells are the ready, CPU and wait cells of a table row for runs.
func cells(runs []recoveryRun) (ready, cpu, wait string, worst time.Duration) {
	var a, b, c []string
	for _, r := range runs {
		a = append(a, fmt.Sprintf("%.2f", r.ready.Seconds()))
		b = append(b, fmt.Sprintf("%.2f", r.cpu.Seconds()))
		c = append(c, fmt.Sprintf("%.1f", r.wait.Seconds()))
		worst = max(worst, r.ready)
	}
	return strings.Join(a, ", ") + " s", strings.Join(b, ", ") + " s", strings.Join(c, ", ") + " s", worst
}

// recovery builds the data dir, times likesd's restarts on it, measures
// the settled RSS of the first, then Redis on the same likes.
func (d *durableBench) recovery(ctx context.Context) error {
	data := recoveryData()
	d.printf("### Recovery of S2 from a snapshot plus a 1M-like log tail\n\n")
	fmt.Fprintf(os.Stderr, "recovery: building the data dir (%s)\n", data.desc)
	dataDir := filepath.Join(d.dir, "s2-data")
	b, err := buildDataDir(ctx, dataDir, data, snapLikes)
	if err != nil {
		return fmt.Errorf("building the data dir: %w", err)
	}
	tail := data.total - snapLikes
	fmt.Fprintf(os.Stderr, "recovery: built in %v: %s\n", b.took.Round(time.Millisecond), strings.Join(b.files, ", "))

	// The idle process: the RSS baseline, as bench-memory's.
	idleDir := filepath.Join(d.dir, "idle-data")
	idle, err := d.startDurable(ctx, "likesd-idle", idleDir)
	if err != nil {
		return err
	}
	sleepCtx(ctx, 2*time.Second)
	idleMem, _ := procMem(idle.cmd.Process.Pid)
	d.m.stopAll()

	var runs []recoveryRun
	var atReady, settled, afterGC mem
	var heap int64
	var waited time.Duration
	for i := 0; i < d.restarts && ctx.Err() == nil; i++ {
		name := fmt.Sprintf("likesd-recover-%d", i+1)
		t0 := time.Now()
		p, err := d.startDurable(ctx, name, dataDir)
		if err != nil {
			return err
		}
		run := timed(p.cmd.Process.Pid, time.Since(t0))
		raw, _ := os.ReadFile(filepath.Join(d.dir, name+".log"))
		rec, ok := parseRecovered(raw)
		if !ok {
			return d.m.withLog(errors.New("no \"recovered the data dir\" line in likesd's log"), name)
		}
		if rec.Incomplete || rec.SnapshotLikes != snapLikes || rec.Records != uint64(tail) {
			return d.m.withLog(fmt.Errorf("likesd recovered %d snapshot likes and %d records (incomplete %v), want %d and %d",
				rec.SnapshotLikes, rec.Records, rec.Incomplete, snapLikes, tail), name)
		}
		run.log = rec
		runs = append(runs, run)
		fmt.Fprintf(os.Stderr, "recovery: %s ready after %v, %v of CPU, %v waiting for a core (recovery took %.0f ms)\n",
			name, run.ready.Round(time.Millisecond), run.cpu, run.wait.Round(time.Millisecond), rec.Took)
		if i == 0 {
			// Memory: at ready, settled (as bench-memory), and 10 s after
			// a forced GC: what recovery allocated and dropped stays in
			// the heap until a GC runs, and nothing allocates on an idle
			// node (Go forces one every 2 minutes).
			atReady, _ = procMem(p.cmd.Process.Pid)
			if err := waitTotal(ctx, p.url, data, time.Minute); err != nil {
				return d.m.withLog(err, name)
			}
			waited = d.m.waitSettled(ctx, p.cmd.Process.Pid)
			if settled, err = procMem(p.cmd.Process.Pid); err != nil {
				return err
			}
			if heap, err = p.heapAfterGC(ctx); err != nil {
				return d.m.withLog(err, name)
			}
			sleepCtx(ctx, 10*time.Second)
			if afterGC, err = procMem(p.cmd.Process.Pid); err != nil {
				return err
			}
		}
		d.m.stopAll()
	}
	if len(runs) == 0 {
		return ctx.Err()
	}

	var redis []redisResult
	if !d.noRedis {
		if redis, err = d.redisRecovery(ctx, data); err != nil {
			d.printf("Redis failed: %v\n\n", err)
			fmt.Fprintf(os.Stderr, "redis: %v\n", err)
		}
	}

	d.printf("The data dir is built in likesbench's process with `internal/wal` over `internal/store` (%v): the first %d likes of %s "+
		"go to a snapshot (the last 1,000 of them logged past a 4 KiB `SnapshotBytes`, so closing the log writes the snapshot and deletes the segment before it), "+
		"writing it took %v (%v of CPU, in-process); "+
		"then a second open with the default config recovers the snapshot alone (%v, %v of CPU, in-process) and logs the other %d likes. "+
		"Then the real `likesd --data-dir` starts alone on it (no `--join`: a lone node is ready once recovered), %d times; *ready* is from exec to `/readyz` 200 "+
		"(polled every 5 ms), *took* is the `recovered the data dir` log line's. "+
		"Redis gets the same %d likes (`redis-cli --pipe`, one SADD each) and is restarted on each file, %d times; *ready* is from exec until PING answers PONG and `INFO persistence` says `loading:0`. "+
		"CPU is the process's utime + stime when it was ready (every thread; 10 ms ticks); *waiting for a core* sums its threads' run-queue wait (`/proc/PID/task/*/schedstat`) until then: "+
		"on this shared machine most of the wall time is that wait, so compare CPU.\n\n",
		b.took.Round(time.Second), snapLikes, data.name, b.snapshotWrite.Round(time.Millisecond), b.writeCPU.Round(10*time.Millisecond), b.snapshotOpen.Round(time.Millisecond), b.openCPU.Round(10*time.Millisecond), tail, d.restarts, data.total, d.restarts)
	d.printf("| system | files | bytes | B/like | ready after, each start (wall) | CPU until ready | waiting for a core meanwhile | recovery took (log) | target |\n|---|---|---|---|---|---|---|---|---|\n")
	ready, cpu, wait, worst := cells(runs)
	var tooks []string
	for _, r := range runs {
		tooks = append(tooks, fmt.Sprintf("%.2f", r.log.Took/1000))
	}
	d.printf("| likesd `--data-dir` | snapshot (%d likes) + log (%d likes) | %s + %s | %.2f + %.2f | **%s** | %s | %s | %s s | ready ≤ 3 s: %s |\n",
		snapLikes, tail, mib(b.snapshotBytes), mib(b.logBytes), float64(b.snapshotBytes)/snapLikes, float64(b.logBytes)/float64(tail),
		ready, cpu, wait, strings.Join(tooks, ", "), okMiss(worst <= 3*time.Second))
	for _, r := range redis {
		ready, cpu, wait, _ := cells(r.runs)
		d.printf("| redis-server | %s | %s | %.2f | %s | %s | %s | — | — |\n", r.name, mib(r.bytes), float64(r.bytes)/float64(data.total), ready, cpu, wait)
	}
	d.printf("\nData dir as recovered: %s (snapshot of generation 1; the log's segments are taken over, copied under each new generation's name, at every start).\n\n",
		strings.Join(b.files, ", "))

	snapPer, logPer := float64(b.snapshotBytes)/snapLikes, float64(b.logBytes)/float64(tail)
	per := func(m mem) float64 { return float64(m.rss-idleMem.rss) / float64(data.total) }
	// The target compares with the lowest of the settled figures: the
	// memory a node holding these likes keeps for good.
	rss := min(per(settled), per(afterGC))
	d.printf("### Disk bytes per like\n\n"+
		"Beside the first recovered likesd's memory, per like over the idle process (an empty data dir: %s): RSS at ready %.2f B, "+
		"settled %.2f B (after %v: at least 60 s, then under 1%% change over 20 s), **%.2f B** 10 s after a forced GC "+
		"(`/debug/pprof/heap?gc=1`; its heap then %.2f B), peak %.2f B (VmHWM). The target is checked against the lowest RSS (%.2f B); "+
		"bench-memory's S2 (loaded over HTTP, settled) is the other reference.\n\n"+
		"| what | bytes | likes | B/like | ÷ RSS per like (%.2f B) | target |\n|---|---|---|---|---|---|\n",
		mib(idleMem.rss), per(atReady), per(settled), waited.Round(time.Second), per(afterGC), float64(heap)/float64(data.total),
		float64(settled.hwm-idleMem.rss)/float64(data.total), rss, rss)
	d.printf("| snapshot | %d | %d | **%.2f** | **%s** | ≤ 1.2: %s |\n", b.snapshotBytes, snapLikes, snapPer, ratioText(snapPer, rss, 2),
		okMiss(rss > 0 && snapPer <= 1.2*rss))
	d.printf("| log tail | %d | %d | **%.2f** | %s | — |\n\n", b.logBytes, tail, logPer, ratioText(logPer, rss, 2))
	return nil
}

// startDurable starts a lone likesd on dataDir, logging at info (the
// recovery line) and serving pprof (a forced GC), and waits for /readyz 200, polling every 5 ms.
func (d *durableBench) startDurable(ctx context.Context, name, dataDir string) (likesdProc, error) {
	p := likesdProc{url: "http://" + freeAddr(), gossip: freeAddr(), debug: freeAddr()}
	cmd, err := d.m.start(ctx, name, d.likesd, "--http-addr", strings.TrimPrefix(p.url, "http://"), "--gossip-addr", p.gossip,
		"--debug-addr", p.debug, "--log-level", "info", "--node-name", name, "--data-dir", dataDir)
	if err != nil {
		return p, err
	}
	p.cmd = cmd
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if resp, err := hc.Get(p.url + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p, d.m.withLog(errors.New("never ready within 2m"), name)
}

// --- Redis -----------------------------------------------------------------

// redisResult is one kind of Redis file and its timed starts.
type redisResult struct {
	name  string
	bytes int64
	runs  []recoveryRun
}

// redisFile is a directory holding one kind of Redis file, and the flags
// that make redis-server load it.
type redisFile struct {
	name, dir string
	flags     []string
}

// redisRecovery writes the data as an RDB, as an AOF rewritten to
// commands, as an AOF rewritten with an RDB preamble (Redis 7's default)
// and as a plain AOF of every SADD, then times redis-server loading each.
func (d *durableBench) redisRecovery(ctx context.Context, data dataset) ([]redisResult, error) {
	files := []redisFile{
		{"RDB (`SAVE`)", filepath.Join(d.dir, "redis-rdb"), []string{"--appendonly", "no", "--dbfilename", "dump.rdb"}},
		{"AOF after `BGREWRITEAOF`, `aof-use-rdb-preamble no` (commands)", filepath.Join(d.dir, "redis-aof-commands"), []string{"--appendonly", "yes"}},
		{"AOF after `BGREWRITEAOF`, `aof-use-rdb-preamble yes` (an RDB base)", filepath.Join(d.dir, "redis-aof-preamble"), []string{"--appendonly", "yes"}},
		{"AOF of every SADD, no rewrite", filepath.Join(d.dir, "redis-aof-plain"), []string{"--appendonly", "yes"}},
	}
	for _, f := range files {
		if err := os.MkdirAll(f.dir, 0o755); err != nil {
			return nil, err
		}
	}

	// One load, then SAVE and two rewrites, each copied aside.
	fmt.Fprintf(os.Stderr, "redis: loading %d likes\n", data.total)
	r, err := d.startRedisIn(ctx, "redis-load", files[0].dir, "--appendonly", "no", "--dbfilename", "dump.rdb")
	if err != nil {
		return nil, err
	}
	if err := d.m.loadRedis(ctx, r.port, data); err != nil {
		return nil, err
	}
	if _, err := redisDo(ctx, r.addr(), "SAVE"); err != nil {
		return nil, err
	}
	rewrite := func(preamble string, to string, start ...string) error {
		if _, err := redisDo(ctx, r.addr(), "CONFIG", "SET", "aof-use-rdb-preamble", preamble); err != nil {
			return err
		}
		if _, err := redisDo(ctx, r.addr(), start...); err != nil {
			return err
		}
		if err := waitRewrite(ctx, r.addr()); err != nil {
			return err
		}
		return copyDir(filepath.Join(files[0].dir, "appendonlydir"), filepath.Join(to, "appendonlydir"))
	}
	// Turning the AOF on rewrites it from the data set.
	if err := rewrite("no", files[1].dir, "CONFIG", "SET", "appendonly", "yes"); err != nil {
		return nil, fmt.Errorf("AOF rewrite (commands): %w", err)
	}
	if err := rewrite("yes", files[2].dir, "BGREWRITEAOF"); err != nil {
		return nil, fmt.Errorf("AOF rewrite (RDB preamble): %w", err)
	}
	d.m.stopAll()
	_ = os.RemoveAll(filepath.Join(files[0].dir, "appendonlydir")) // the RDB's directory holds the RDB only

	// The plain AOF: every SADD appended, automatic rewrites off.
	fmt.Fprintf(os.Stderr, "redis: loading %d likes with appendonly yes\n", data.total)
	r, err = d.startRedisIn(ctx, "redis-load-aof", files[3].dir, "--appendonly", "yes", "--auto-aof-rewrite-percentage", "0")
	if err != nil {
		return nil, err
	}
	if err := d.m.loadRedis(ctx, r.port, data); err != nil {
		return nil, err
	}
	d.m.stopAll()

	var out []redisResult
	for _, f := range files {
		res := redisResult{name: f.name}
		if res.bytes, err = dirBytes(f.dir); err != nil {
			return out, err
		}
		for i := 0; i < d.restarts; i++ {
			t0 := time.Now()
			r, err := d.startRedisIn(ctx, fmt.Sprintf("redis-%s-%d", filepath.Base(f.dir), i+1), f.dir, f.flags...)
			if err != nil {
				return out, err
			}
			res.runs = append(res.runs, timed(r.cmd.Process.Pid, time.Since(t0)))
			if i == 0 {
				if n, err := redisDo(ctx, r.addr(), "DBSIZE"); err != nil || n != strconv.Itoa(data.posts) {
					d.m.stopAll()
					return out, fmt.Errorf("%s: DBSIZE %q (%v), want %d", f.name, n, err, data.posts)
				}
			}
			d.m.stopAll()
			run := res.runs[i]
			fmt.Fprintf(os.Stderr, "redis: %s ready after %v, %v of CPU, %v waiting for a core\n", f.name, run.ready.Round(time.Millisecond), run.cpu, run.wait.Round(time.Millisecond))
		}
		out = append(out, res)
	}
	return out, nil
}

// startRedisIn starts redis-server on dir with no RDB save points (a
// stop writes nothing) and waits until it serves.
func (d *durableBench) startRedisIn(ctx context.Context, name, dir string, flags ...string) (redisProc, error) {
	addr := freeAddr()
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	args := append([]string{"--bind", "127.0.0.1", "--port", port, "--save", "", "--dir", dir, "--daemonize", "no",
		"--protected-mode", "yes", "--appenddirname", "appendonlydir"}, flags...)
	cmd, err := d.m.start(ctx, name, d.redisServer, args...)
	if err != nil {
		return redisProc{}, err
	}
	r := redisProc{cmd: cmd, port: port, cli: d.redisCli}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if redisServes(r.addr()) {
			return r, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r, d.m.withLog(errors.New("redis-server never served within 5m"), name)
}

func (r redisProc) addr() string { return "127.0.0.1:" + r.port }

// redisServes reports whether the server at addr answers PING (it answers
// -LOADING while it loads) and says it is not loading.
func redisServes(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$11\r\npersistence\r\n")); err != nil {
		return false
	}
	br := bufio.NewReader(c)
	pong, err := readReply(br)
	if err != nil || pong != "PONG" {
		return false
	}
	info, err := readReply(br)
	return err == nil && infoField(info, "loading") == "0"
}

// redisDo sends one command and returns its reply as text (an error reply
// as an error). It waits up to 10 minutes: SAVE blocks.
func redisDo(ctx context.Context, addr string, args ...string) (string, error) {
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
	if _, err := c.Write(appendCommand(nil, args...)); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(c))
}

// appendCommand appends args as a RESP array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// readReply reads one RESP reply that is a simple string, an error, an
// integer or a bulk string.
func readReply(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redis: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < -1 || n > 64<<20 {
			return "", fmt.Errorf("redis: bad bulk length %q", line)
		}
		if n == -1 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("redis: unexpected reply %q", line)
}

// infoField is a field of an INFO reply ("" when absent).
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// waitRewrite waits (up to 10 minutes) until no AOF rewrite runs or is
// scheduled, and fails if the last one failed.
func waitRewrite(ctx context.Context, addr string) error {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		info, err := redisDo(ctx, addr, "INFO", "persistence")
		if err != nil {
			return err
		}
		if infoField(info, "aof_rewrite_in_progress") == "0" && infoField(info, "aof_rewrite_scheduled") == "0" {
			if s := infoField(info, "aof_last_bgrewrite_status"); s != "ok" {
				return fmt.Errorf("AOF rewrite status %q", s)
			}
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("AOF rewrite not done within 10m")
}

// copyDir copies the regular files of from into to.
func copyDir(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), raw, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// dirBytes sums the sizes of the regular files under dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		info, err := e.Info()
		n += info.Size()
		return err
	})
	return n, err
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// diskOf names the file system dir is on, from /proc/mounts: the longest
// mount point that prefixes it.
func diskOf(dir string) string {
	raw, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return dir
	}
	best, what := "", dir
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, what = mp, fmt.Sprintf("`%s` (%s on %s, mounted at %s)", dir, f[2], f[0], mp)
		}
	}
	return what
}
