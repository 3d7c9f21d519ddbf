package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/likesd/likesd/internal/client"
	"github.com/likesd/likesd/internal/loadgen"
)

// writeLevels measures semi-synchronous writes (issue 8) on one 3-node
// cluster: as fast as possible and at fixed rates at w=1, w=2 and w=all,
// one after the other (a noisy machine: read the ratios), then w=2 and
// w=all while the third node is stopped with SIGSTOP, before and after the
// live nodes' breakers for it open.
func (s *suite) writeLevels(ctx context.Context) {
	defer s.stopAll()
	targets, procs := s.startCluster(3)
	if len(procs) != 3 {
		s.printf("## Write levels\n\nnot run: %d of 3 nodes started\n\n", len(procs))
		return
	}
	levels := []string{"1", "2", "all"}

	s.printf("## Write levels (3 nodes, ?w=; issue 8)\n\n"+
		"Acked = 201/200: the level was met; accepted = 202: stored on the node asked, not on as many replicas within the write timeout. "+
		"Ack latencies are over acked likes only.\n\n"+
		"The last columns are from the nodes' /metrics over the run, summed over the three: CPU per like stored, "+
		"likes per fast-path batch and per acknowledgement (both travel on one stream per peer), "+
		"and breakers opened (none should, with every node up).\n\n"+
		"### As fast as possible (%d workers, %v each, one after the other)\n\n"+
		"| w | acked/s | accepted (202) | errors | ack p50 | ack p99 | lag p50 | lag p99 | ratio to w=1 | node CPU per like | likes per batch | likes per ack | breakers opened |\n"+
		"|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
		s.conc, s.duration)
	var base float64
	for _, w := range levels {
		cfg := s.config(targets, 0, s.duration, true)
		cfg.WriteLevel = w
		m0 := scrape(ctx, targets)
		rep := s.load(ctx, "w="+w+", as fast as possible", cfg)
		m := scrape(ctx, targets).minus(m0)
		if w == "1" {
			base = rep.AckedPerSec
		}
		s.printf("| %s | %.0f | %d | %d | %v | %v | %v | %v | %s | %s |\n", w, rep.AckedPerSec, rep.Accepted, rep.Errors,
			us(rep.AckP50), us(rep.AckP99), ms(rep.LagP50), ms(rep.LagP99), ratioTo(rep.AckedPerSec, base), m)
	}

	// The fixed rates: the target (w=2 sustains 70 % of w=1's rate)
	// and half that, which every level should sustain.
	rates := []float64{s.writesRate}
	if s.writesRate == 0 {
		rates = []float64{math.Max(100, math.Round(base*0.35/100)*100), math.Max(100, math.Round(base*0.7/100)*100)}
	}
	s.printf("\n### At fixed rates (%v each; at equal load latencies compare; missed: offered while all %d workers were busy)\n\n"+
		"| w | offered/s | acked/s | missed | accepted (202) | errors | ack p50 | ack p99 | lag p50 | lag p99 | node CPU per like | likes per batch | likes per ack | breakers opened |\n"+
		"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
		s.duration, s.conc)
	for _, rate := range rates {
		for _, w := range levels {
			cfg := s.config(targets, rate, s.duration, true)
			cfg.WriteLevel = w
			m0 := scrape(ctx, targets)
			rep := s.load(ctx, fmt.Sprintf("w=%s at %.0f/s", w, rate), cfg)
			m := scrape(ctx, targets).minus(m0)
			s.printf("| %s | %.0f | %.0f | %d (%.1f%%) | %d | %d | %v | %v | %v | %v | %s |\n", w, rate, rep.AckedPerSec,
				rep.Missed, 100*float64(rep.Missed)/(rate*s.duration.Seconds()), rep.Accepted, rep.Errors,
				us(rep.AckP50), us(rep.AckP99), ms(rep.LagP50), ms(rep.LagP99), m)
		}
	}
	rate := rates[0]

	s.printf("\n### One node stopped (SIGSTOP), likes sent at %.0f/s to the two others\n\n"+
		"Each run: all up, then n3 is stopped; *before open* is, on each live node, from the stop until /v1/cluster showed n3's breaker open "+
		"(polled every 10 ms); *after open* starts once both showed it open and lasts %v. Then n3 is continued (SIGCONT).\n\n"+
		"| w | window | length | sent/s | acked | accepted (202) | errors | ack p50 | ack p99 | Δ ack p99 vs all up | reply p99 (202s too) |\n"+
		"|---|---|---|---|---|---|---|---|---|---|---|\n", rate, s.stopWindow())
	var notes []string
	for _, w := range []string{"2", "all"} {
		notes = append(notes, s.stopOne(ctx, w, rate, targets, procs))
	}
	s.printf("\n%s\n", strings.Join(notes, "\n"))
}

func ratioTo(x, base float64) string {
	if base <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", x/base)
}

// stopWindow is how long the all-up and after-open windows of the SIGSTOP
// runs last.
func (s *suite) stopWindow() time.Duration { return max(2*time.Second, s.duration/2) }

// openWait bounds the wait for the stopped node's breakers to open.
const openWait = 10 * time.Second

// peerView is what a live node's /v1/cluster said of the stopped node.
type peerView struct {
	at             time.Time
	state, breaker string
}

// stopOne runs level at rate against targets[0:2] while targets[2] (node
// n3, procs[2]) is stopped, and adds its rows to the table; it returns a
// note of what the live nodes saw and how the cluster healed. The stopped
// node is continued on every way out.
func (s *suite) stopOne(ctx context.Context, level string, rate float64, targets []string, procs []*exec.Cmd) string {
	live, stopped, name := targets[:2], procs[2], "n3"
	window := s.stopWindow()
	if !s.healthy(ctx, targets) {
		fmt.Fprintf(os.Stderr, "w=%s: the cluster is not healthy before n3 is stopped: waited %s\n", level,
			waitFor(ctx, time.Minute, func() bool { return s.healthy(ctx, targets) }))
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := s.config(live, rate, window+openWait+window+5*time.Second, false)
	cfg.WriteLevel, cfg.KeepSamples = level, true
	repc := make(chan loadgen.Report, 1)
	start := time.Now()
	go func() { repc <- s.load(runCtx, fmt.Sprintf("w=%s at %.0f/s, n3 stopped midway", level, rate), cfg) }()
	defer func() { // on every way out: the load is stopped, n3 runs again
		cancel()
		_ = stopped.Process.Signal(syscall.SIGCONT)
	}()

	sleepCtx(runCtx, window)
	stopAt := time.Now()
	if err := stopped.Process.Signal(syscall.SIGSTOP); err != nil {
		fmt.Fprintf(os.Stderr, "SIGSTOP n3: %v\n", err)
	}
	views := make([][]peerView, len(live))
	opened := make([]time.Time, len(live))
	var bothOpen, end time.Time
	for runCtx.Err() == nil {
		now := time.Now()
		for i, t := range live {
			v := s.view(ctx, t, name)
			v.at = now
			if k := len(views[i]); k == 0 || views[i][k-1].state != v.state || views[i][k-1].breaker != v.breaker {
				views[i] = append(views[i], v)
			}
			if v.breaker == "open" && opened[i].IsZero() {
				opened[i] = now
			}
		}
		if bothOpen.IsZero() && !opened[0].IsZero() && !opened[1].IsZero() {
			bothOpen = now
			end = now.Add(window)
		}
		if (!end.IsZero() && now.After(end)) || (bothOpen.IsZero() && now.Sub(stopAt) > openWait) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if end.IsZero() {
		end = time.Now()
	}
	cancel()
	rep := <-repc
	_ = stopped.Process.Signal(syscall.SIGCONT)

	// Windows. Before open runs, per live node, until that node showed the
	// breaker open (or the end, if it never did).
	warm := min(time.Second, window/4)
	up := rep.Window(start.Add(warm), stopAt, nil)
	openOf := func(i int) time.Time {
		if opened[i].IsZero() {
			return end
		}
		return opened[i]
	}
	before := rep.Window(stopAt, end, func(x loadgen.Sample) bool { return x.Sent.Before(openOf(x.Target)) })
	before.To = stopAt.Add((openOf(0).Sub(stopAt) + openOf(1).Sub(stopAt)) / 2) // the mean length, for the rate
	type row struct {
		name string
		w    loadgen.Window
	}
	rows := []row{{"all up", up}, {"n3 stopped, before open", before}}
	if !bothOpen.IsZero() {
		rows = append(rows, row{"n3 stopped, after open", rep.Window(bothOpen, end, nil)})
	}
	for i, r := range rows {
		delta := "—"
		if i > 0 && r.w.Acked > 0 {
			delta = fmt.Sprintf("%+v", us(r.w.AckP99-up.AckP99))
		}
		s.printf("| %s | %s | %v | %.0f | %d | %d | %d | %v | %v | %s | %v |\n", level, r.name, ms(r.w.To.Sub(r.w.From)), r.w.SentPerSec(),
			r.w.Acked, r.w.Accepted, r.w.Errors, us(r.w.AckP50), us(r.w.AckP99), delta, us(r.w.ReplyP99))
	}

	// How it healed: every node sees the others alive with closed
	// breakers, then all three hold the same likes.
	healed := waitFor(ctx, time.Minute, func() bool { return s.healthy(ctx, targets) })
	agreed := s.agree(ctx, targets, rep.Posts, 2*time.Minute)

	var b strings.Builder
	fmt.Fprintf(&b, "- **w=%s**, n3 stopped %v after the start: ", level, ms(stopAt.Sub(start)))
	for i := range live {
		if opened[i].IsZero() {
			fmt.Fprintf(&b, "n%d never showed its breaker open within %v; ", i+1, openWait)
		} else {
			fmt.Fprintf(&b, "n%d showed it open after %v; ", i+1, ms(opened[i].Sub(stopAt)))
		}
	}
	for i := range live {
		fmt.Fprintf(&b, "n%d's view of n3 over time:", i+1)
		for _, v := range views[i] {
			fmt.Fprintf(&b, " %s/%s +%v,", v.state, v.breaker, ms(v.at.Sub(stopAt)))
		}
		b.WriteString(" ")
	}
	fmt.Fprintf(&b, "whole run: %s. After SIGCONT, n3 alive with closed breakers on both after %s, all three nodes hold the same likes after %s.",
		rep, healed, agreed)
	return b.String()
}

// view is what base's /v1/cluster says of member name ("absent" when it is
// not listed, "unreachable" when base did not answer).
func (s *suite) view(ctx context.Context, base, name string) peerView {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	cl, err := client.New(base, nil).Cluster(ctx)
	if err != nil {
		return peerView{state: "unreachable"}
	}
	m, ok := cl.Member(name)
	if !ok {
		return peerView{state: "absent"}
	}
	return peerView{state: m.State, breaker: m.Breaker}
}

// healthy reports whether every node (n1, n2, ... in targets' order) lists
// every other alive, with its breaker closed.
func (s *suite) healthy(ctx context.Context, targets []string) bool {
	for i, t := range targets {
		for j := range targets {
			if j == i {
				continue
			}
			if v := s.view(ctx, t, fmt.Sprintf("n%d", j+1)); v.state != "alive" || v.breaker != "closed" {
				return false
			}
		}
	}
	return true
}

// agree waits until every target holds the same number of likes over posts
// twice in a row, and says after how long.
func (s *suite) agree(ctx context.Context, targets, posts []string, limit time.Duration) string {
	prev := int64(-1)
	return waitFor(ctx, limit, func() bool {
		first := total(ctx, targets[0], posts)
		for _, t := range targets[1:] {
			if total(ctx, t, posts) != first {
				prev = -1
				return false
			}
		}
		same := first >= 0 && first == prev
		prev = first
		return same
	})
}

// waitFor polls cond every 50ms up to limit and says how long it took.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) string {
	start := time.Now()
	for time.Since(start) < limit && ctx.Err() == nil {
		if cond() {
			return ms(time.Since(start)).String()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("not within %v", limit)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// startCluster starts n likesd nodes (n1..nn) and returns their URLs and
// processes.
func (s *suite) startCluster(n int) ([]string, []*exec.Cmd) {
	from := len(s.procs)
	targets := s.startLikesd(n)
	return targets, s.procs[from:]
}

// counters are a few of the nodes' /metrics, summed over nodes.
type counters struct {
	cpu                           float64 // process_cpu_seconds_total
	stored, batches, acks, opened float64
	accepted                      float64 // likesd_writes_accepted_total: 202s
}

// scrape sums the counters of every target's /metrics (a node that does
// not answer adds nothing).
func scrape(ctx context.Context, targets []string) counters {
	var c counters
	for _, t := range targets {
		for name, v := range metricValues(ctx, t) {
			switch name {
			case "process_cpu_seconds_total":
				c.cpu += v
			case "likesd_writes_replicated_total":
				c.stored += v
			case "likesd_writes_accepted_total":
				c.stored += v
				c.accepted += v
			case "likesd_direct_batches_sent_total":
				c.batches += v
			case "likesd_acks_sent_total":
				c.acks += v
			case "likesd_breaker_opened_total":
				c.opened += v
			}
		}
	}
	return c
}

func (c counters) minus(o counters) counters {
	return counters{cpu: c.cpu - o.cpu, stored: c.stored - o.stored, batches: c.batches - o.batches, acks: c.acks - o.acks, opened: c.opened - o.opened,
		accepted: c.accepted - o.accepted}
}

// String is the table cells: CPU per like, likes per batch, likes per
// acknowledgement and breakers opened. A like is sent to both peers, so
// likes per batch counts a like once per peer.
func (c counters) String() string {
	per := func(x float64) string {
		if x <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f", 2*c.stored/x)
	}
	cpu := "—"
	if c.stored > 0 {
		cpu = us(time.Duration(c.cpu / c.stored * float64(time.Second))).String()
	}
	return fmt.Sprintf("%s | %s | %s | %.0f", cpu, per(c.batches), per(c.acks), c.opened)
}

// metricValues reads the unlabelled samples of base's /metrics.
func metricValues(ctx context.Context, base string) map[string]float64 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out
}
