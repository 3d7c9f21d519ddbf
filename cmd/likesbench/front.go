package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// front measures one likesd node against a bare net/http handler under the
// same wrk load in the same run (issue 20's "≥ 0.85 of the bare handler's
// rate"): every request posts a fresh like (a new user each time, from a
// counter in wrk's Lua script), the systems take turns round by round so a
// noisy neighbour hits them alike, and each system runs in a fresh process.
type front struct {
	likesd, self, wrk string
	dir               string
	duration          time.Duration
	rounds            int
	threads, conns    int
	extra             []string
	profile           string
	noDisk            bool
	compare           string
	compareExtra      []string
	procs             []*exec.Cmd
	out               bytes.Buffer
}

// frontReply is what the bare handler answers: the shape and size of a
// likesd like reply.
const frontReply = `{"post":"p1234","user":"r0t0n123456","liked":true,"count":1,"replicas":1,"version":"AQAAAAAAAAABAAAAAAAAAAE"}` + "\n"

// frontLua posts a fresh like per request: a new user from a counter, over
// 10,000 posts. Each wrk thread gets its own prefix, each run its own
// (FRONT_RUN), so no like repeats one of an earlier round. FRONT_QUERY
// (such as "?w=1") is added to every path.
const frontLua = `
local run = os.getenv("FRONT_RUN") or "r"
local query = os.getenv("FRONT_QUERY") or ""
local tid = 0
local n = 0
function setup(thread)
  thread:set("tid", tid)
  tid = tid + 1
end
function init(args)
  prefix = run .. "t" .. tid .. "n"
end
request = function()
  n = n + 1
  return wrk.format("POST", "/v1/posts/p" .. (n % 10000) .. "/likes" .. query,
    {["Content-Type"] = "application/json"}, '{"user":"' .. prefix .. n .. '"}')
end
`

func cmdFront(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("front", flag.ContinueOnError)
	f := &front{}
	var outFile, extra string
	fs.StringVar(&f.likesd, "likesd", "bin/likesd", "the likesd binary to measure")
	fs.StringVar(&f.wrk, "wrk", "wrk", "the wrk binary (apt-get install wrk)")
	fs.StringVar(&outFile, "out", "", "also write the markdown report here")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "length of each wrk run")
	fs.IntVar(&f.rounds, "rounds", 3, "rounds; each runs every system once, in turn")
	fs.IntVar(&f.threads, "threads", 1, "wrk threads (-t)")
	fs.IntVar(&f.conns, "connections", 32, "wrk connections (-c)")
	fs.StringVar(&extra, "likesd-flags", "", "extra flags for every likesd node, space-separated (tuning experiments)")
	fs.StringVar(&f.profile, "profile", "", "write a CPU profile of the in-memory node's first round here (pprof through --debug-addr, the run's middle)")
	fs.BoolVar(&f.noDisk, "no-disk", false, "leave out the --data-dir row")
	fs.StringVar(&f.compare, "compare", "", "another likesd binary (a build before a change, say): a row of its own, in memory, in every round")
	var compareFlags string
	fs.StringVar(&compareFlags, "compare-flags", "", "flags for the --compare row instead of --likesd-flags (the same binary with another --gc-percent, say)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.rounds < 1 || f.rounds > 20 || f.duration <= 0 || f.duration > 5*time.Minute {
		return errors.New("want 1 to 20 rounds of at most 5m")
	}
	if _, err := exec.LookPath(f.wrk); err != nil {
		return fmt.Errorf("%s not found (apt-get install wrk): %w", f.wrk, err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	f.self, f.extra = self, strings.Fields(extra)
	f.compareExtra = f.extra
	if compareFlags != "" {
		f.compareExtra = strings.Fields(compareFlags)
	}
	if f.dir, err = os.MkdirTemp("", "likesbench-front"); err != nil {
		return err
	}
	defer os.RemoveAll(f.dir)
	defer f.stopAll()
	script := filepath.Join(f.dir, "fresh.lua")
	if err := os.WriteFile(script, []byte(frontLua), 0o644); err != nil {
		return err
	}

	systems := []string{"bare", "likesd"}
	if !f.noDisk {
		systems = append(systems, "likesd --data-dir")
	}
	if f.compare != "" {
		systems = append(systems, strings.TrimSpace("compare: "+f.compare+" "+compareFlags))
	}
	rates := map[string][]float64{}
	allocs := map[string][]float64{}
	cpus := map[string][]float64{}
	f.printf("Run %s on %s, %d cores (nproc), %s; likesd `%s` %s; wrk -t%d -c%d -d%v, a fresh like per request; %d rounds, systems in turn.\n"+
		"Command: `likesbench front --rounds %d --duration %v --threads %d --connections %d --likesd-flags '%s' --compare '%s' --compare-flags '%s'`.\n\n",
		time.Now().UTC().Format(time.RFC3339), hostCPU(), runtime.NumCPU(), runtime.Version(), f.likesd, binVersion(f.likesd),
		f.threads, f.conns, f.duration, f.rounds, f.rounds, f.duration, f.threads, f.conns, extra, f.compare, compareFlags)
	f.printf("| round | system | requests/s | non-2xx | errors | latency p50 | p99 | server CPU per request | allocs per request (process) | ratio to bare |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for r := 1; r <= f.rounds; r++ {
		var bare float64
		for _, sys := range systems {
			if err := ctx.Err(); err != nil {
				return err
			}
			res, err := f.round(ctx, r, sys)
			f.stopAll()
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, sys, err)
			}
			if sys == "bare" {
				bare = res.rps
			}
			rates[sys] = append(rates[sys], res.rps)
			al := "—"
			if res.allocs > 0 {
				al = fmt.Sprintf("%.1f", res.allocs)
				allocs[sys] = append(allocs[sys], res.allocs)
			}
			cpus[sys] = append(cpus[sys], float64(res.cpuPerReq))
			f.printf("| %d | %s | %.0f | %d | %d | %s | %s | %v | %s | %.2f |\n", r, sys, res.rps, res.non2xx, res.errors, res.p50, res.p99, res.cpuPerReq.Round(100*time.Nanosecond), al, res.rps/bare)
			fmt.Fprintf(os.Stderr, "round %d %-20s %8.0f req/s non-2xx %d errors %d cpu/req %v allocs/req %s\n", r, sys, res.rps, res.non2xx, res.errors, res.cpuPerReq, al)
		}
	}
	f.printf("\n| system | median requests/s | median of the rounds' ratios to bare | server CPU per request (median) | bare's CPU per request ÷ this | allocs per request (median) |\n|---|---|---|---|---|---|\n")
	for _, sys := range systems {
		var ratios []float64
		for i, v := range rates[sys] {
			ratios = append(ratios, v/rates["bare"][i])
		}
		al := "—"
		if len(allocs[sys]) > 0 {
			al = fmt.Sprintf("%.1f", median(allocs[sys]))
		}
		cpu := median(cpus[sys])
		f.printf("| %s | %.0f | **%.2f** | %v | %.2f | %s |\n", sys, median(rates[sys]), median(ratios), time.Duration(cpu).Round(100*time.Nanosecond), median(cpus["bare"])/cpu, al)
	}
	fmt.Print(f.out.String())
	if outFile != "" {
		return os.WriteFile(outFile, f.out.Bytes(), 0o644)
	}
	return nil
}

type frontResult struct {
	rps            float64
	non2xx, errors int64
	p50, p99       string
	allocs         float64       // Go mallocs in the process per request; 0 when unknown
	cpuPerReq      time.Duration // the server process's CPU (user and system) per request
}

// round starts sys in a fresh process, drives it with wrk and stops it.
func (f *front) round(ctx context.Context, r int, sys string) (frontResult, error) {
	addr := freeAddr()
	base := "http://" + addr
	var debug string
	switch sys {
	case "bare":
		f.start(fmt.Sprintf("bare-%d", r), f.self, "bare", "--addr", addr, "--like-reply")
	default:
		debug = freeAddr()
		// Default flags, the log level included (info: a line per request),
		// as an operator runs it; --likesd-flags for experiments.
		args := []string{"--http-addr", addr, "--gossip-addr", freeAddr(), "--node-name", "n1", "--debug-addr", debug}
		if strings.Contains(sys, "--data-dir") {
			args = append(args, "--data-dir", filepath.Join(f.dir, fmt.Sprintf("data-%d", r)))
		}
		bin, extra := f.likesd, f.extra
		if strings.HasPrefix(sys, "compare: ") {
			bin, extra = f.compare, f.compareExtra
		}
		f.start(fmt.Sprintf("likesd-%d-%d", r, len(f.procs)), bin, append(args, extra...)...)
	}
	if sys == "bare" {
		if err := waitAnswer(ctx, base); err != nil {
			return frontResult{}, err
		}
	} else if err := waitHTTP(ctx, base+"/readyz"); err != nil {
		return frontResult{}, err
	}
	var before float64
	if sys != "bare" {
		before = mallocs(ctx, base)
	}
	profDone := make(chan error, 1)
	if f.profile != "" && r == 1 && sys == "likesd" {
		go func() {
			time.Sleep(f.duration / 4)
			secs := max(1, int(f.duration.Seconds()/2))
			body, err := get(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", debug, secs))
			if err == nil {
				err = os.WriteFile(f.profile, body, 0o644)
			}
			profDone <- err
		}()
	} else {
		profDone <- nil
	}
	pid := f.procs[len(f.procs)-1].Process.Pid
	cpu0 := cpuOf(pid)
	res, err := f.runWrk(ctx, base, fmt.Sprintf("r%dx%d", r, time.Now().UnixNano()%1e6), "")
	if cpu1 := cpuOf(pid); err == nil && cpu1 > cpu0 && res.rps > 0 {
		res.cpuPerReq = (cpu1 - cpu0) / time.Duration(res.rps*f.duration.Seconds())
	}
	if perr := <-profDone; perr != nil {
		fmt.Fprintf(os.Stderr, "profile: %v\n", perr)
	}
	if err != nil {
		return res, err
	}
	if sys != "bare" && before > 0 {
		if after := mallocs(ctx, base); after > before {
			res.allocs = (after - before) / (res.rps * f.duration.Seconds())
		}
	}
	return res, nil
}

var (
	wrkRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkErrors = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkLat    = regexp.MustCompile(`(?m)^\s+(50|99)%\s+(\S+)`)
)

// runWrk drives base with wrk for f.duration, fresh likes named after run,
// query added to every path.
func (f *front) runWrk(ctx context.Context, base, run, query string) (frontResult, error) {
	// wrk stops itself after -d; the context bounds it too, should it hang.
	wctx, cancel := context.WithTimeout(ctx, f.duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(wctx, f.wrk, "-t"+strconv.Itoa(f.threads), "-c"+strconv.Itoa(f.conns),
		"-d"+strconv.Itoa(int(f.duration.Seconds()))+"s", "--latency", "-s", filepath.Join(f.dir, "fresh.lua"), base)
	cmd.Env = append(os.Environ(), "FRONT_RUN="+run, "FRONT_QUERY="+query)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return frontResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	var res frontResult
	m := wrkRPS.FindSubmatch(out)
	if m == nil {
		return res, fmt.Errorf("wrk: no Requests/sec in %s", out)
	}
	res.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := wrkNon2xx.FindSubmatch(out); m != nil {
		res.non2xx, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	if m := wrkErrors.FindSubmatch(out); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.ParseInt(string(v), 10, 64)
			res.errors += n
		}
	}
	for _, m := range wrkLat.FindAllSubmatch(out, -1) {
		if string(m[1]) == "50" {
			res.p50 = string(m[2])
		} else {
			res.p99 = string(m[2])
		}
	}
	return res, nil
}

// mallocs is the process's Go heap allocations so far (go_memstats_mallocs_total).
func mallocs(ctx context.Context, base string) float64 {
	body, err := get(ctx, base+"/metrics")
	if err != nil {
		return 0
	}
	return parseMetrics(body)["go_memstats_mallocs_total"]
}

// cpuOf is the CPU time (user and system) pid has used so far, 0 when it
// cannot be read (procCPU, durable.go).
func cpuOf(pid int) time.Duration {
	cpu, _, _ := procCPU(pid)
	return cpu
}

// waitAnswer waits (up to 20 s) until url answers at all.
func waitAnswer(ctx context.Context, url string) error {
	for i := 0; i < 400 && ctx.Err() == nil; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s never answered", url)
}

func binVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	return "(" + strings.TrimSpace(string(out)) + ")"
}

func (f *front) printf(format string, args ...any) { fmt.Fprintf(&f.out, format, args...) }

func (f *front) start(name, bin string, args ...string) {
	logf, err := os.Create(filepath.Join(f.dir, name+".log"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "start %s: %v\n", name, err)
		return
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "start %s: %v\n", name, err)
		logf.Close()
		return
	}
	f.procs = append(f.procs, cmd)
}

func (f *front) stopAll() {
	stopProcs(f.procs)
	f.procs = nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// likeReply is the bare handler of front: it reads the body, as a like
// handler must, and answers 201 with a fixed JSON reply.
func likeReply(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, frontReply)
}
