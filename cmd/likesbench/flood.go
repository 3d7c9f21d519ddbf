package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// flood checks issue 20's "one client cannot take it down" on one likesd
// under a memory budget: a paced reader (a fixed rate of reads whose
// answers are checked) runs alone, then beside a flood of fresh likes on
// many connections and bulk imports of random 256-byte ids, in one run.
type flood struct {
	likesd, dir  string
	extra        []string
	memLimit     int64
	phase        time.Duration
	readRate     float64
	readWorkers  int
	floodConns   int
	bulkWorkers  int
	bulkLikes    int
	readPosts    int
	likesPerPost int
	procs        []*exec.Cmd
	out          bytes.Buffer
}

func cmdFlood(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	f := &flood{}
	var outFile, extra, limit string
	fs.StringVar(&f.likesd, "likesd", "bin/likesd", "the likesd binary to measure")
	fs.StringVar(&outFile, "out", "", "also write the markdown report here")
	fs.StringVar(&limit, "memory-limit", "64MiB", "the node's --memory-limit: its memory budget (new likes get 507 past --memory-refuse-at of it)")
	fs.DurationVar(&f.phase, "phase", 15*time.Second, "length of each phase: the reader alone, then beside the flood")
	fs.Float64Var(&f.readRate, "read-rate", 1000, "the reader's fixed rate, reads per second")
	fs.IntVar(&f.readWorkers, "read-workers", 32, "the reader's connections (a tick finding none free is missed)")
	fs.IntVar(&f.floodConns, "flood-connections", 256, "connections posting fresh likes as fast as they can")
	fs.IntVar(&f.bulkWorkers, "bulk-workers", 8, "connections posting bulk imports of random 256-byte ids as fast as they can")
	fs.IntVar(&f.bulkLikes, "bulk-likes", 2000, "likes per bulk import (at most 10,000)")
	fs.StringVar(&extra, "likesd-flags", "", "extra flags for the node, space-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	n, err := parseSize(limit)
	if err != nil {
		return fmt.Errorf("--memory-limit: %w", err)
	}
	f.memLimit = n
	if f.phase <= 0 || f.phase > 5*time.Minute || f.readRate <= 0 || f.readRate > 1e5 || f.readWorkers < 1 ||
		f.floodConns < 1 || f.floodConns > 4096 || f.bulkWorkers < 0 || f.bulkWorkers > 64 || f.bulkLikes < 1 || f.bulkLikes > 10000 {
		return errors.New("want a phase of at most 5m, a read rate up to 100000/s, 1 to 4096 flood connections, 0 to 64 bulk workers of 1 to 10000 likes")
	}
	f.readPosts, f.likesPerPost = 100, 10
	f.extra = strings.Fields(extra)
	if f.dir, err = os.MkdirTemp("", "likesbench-flood"); err != nil {
		return err
	}
	defer os.RemoveAll(f.dir)
	defer f.stopAll()

	addr := freeAddr()
	base := "http://" + addr
	args = append([]string{"--http-addr", addr, "--gossip-addr", freeAddr(), "--node-name", "n1", "--memory-limit", limit}, f.extra...)
	logf, err := os.Create(filepath.Join(f.dir, "likesd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(f.likesd, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	f.procs = append(f.procs, cmd)
	if err := waitHTTP(ctx, base+"/readyz"); err != nil {
		return err
	}
	if err := f.seed(ctx, base); err != nil {
		return fmt.Errorf("seed the reader's posts: %w", err)
	}

	f.printf("Run %s on %s, %d cores (nproc), %s; likesd `%s` %s with `%s`.\n"+
		"Command: `likesbench flood --memory-limit %s --phase %v --read-rate %.0f --read-workers %d --flood-connections %d --bulk-workers %d --bulk-likes %d --likesd-flags '%s'`.\n\n",
		time.Now().UTC().Format(time.RFC3339), hostCPU(), runtime.NumCPU(), runtime.Version(), f.likesd, binVersion(f.likesd), strings.Join(args, " "),
		limit, f.phase, f.readRate, f.readWorkers, f.floodConns, f.bulkWorkers, f.bulkLikes, extra)

	mon := newRSSMonitor(cmd.Process.Pid)
	mctx, stopMon := context.WithCancel(ctx)
	monDone := make(chan struct{})
	go func() { defer close(monDone); mon.run(mctx) }()
	defer func() { stopMon(); <-monDone }()

	alone := f.read(ctx, base)
	alonePeak := mon.peak.Load()
	fmt.Fprintf(os.Stderr, "reader alone: %s\n", alone)

	// The flood runs in a process of its own, as another client would: in
	// this one its goroutines would delay the reader's own.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fctx, stopFlood := context.WithTimeout(ctx, f.phase+30*time.Second)
	defer stopFlood()
	fcmd := exec.CommandContext(fctx, self, "flood-client", "--base", base, "--duration", (f.phase + time.Second).String(),
		"--connections", strconv.Itoa(f.floodConns), "--bulk-workers", strconv.Itoa(f.bulkWorkers), "--bulk-likes", strconv.Itoa(f.bulkLikes))
	fcmd.Stderr = os.Stderr
	fcmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var fout bytes.Buffer
	fcmd.Stdout = &fout
	if err := fcmd.Start(); err != nil {
		return fmt.Errorf("flood client: %w", err)
	}
	time.Sleep(time.Second) // let the flood reach the node before the reader's second phase
	loaded := f.read(ctx, base)
	if err := fcmd.Wait(); err != nil {
		return fmt.Errorf("flood client: %w", err)
	}
	var fl floodResult
	if err := json.Unmarshal(fout.Bytes(), &fl); err != nil {
		return fmt.Errorf("flood client's report: %w", err)
	}
	fmt.Fprintf(os.Stderr, "reader beside the flood: %s\nflood: likes %v, bulk %v\n", loaded, fl.Likes.N, fl.Bulk.N)
	stopMon()
	<-monDone
	hwm := int64(0)
	if m, err := procMem(cmd.Process.Pid); err == nil {
		hwm = m.hwm
	}
	refused := refusals(ctx, base)

	f.printf("| reader (%.0f/s offered, %d connections, %v) | correct reads/s | share of alone | p50 | p99 | max | missed ticks | wrong answers | errors (429/other) |\n|---|---|---|---|---|---|---|---|---|\n",
		f.readRate, f.readWorkers, f.phase)
	f.printf("| alone | %.0f | 1.00 | %v | %v | %v | %d | %d | %d |\n", alone.rate(), us(alone.p50), us(alone.p99), us(alone.max), alone.missed, alone.wrong, alone.errors)
	share := loaded.rate() / alone.rate()
	f.printf("| beside the flood | %.0f | **%.2f** | %v | %v | %v | %d | %d | %d |\n\n", loaded.rate(), share, us(loaded.p50), us(loaded.p99), us(loaded.max), loaded.missed, loaded.wrong, loaded.errors)

	f.printf("| flood (%v) | requests | per second | 201 | 200 | 429 | 507 | other / errors |\n|---|---|---|---|---|---|---|---|\n", fl.Elapsed.Round(time.Millisecond))
	for _, k := range []struct {
		name string
		c    *statusCounts
	}{{fmt.Sprintf("fresh likes, %d connections", f.floodConns), fl.Likes}, {fmt.Sprintf("bulk imports of %d random 256-byte ids, %d connections", f.bulkLikes, f.bulkWorkers), fl.Bulk}} {
		f.printf("| %s | %d | %.0f | %d | %d | %d | %d | %d |\n", k.name, k.c.total(), float64(k.c.total())/fl.Elapsed.Seconds(),
			k.c.N[http.StatusCreated], k.c.N[http.StatusOK], k.c.N[http.StatusTooManyRequests], k.c.N[http.StatusInsufficientStorage], k.c.other())
	}
	f.printf("\nLikes stored by the flood: %d single, %d by import. ", fl.Likes.N[http.StatusCreated], fl.BulkAdded)
	f.printf("Memory: budget (--memory-limit) %s, refusing new likes past %s; RSS peak %s while the reader ran alone, **%s** in all (sampled every 50 ms; VmHWM %s): **%.0f %%** of the budget.",
		mib(f.memLimit), mib(int64(float64(f.memLimit)*0.85)), mib(alonePeak), mib(mon.peak.Load()), mib(hwm), 100*float64(max(hwm, mon.peak.Load()))/float64(f.memLimit))
	f.printf(" Node's refusal counters after the run: %s.\n\n", refusedSummary(refused))
	verdict := "met"
	if share < 0.8 {
		verdict = "missed"
	}
	f.printf("Reader beside the flood at %.2f of its rate alone (target ≥ 0.80): **%s**; ", share, verdict)
	if max(hwm, mon.peak.Load()) < f.memLimit {
		f.printf("RSS under the budget: **met**.\n")
	} else {
		f.printf("RSS under the budget: **missed**.\n")
	}
	fmt.Print(f.out.String())
	if outFile != "" {
		return os.WriteFile(outFile, f.out.Bytes(), 0o644)
	}
	return nil
}

// refusals reads the node's refusal counters, labels kept.
func refusals(ctx context.Context, base string) []string {
	body, err := get(ctx, base+"/metrics")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "likesd_http_refused_total") {
			out = append(out, "`"+line+"`")
		}
	}
	return out
}

func refusedSummary(lines []string) string {
	if len(lines) == 0 {
		return "none read"
	}
	return strings.Join(lines, ", ")
}

func (f *flood) printf(format string, args ...any) { fmt.Fprintf(&f.out, format, args...) }

func (f *flood) stopAll() {
	stopProcs(f.procs)
	f.procs = nil
}

// seed stores the likes the reader checks: readPosts posts of likesPerPost
// users each, in one import.
func (f *flood) seed(ctx context.Context, base string) error {
	var likes []map[string]string
	for p := 0; p < f.readPosts; p++ {
		for u := 0; u < f.likesPerPost; u++ {
			likes = append(likes, map[string]string{"post": "read" + strconv.Itoa(p), "user": "u" + strconv.Itoa(u)})
		}
	}
	body, _ := json.Marshal(map[string]any{"likes": likes})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/likes", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, raw)
	}
	return nil
}

type readResult struct {
	elapsed                   time.Duration
	ok, wrong, errors, missed int64
	throttled                 int64
	p50, p99, max             time.Duration
}

func (r readResult) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

func (r readResult) String() string {
	return fmt.Sprintf("%.0f correct reads/s, p50 %v p99 %v max %v, missed %d, wrong %d, errors %d (429: %d)",
		r.rate(), us(r.p50), us(r.p99), us(r.max), r.missed, r.wrong, r.errors, r.throttled)
}

// read runs the paced reader for one phase: a tick every 1/readRate s
// handed to a free worker (missed when none is free); each read is a GET
// of one of the seeded posts whose count must be likesPerPost.
func (f *flood) read(ctx context.Context, base string) readResult {
	ctx, cancel := context.WithTimeout(ctx, f.phase)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: f.readWorkers, MaxConnsPerHost: f.readWorkers}}
	defer client.CloseIdleConnections()
	tickets := make(chan struct{})
	var res readResult
	var mu sync.Mutex
	var lats []time.Duration
	var wg sync.WaitGroup
	for w := 0; w < f.readWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			var ok, wrong, errs, throttled int64
			defer func() {
				mu.Lock()
				lats = append(lats, mine...)
				res.ok += ok
				res.wrong += wrong
				res.errors += errs
				res.throttled += throttled
				mu.Unlock()
			}()
			for i := w; ; i += f.readWorkers {
				select {
				case <-ctx.Done():
					return
				case <-tickets:
				}
				post := "read" + strconv.Itoa(i%f.readPosts)
				start := time.Now()
				status, count, err := getCount(ctx, client, base, post)
				switch {
				case ctx.Err() != nil:
					return // cut off by the end of the phase: not counted
				case err != nil:
					errs++
				case status == http.StatusTooManyRequests:
					throttled++
					errs++
				case status != http.StatusOK:
					errs++
				case count != f.likesPerPost:
					wrong++
				default:
					ok++
					mine = append(mine, time.Since(start))
				}
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / f.readRate)
	next := start
	var missed int64
dispatch:
	for {
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				break dispatch
			case <-time.After(d):
			}
		}
		select {
		case <-ctx.Done():
			break dispatch
		case tickets <- struct{}{}:
		default:
			missed++
		}
	}
	res.elapsed = time.Since(start)
	wg.Wait()
	res.missed = missed
	slices.Sort(lats)
	res.p50, res.p99 = quantileOf(lats, 0.5), quantileOf(lats, 0.99)
	if len(lats) > 0 {
		res.max = lats[len(lats)-1]
	}
	return res
}

func quantileOf(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func getCount(ctx context.Context, client *http.Client, base, post string) (int, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/posts/"+post+"/likes", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var reply struct {
		Post  string `json:"post"`
		Count int    `json:"count"`
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp.StatusCode, 0, err
	}
	if err := json.Unmarshal(raw, &reply); err != nil || reply.Post != post {
		return resp.StatusCode, -1, err
	}
	return resp.StatusCode, reply.Count, nil
}

type statusCounts struct {
	mu sync.Mutex
	N  map[int]int64 `json:"statuses"`
}

func (c *statusCounts) add(status int) {
	c.mu.Lock()
	if c.N == nil {
		c.N = map[int]int64{}
	}
	c.N[status]++
	c.mu.Unlock()
}

func (c *statusCounts) total() (t int64) {
	for _, v := range c.N {
		t += v
	}
	return t
}

func (c *statusCounts) other() (t int64) {
	for k, v := range c.N {
		switch k {
		case http.StatusCreated, http.StatusOK, http.StatusTooManyRequests, http.StatusInsufficientStorage:
		default:
			t += v
		}
	}
	return t
}

type floodResult struct {
	Elapsed     time.Duration `json:"elapsed_ns"`
	Likes, Bulk *statusCounts
	BulkAdded   int64 `json:"bulk_added"`
}

// flood posts fresh likes on floodConns connections and bulk imports of
// random 256-byte ids on bulkWorkers, each as fast as it is answered, until
// ctx ends. A refused request (429, 507) is sent again at once: a hostile
// client does not back off.
func runFlood(ctx context.Context, base string, conns, bulkWorkers, bulkLikes int) floodResult {
	res := floodResult{Likes: &statusCounts{N: map[int]int64{}}, Bulk: &statusCounts{N: map[int]int64{}}}
	tr := &http.Transport{MaxIdleConnsPerHost: conns + bulkWorkers, MaxConnsPerHost: conns + bulkWorkers}
	client := &http.Client{Timeout: 30 * time.Second, Transport: tr}
	defer client.CloseIdleConnections()
	var added atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				body := `{"user":"f` + strconv.Itoa(w) + "n" + strconv.Itoa(n) + `"}`
				status, _, _ := post(ctx, client, base+"/v1/posts/flood"+strconv.Itoa(n%10000)+"/likes", []byte(body))
				if ctx.Err() != nil {
					return
				}
				res.Likes.add(status)
			}
		}()
	}
	for w := 0; w < bulkWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				body := randomImport(rng, bulkLikes)
				status, raw, _ := post(ctx, client, base+"/v1/likes", body)
				if ctx.Err() != nil {
					return
				}
				res.Bulk.add(status)
				if status == http.StatusOK || status == http.StatusAccepted {
					var reply struct {
						Added int64 `json:"added"`
					}
					if json.Unmarshal(raw, &reply) == nil {
						added.Add(reply.Added)
					}
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.BulkAdded = added.Load()
	return res
}

// cmdFloodClient is flood's hostile client, in a process of its own: it
// floods --base for --duration and prints what it got as JSON.
func cmdFloodClient(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("flood-client", flag.ContinueOnError)
	base := fs.String("base", "", "the node's URL")
	d := fs.Duration("duration", 10*time.Second, "how long to flood (at most 5m)")
	conns := fs.Int("connections", 256, "connections posting fresh likes")
	bulkWorkers := fs.Int("bulk-workers", 8, "connections posting bulk imports")
	bulkLikes := fs.Int("bulk-likes", 2000, "likes per import")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *base == "" || *d <= 0 || *d > 5*time.Minute || *conns < 1 || *conns > 4096 || *bulkWorkers < 0 || *bulkWorkers > 64 || *bulkLikes < 1 || *bulkLikes > 10000 {
		return errors.New("want --base, a duration up to 5m, 1 to 4096 connections, 0 to 64 bulk workers of 1 to 10000 likes")
	}
	ctx, cancel := context.WithTimeout(ctx, *d)
	defer cancel()
	return json.NewEncoder(os.Stdout).Encode(runFlood(ctx, *base, *conns, *bulkWorkers, *bulkLikes))
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// randomImport is a bulk import body of n likes with random 256-byte users
// over 1,000 posts.
func randomImport(rng *rand.Rand, n int) []byte {
	b := make([]byte, 0, n*290)
	b = append(b, `{"likes":[`...)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"post":"bulk`...)
		b = strconv.AppendInt(b, int64(rng.IntN(1000)), 10)
		b = append(b, `","user":"`...)
		for j := 0; j < 256; j += 8 {
			for x, k := rng.Uint64(), 0; k < 8; k, x = k+1, x>>6 {
				b = append(b, idAlphabet[x&63])
			}
		}
		b = append(b, `"}`...)
	}
	return append(b, "]}"...)
}

// post sends a JSON body and returns the status (0 for a transport error)
// and up to 4 MiB of the reply's body.
func post(ctx context.Context, client *http.Client, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<22))
	return resp.StatusCode, raw, err
}

// rssMonitor samples a process's resident memory every 50 ms.
type rssMonitor struct {
	pid  int
	peak atomic.Int64
}

func newRSSMonitor(pid int) *rssMonitor { return &rssMonitor{pid: pid} }

func (m *rssMonitor) run(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if pm, err := procMem(m.pid); err == nil && pm.rss > m.peak.Load() {
			m.peak.Store(pm.rss)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// parseSize reads 192MiB, 1GiB or a byte count.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return 0, errors.New("want a size such as 192MiB")
			}
			return n * u.mult, nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a size such as 192MiB")
	}
	return n, nil
}
