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
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// memBench is `likesbench memory`: one likesd and one redis-server side by
// side on loopback, each dataset loaded into both, memory measured once it
// settles. Every process it starts is killed when it returns (and by the
// kernel if likesbench itself dies: Pdeathsig), every loop is bounded by
// the dataset or a deadline, and the whole run by --timeout.
type memBench struct {
	likesd, redisServer, redisCli string
	extra                         []string
	settle                        time.Duration
	workers                       int
	profiles                      string
	noRedis                       bool
	dir                           string
	procs                         []*exec.Cmd
	out                           bytes.Buffer
}

const (
	memStart = "<!-- bench-memory:start -->"
	memEnd   = "<!-- bench-memory:end -->"
	batchMax = 10_000 // likes per POST /v1/likes, the API's limit
)

func cmdMemory(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("memory", flag.ContinueOnError)
	b := &memBench{}
	var outFile, which, extra string
	var timeout time.Duration
	var syncTest bool
	fs.StringVar(&b.likesd, "likesd", "bin/likesd", "the likesd binary to measure")
	fs.StringVar(&b.redisServer, "redis-server", "redis-server", "the redis-server binary")
	fs.StringVar(&b.redisCli, "redis-cli", "redis-cli", "the redis-cli binary (loads Redis with --pipe)")
	fs.StringVar(&which, "datasets", "S1,S2,S3,S4", "comma-separated datasets to run")
	fs.StringVar(&outFile, "out", "", "markdown file whose bench-memory section is replaced (appended if absent); default stdout only")
	fs.StringVar(&extra, "likesd-flags", "", "extra flags for every likesd, space-separated")
	fs.DurationVar(&b.settle, "settle", 3*time.Minute, "longest wait for RSS to settle after a load (settled: at least 60 s, then under 1% change over 20 s)")
	fs.IntVar(&b.workers, "workers", 2, "concurrent POST /v1/likes requests")
	fs.StringVar(&b.profiles, "heap-profiles", "", "directory to save each settled likesd's heap profile in (empty: none)")
	fs.BoolVar(&b.noRedis, "no-redis", false, "skip Redis (tuning runs: the Redis columns stay empty)")
	fs.BoolVar(&syncTest, "sync", true, "also run 3 nodes with S2 and measure a fresh node's sync")
	fs.DurationVar(&timeout, "timeout", 60*time.Minute, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b.extra = strings.Fields(extra)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	if b.dir, err = os.MkdirTemp("", "likesbench-memory"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	defer b.stopAll()

	redisVersion, _ := exec.Command(b.redisServer, "--version").Output()
	likesdVersion, _ := exec.Command(b.likesd, "--version").Output()
	b.printf("%s\n## Memory per like: likesd beside Redis (`make bench-memory`)\n\n"+
		"Run %s on %s, %d cores shared with other work; likesd `%s` (%s) %s; %s.\n"+
		"Command: `likesbench memory --datasets %s --settle %v --workers %d --likesd-flags '%s'`.\n"+
		"Each dataset is loaded into a fresh likesd (POST /v1/likes, %d likes per request, %d requests in flight) and then into a fresh redis-server (`redis-cli --pipe`, one SADD per like), one after the other, both processes running side by side on 127.0.0.1.\n"+
		"Bytes per like are the growth over the idle process: (RSS after settling − RSS before loading) / likes. "+
		"Heap is Go's heap_alloc after a forced GC (/debug/pprof/heap?gc=1). Peak is VmHWM once settled: the highest RSS of the load and of the trim after it. Redis's `used_memory` growth in brackets.\n\n",
		memStart, time.Now().UTC().Format(time.RFC3339), hostCPU(), runtime.NumCPU(), b.likesd, strings.TrimSpace(string(likesdVersion)), strings.Join(b.extra, " "),
		strings.TrimSpace(string(redisVersion)), which, b.settle, b.workers, extra, batchMax, b.workers)
	b.printf("| data | likes | likesd load | likesd RSS B/like (settled) | heap B/like | peak ÷ settled | Redis load | Redis RSS B/like [used_memory] | likesd ÷ Redis | target RSS ≤ min(id+8, 16) and ≤ ¼ Redis (½ for UUIDs) |\n|---|---|---|---|---|---|---|---|---|---|\n")

	want := map[string]bool{}
	for _, n := range strings.Split(which, ",") {
		want[strings.TrimSpace(n)] = true
	}
	var s2 *dataset
	for _, d := range datasets() {
		if d.name == "S2" {
			s2 = &d
		}
		if !want[d.name] {
			continue
		}
		row, err := b.runDataset(ctx, d)
		b.stopAll()
		if err != nil {
			b.printf("| %s | %d | failed: %v |\n", d.name, d.total, err)
			fmt.Fprintf(os.Stderr, "%s: %v\n", d.name, err)
			continue
		}
		b.printf("%s\n", row)
	}
	for _, d := range datasets() {
		b.printf("\n%s: %s.", d.name, d.desc)
	}
	b.printf(" Users are drawn from a pool of %d (distinct within a post).\n\n", userPool)
	if syncTest && s2 != nil {
		if err := b.runSync(ctx, *s2); err != nil {
			b.printf("3-node sync with S2 failed: %v\n\n", err)
		}
		b.stopAll()
	}
	b.printf("%s\n", memEnd)
	fmt.Print(b.out.String())
	if outFile == "" {
		return ctx.Err()
	}
	return replaceSection(outFile, b.out.String())
}

func (b *memBench) printf(format string, args ...any) { fmt.Fprintf(&b.out, format, args...) }

func (b *memBench) runDataset(ctx context.Context, d dataset) (string, error) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", d.name, d.desc)
	node, err := b.startLikesd(ctx, "likesd-"+d.name, "")
	if err != nil {
		return "", err
	}
	redis, err := b.startRedis(ctx, d.name)
	if err != nil {
		return "", err
	}
	time.Sleep(2 * time.Second) // idle figures after start-up settles
	idle, _ := procMem(node.cmd.Process.Pid)
	redisIdle, _ := procMem(redis.cmd.Process.Pid)
	redisUsedIdle, _ := redis.usedMemory(ctx)

	start := time.Now()
	added, err := b.loadLikesd(ctx, node.url, d)
	if err != nil {
		return "", b.withLog(err, "likesd-"+d.name)
	}
	likesdLoad := time.Since(start)
	peak, _ := procMem(node.cmd.Process.Pid)
	if err := waitTotal(ctx, node.url, d, time.Minute); err != nil { // retried batches count as existing: check the counts
		return "", err
	}
	fmt.Fprintf(os.Stderr, "  likesd: %d likes in %v (%.0f/s), peak rss %s\n", added, likesdLoad.Round(time.Millisecond), float64(d.total)/likesdLoad.Seconds(), mib(peak.hwm))

	start = time.Now()
	if !b.noRedis {
		if err := b.loadRedis(ctx, redis.port, d); err != nil {
			return "", err
		}
	}
	redisLoad := time.Since(start)
	fmt.Fprintf(os.Stderr, "  redis: loaded in %v\n", redisLoad.Round(time.Millisecond))

	waited := b.waitSettled(ctx, node.cmd.Process.Pid, redis.cmd.Process.Pid)
	settled, err := procMem(node.cmd.Process.Pid)
	if err != nil {
		return "", err
	}
	if m, err := node.metrics(ctx); err == nil { // where the settled RSS is, before the forced GC
		fmt.Fprintf(os.Stderr, "  likesd settled: heap in use %s (allocated %s), idle not returned %s, GC metadata %s, stacks %s, %0.f GCs\n",
			mib(int64(m["go_memstats_heap_inuse_bytes"])), mib(int64(m["go_memstats_heap_alloc_bytes"])),
			mib(int64(m["go_memstats_heap_idle_bytes"]-m["go_memstats_heap_released_bytes"])),
			mib(int64(m["go_memstats_gc_sys_bytes"])), mib(int64(m["go_memstats_stack_sys_bytes"])), m["go_gc_duration_seconds_count"])
	}
	heap, err := node.heapAfterGC(ctx)
	if err != nil {
		return "", err
	}
	if b.profiles != "" {
		if prof, err := get(ctx, "http://"+node.debug+"/debug/pprof/heap"); err == nil {
			_ = os.WriteFile(filepath.Join(b.profiles, d.name+".heap.pb.gz"), prof, 0o644)
		}
	}
	redisSettled, _ := procMem(redis.cmd.Process.Pid)
	redisUsed, err := redis.usedMemory(ctx)
	if err != nil {
		return "", err
	}
	per := func(v int64) float64 { return float64(v) / float64(d.total) }
	rss, rssRedis := per(settled.rss-idle.rss), per(redisSettled.rss-redisIdle.rss)
	ratio := rss / rssRedis
	limit := float64(min(d.idBytes+8, 16))
	share := 0.25
	if d.idBytes > 16 {
		limit, share = float64(d.idBytes+8), 0.5
	}
	// The peak is VmHWM once settled: the load's, or the trim's after it
	// (a compaction copies the replica) if that went higher.
	peakRatio := float64(settled.hwm-idle.rss) / float64(settled.rss-idle.rss)
	verdict := fmt.Sprintf("RSS %s, Redis share %s, peak %s",
		okMiss(rss <= limit), okMiss(ratio <= share), okMiss(peakRatio <= 1.5))
	fmt.Fprintf(os.Stderr, "  settled after %v: likesd %.1f B/like (heap %.1f), peak rss %s, redis %.1f B/like\n", waited.Round(time.Second), rss, per(heap), mib(settled.hwm), rssRedis)
	return fmt.Sprintf("| %s | %d | %.1f s (%.0f/s) | **%.1f** (%s → %s, settled in %v) | %.1f | %.2f (peak %s) | %.1f s | %.1f [%.1f] | **%.2f** | %s |",
		d.name, d.total, likesdLoad.Seconds(), float64(d.total)/likesdLoad.Seconds(), rss, mib(idle.rss), mib(settled.rss), waited.Round(time.Second),
		per(heap), peakRatio, mib(settled.hwm), redisLoad.Seconds(), rssRedis, per(redisUsed-redisUsedIdle), ratio, verdict), nil
}

func okMiss(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// withLog adds the tail of a child's log to err.
func (b *memBench) withLog(err error, name string) error {
	raw, _ := os.ReadFile(filepath.Join(b.dir, name+".log"))
	if len(raw) > 2000 {
		raw = raw[len(raw)-2000:]
	}
	return fmt.Errorf("%w; log tail: %s", err, raw)
}

// runSync loads S2 into two nodes, then starts a third and measures how
// long it takes to hold every like, and what it received.
func (b *memBench) runSync(ctx context.Context, d dataset) error {
	fmt.Fprintf(os.Stderr, "sync: 3 nodes with %s\n", d.name)
	n1, err := b.startLikesd(ctx, "sync-n1", "")
	if err != nil {
		return err
	}
	n2, err := b.startLikesd(ctx, "sync-n2", n1.gossip)
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := b.loadLikesd(ctx, n1.url, d); err != nil {
		return err
	}
	load := time.Since(start)
	if err := waitTotal(ctx, n2.url, d, 5*time.Minute); err != nil {
		return fmt.Errorf("second node: %w", err)
	}
	replicated := time.Since(start)
	start = time.Now()
	n3, err := b.startLikesd(ctx, "sync-n3", n1.gossip)
	if err != nil {
		return err
	}
	if err := waitTotal(ctx, n3.url, d, 5*time.Minute); err != nil {
		return fmt.Errorf("fresh node: %w", err)
	}
	syncTime := time.Since(start)
	io3, _ := procIO(n3.cmd.Process.Pid)
	m, err := n3.metrics(ctx)
	if err != nil {
		return err
	}
	for _, name := range []string{"likesd_sync_bytes_received_total", "likesd_fastpath_bytes_received_total"} {
		if _, ok := m[name]; !ok { // a renamed metric must not read as 0 bytes
			return fmt.Errorf("fresh node: no %s in /metrics", name)
		}
	}
	repairIn := m["likesd_sync_bytes_received_total"]
	other := m["likesd_fastpath_bytes_received_total"]
	b.printf("3 nodes, %s: loaded into n1 in %.1f s, all on n2 %.1f s after the load began. "+
		"A fresh n3 joining n1 held all %d likes **%.1f s** after its process started (ready included), "+
		"having received **%s** of anti-entropy messages (%.2f B per like) plus %s of fast-path frames; "+
		"the process read %s in all (rchar, sockets and files).\n\n",
		d.name, load.Seconds(), replicated.Seconds(), d.total, syncTime.Seconds(), mib(int64(repairIn)), repairIn/float64(d.total),
		mib(int64(other)), mib(io3))
	return nil
}

// waitTotal polls the sum of the dataset's post counts on url until it is
// the dataset's total, within limit.
func waitTotal(ctx context.Context, url string, d dataset, limit time.Duration) error {
	posts := make([]string, d.posts)
	for k := range posts {
		posts[k] = postID(k)
	}
	deadline := time.Now().Add(limit)
	var got int64
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if got = total(ctx, url, posts); got == d.total {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("holds %d of %d likes after %v", got, d.total, limit)
}

type likesdProc struct {
	cmd                *exec.Cmd
	url, debug, gossip string
}

func (b *memBench) startLikesd(ctx context.Context, name, join string) (likesdProc, error) {
	p := likesdProc{url: "http://" + freeAddr(), debug: freeAddr(), gossip: freeAddr()}
	args := []string{"--http-addr", strings.TrimPrefix(p.url, "http://"), "--gossip-addr", p.gossip, "--debug-addr", p.debug,
		"--log-level", "warn", "--node-name", name}
	if join != "" {
		args = append(args, "--join", join)
	}
	cmd, err := b.start(ctx, name, b.likesd, append(args, b.extra...)...)
	if err != nil {
		return p, err
	}
	p.cmd = cmd
	return p, waitHTTP(ctx, p.url+"/readyz")
}

func (p likesdProc) metrics(ctx context.Context) (map[string]float64, error) {
	body, err := get(ctx, p.url+"/metrics")
	if err != nil {
		return nil, err
	}
	return parseMetrics(body), nil
}

// heapAfterGC forces a GC through pprof's heap endpoint, then reads the heap.
func (p likesdProc) heapAfterGC(ctx context.Context) (int64, error) {
	if _, err := get(ctx, "http://"+p.debug+"/debug/pprof/heap?gc=1"); err != nil {
		return 0, err
	}
	m, err := p.metrics(ctx)
	if err != nil {
		return 0, err
	}
	return int64(m["go_memstats_heap_alloc_bytes"]), nil
}

type redisProc struct {
	cmd  *exec.Cmd
	port string
	cli  string
}

func (b *memBench) startRedis(ctx context.Context, name string) (redisProc, error) {
	addr := freeAddr()
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	cmd, err := b.start(ctx, "redis-"+name, b.redisServer, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", b.dir, "--daemonize", "no", "--protected-mode", "yes")
	if err != nil {
		return redisProc{}, err
	}
	r := redisProc{cmd: cmd, port: port, cli: b.redisCli}
	for i := 0; i < 100; i++ {
		if out, err := exec.CommandContext(ctx, b.redisCli, "-p", port, "ping").Output(); err == nil && strings.TrimSpace(string(out)) == "PONG" {
			return r, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return r, errors.New("redis-server never answered PING")
}

func (r redisProc) usedMemory(ctx context.Context) (int64, error) {
	out, err := exec.CommandContext(ctx, r.cli, "-p", r.port, "info", "memory").Output()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("no used_memory in INFO")
}

// start runs a child that the kernel kills if likesbench dies, logging to
// the run's directory.
func (b *memBench) start(ctx context.Context, name, bin string, args ...string) (*exec.Cmd, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(b.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	b.procs = append(b.procs, cmd)
	return cmd, nil
}

// stopAll interrupts every child, then kills what is left after 10 s.
func (b *memBench) stopAll() {
	stopProcs(b.procs)
	b.procs = nil
}

// loadLikesd posts d in batches of batchMax with b.workers requests in
// flight and returns how many likes were new.
func (b *memBench) loadLikesd(ctx context.Context, url string, d dataset) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bodies := make(chan []byte, b.workers)
	go func() {
		defer close(bodies)
		var buf []byte
		n := 0
		for post, user := range d.likes() {
			if n == 0 {
				buf = append(make([]byte, 0, batchMax*48), `{"likes":[`...)
			} else {
				buf = append(buf, ',')
			}
			buf = append(buf, `{"post":"`...)
			buf = append(buf, post...)
			buf = append(buf, `","user":"`...)
			buf = append(buf, user...)
			buf = append(buf, `"}`...)
			if n++; n == batchMax {
				select {
				case bodies <- append(buf, "]}"...):
				case <-ctx.Done():
					return
				}
				n = 0
			}
		}
		if n > 0 {
			select {
			case bodies <- append(buf, "]}"...):
			case <-ctx.Done():
			}
		}
	}()
	client := &http.Client{Timeout: 2 * time.Minute}
	var mu sync.Mutex
	var added int64
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < b.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range bodies {
				// A batch is idempotent (a set of likes): a request cut by a
				// server timeout on a loaded machine is sent again, at most 3 times.
				var n int64
				var err error
				for try := 0; try < 3; try++ {
					if n, err = postBatch(ctx, client, url, body); err == nil || ctx.Err() != nil || errors.Is(err, errItems) {
						break
					}
					fmt.Fprintf(os.Stderr, "  retrying a batch: %v\n", err)
				}
				mu.Lock()
				added += n
				if err != nil && firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return added, firstErr
}

var errItems = errors.New("POST /v1/likes: item errors")

func postBatch(ctx context.Context, client *http.Client, url string, body []byte) (int64, error) {
	status, raw, err := post(ctx, client, url+"/v1/likes", body)
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("POST /v1/likes: %d: %.300s", status, raw)
	}
	var reply struct {
		Added    int64             `json:"added"`
		Existing int64             `json:"existing"`
		Errors   []json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		return 0, fmt.Errorf("POST /v1/likes reply: %w: %.300s", err, raw)
	}
	if len(reply.Errors) > 0 {
		return reply.Added, fmt.Errorf("%w: %d, first %s", errItems, len(reply.Errors), reply.Errors[0])
	}
	return reply.Added, nil
}

// loadRedis pipes one SADD per like into redis-cli --pipe.
func (b *memBench) loadRedis(ctx context.Context, port string, d dataset) error {
	cmd := exec.CommandContext(ctx, b.redisCli, "-p", port, "--pipe")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	w := bufio.NewWriterSize(in, 1<<20)
	var buf []byte
	for post, user := range d.likes() {
		buf = append(buf[:0], "*3\r\n$4\r\nSADD\r\n$"...)
		buf = strconv.AppendInt(buf, int64(len(post)), 10)
		buf = append(append(append(buf, "\r\n"...), post...), "\r\n$"...)
		buf = strconv.AppendInt(buf, int64(len(user)), 10)
		buf = append(append(append(buf, "\r\n"...), user...), "\r\n"...)
		if _, err := w.Write(buf); err != nil {
			break
		}
	}
	werr := w.Flush()
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("redis-cli --pipe: %w: %s", err, out.String())
	}
	if werr != nil {
		return werr
	}
	if !strings.Contains(out.String(), "errors: 0, replies: "+strconv.FormatInt(d.total, 10)) {
		return fmt.Errorf("redis-cli --pipe: %s", strings.TrimSpace(out.String()))
	}
	return nil
}

// waitSettled samples both processes' RSS every 2 s until neither moved by
// more than 1% over the last 20 s, or b.settle passed; it returns the wait.
func (b *memBench) waitSettled(ctx context.Context, pids ...int) time.Duration {
	start := time.Now()
	var hist [][]int64
	for time.Since(start) < b.settle && ctx.Err() == nil {
		var now []int64
		for _, pid := range pids {
			m, _ := procMem(pid)
			now = append(now, m.rss)
		}
		hist = append(hist, now)
		if len(hist) > 10 && time.Since(start) >= time.Minute {
			stable := true
			for i := range pids {
				lo, hi := int64(1<<62), int64(0)
				for _, h := range hist[len(hist)-11:] {
					lo, hi = min(lo, h[i]), max(hi, h[i])
				}
				if float64(hi-lo) > 0.01*float64(hi) {
					stable = false
				}
			}
			if stable {
				break
			}
		}
		time.Sleep(2 * time.Second)
	}
	return time.Since(start)
}

type mem struct{ rss, hwm int64 }

// procMem reads VmRSS and VmHWM (peak) of pid, in bytes.
func procMem(pid int) (mem, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return mem{}, err
	}
	var m mem
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = v << 10
		case "VmHWM:":
			m.hwm = v << 10
		}
	}
	return m, nil
}

// procIO is the bytes pid has read (rchar: sockets and files).
func procIO(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("no rchar")
}

func parseMetrics(body []byte) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] += v
		}
	}
	return out
}

func get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func waitHTTP(ctx context.Context, url string) error {
	for i := 0; i < 400 && ctx.Err() == nil; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s never answered 200", url)
}

// replaceSection swaps the bench-memory section of file for section, or
// appends it when the file has none.
func replaceSection(file, section string) error {
	return replaceMarked(file, memStart, memEnd, section)
}

// replaceMarked swaps the part of file from start to end (both markers
// included) for section, which carries the markers itself, or appends
// section when file has no such part. The rest of file is kept.
func replaceMarked(file, start, end, section string) error {
	raw, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.WriteFile(file, []byte(spliceMarked(string(raw), start, end, section)), 0o644)
}

// spliceMarked is replaceMarked on a document in memory.
func spliceMarked(doc, start, end, section string) string {
	i, j := strings.Index(doc, start), strings.Index(doc, end)
	if i >= 0 && j > i {
		return doc[:i] + strings.TrimRight(section, "\n") + doc[j+len(end):]
	}
	return strings.TrimRight(doc, "\n") + "\n\n" + section
}
