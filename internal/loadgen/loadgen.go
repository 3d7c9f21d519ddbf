// Package loadgen drives running likesd-shaped nodes over HTTP: likes at an
// offered rate (or as fast as possible) for a bounded time, spread over
// nodes and posts, with a new user per like. It measures what a client sees
// (acks and their latency) and what the cluster does with them (replication
// lag, sampled by polling every other node until the like is visible there)
// and each node's memory (from its /metrics, when it has one). When asked it
// keeps every reply, so windows of one run can be compared (before and
// after a node was stopped, say).
package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one run.
type Config struct {
	// Targets are node base URLs (http://host:port); likes go round-robin.
	Targets []string
	// Rate is the offered likes per second over all targets; 0 is as fast
	// as Concurrency workers go (closed loop).
	Rate float64
	// Duration bounds the run. Default 10s.
	Duration time.Duration
	// Concurrency is the number of workers and keep-alive connections per
	// target. Default 64.
	Concurrency int
	// Posts is how many posts likes spread over; Zipf skews popularity
	// (s=1.1) instead of uniform. Default 10000.
	Posts int
	Zipf  bool
	// LagSamples per second are followed until visible on every other
	// target (0 disables). Default 20.
	LagSamples float64
	// LagTimeout bounds the wait for one sample. Default 10s.
	LagTimeout time.Duration
	// RunID keeps users unique across runs against the same cluster.
	RunID string
	// WriteLevel, when set, is sent as ?w= (1 to 64, quorum or all);
	// empty uses each node's --write-acks.
	WriteLevel string
	// KeepSamples keeps every reply (Report.Samples), so a caller that
	// changed the cluster during the run can summarize windows of it
	// (Report.Window). About 40 bytes a like.
	KeepSamples bool
}

func (c *Config) defaults() {
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.Posts == 0 {
		c.Posts = 10000
	}
	if c.LagTimeout == 0 {
		c.LagTimeout = 10 * time.Second
	}
	if c.RunID == "" {
		c.RunID = strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
}

// Report is what one run measured.
type Report struct {
	Offered     float64       `json:"offered_per_s"` // 0: as fast as possible
	Elapsed     time.Duration `json:"elapsed_ns"`
	Ended       time.Time     `json:"ended"`    // when the last like was sent
	Acked       int64         `json:"acked"`    // 201 or 200: the write level was met
	Accepted    int64         `json:"accepted"` // 202: stored, not yet on as many replicas as asked
	Errors      int64         `json:"errors"`   // transport errors and other statuses
	Missed      int64         `json:"missed"`   // offered but no worker free to send
	AckedPerSec float64       `json:"acked_per_s"`
	AckP50      time.Duration `json:"ack_p50_ns"`
	AckP99      time.Duration `json:"ack_p99_ns"`
	AckMax      time.Duration `json:"ack_max_ns"`
	LagSamples  int           `json:"lag_samples"`
	LagTimeouts int           `json:"lag_timeouts"`
	LagP50      time.Duration `json:"lag_p50_ns"`
	LagP99      time.Duration `json:"lag_p99_ns"`
	LagMax      time.Duration `json:"lag_max_ns"`
	// Memory per target: resident bytes before and after the run and the
	// largest seen (sampled every second); empty without /metrics.
	Memory []Memory `json:"memory,omitempty"`
	// Posts lists every post liked, for convergence checks afterwards.
	Posts []string `json:"-"`
	// Samples holds every reply and error when Config.KeepSamples is set,
	// in no particular order.
	Samples []Sample `json:"-"`
}

// Sample is one like sent: when, to which target, how long until its reply
// and what the reply was. Likes cut off by the end of the run are not kept.
type Sample struct {
	Sent    time.Time
	Target  int           // index in Config.Targets
	Latency time.Duration // until the reply, or the transport error
	Status  int           // HTTP status; 0 for a transport error
}

// Window summarizes the samples of a run sent in [From, To).
type Window struct {
	From, To time.Time
	Sent     int64 // likes sent (replies and errors)
	Acked    int64 // 201 or 200
	Accepted int64 // 202
	Errors   int64
	// AckP50, AckP99 and AckMax are over acked likes only; ReplyP99 over
	// every reply (202s included): how long a client waited.
	AckP50, AckP99, AckMax time.Duration
	ReplyP99               time.Duration
}

// SentPerSec is the rate likes were sent at in the window.
func (w Window) SentPerSec() float64 {
	if d := w.To.Sub(w.From).Seconds(); d > 0 {
		return float64(w.Sent) / d
	}
	return 0
}

// Window summarizes the samples sent in [from, to) that keep accepts (nil:
// all of them).
func (r Report) Window(from, to time.Time, keep func(Sample) bool) Window {
	w := Window{From: from, To: to}
	var acks, replies []time.Duration
	for _, s := range r.Samples {
		if s.Sent.Before(from) || !s.Sent.Before(to) || (keep != nil && !keep(s)) {
			continue
		}
		w.Sent++
		switch {
		case s.Status == http.StatusCreated || s.Status == http.StatusOK:
			w.Acked++
			acks = append(acks, s.Latency)
		case s.Status == http.StatusAccepted:
			w.Accepted++
		default:
			w.Errors++
			continue
		}
		replies = append(replies, s.Latency)
	}
	slices.Sort(acks)
	slices.Sort(replies)
	w.AckP50, w.AckP99, w.AckMax = quantile(acks, 0.5), quantile(acks, 0.99), quantile(acks, 1)
	w.ReplyP99 = quantile(replies, 0.99)
	return w
}

// Memory is one node's resident set over the run.
type Memory struct {
	Target             string `json:"target"`
	Start, End, Peak   int64
	HeapStart, HeapEnd int64
}

// Run drives the targets until cfg.Duration passes or ctx ends.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg.defaults()
	if len(cfg.Targets) == 0 {
		return Report{}, errors.New("loadgen: no targets")
	}
	hc := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        cfg.Concurrency * len(cfg.Targets) * 2,
			MaxIdleConnsPerHost: cfg.Concurrency * 2,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	defer hc.CloseIdleConnections()

	r := &run{cfg: cfg, hc: hc, posts: make([]string, cfg.Posts)}
	for i := range r.posts {
		r.posts[i] = "p" + strconv.Itoa(i)
	}
	r.mem = make([]Memory, len(cfg.Targets))
	r.sampleMemory(true)

	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var tickets chan struct{}
	if cfg.Rate > 0 {
		tickets = make(chan struct{}, cfg.Concurrency)
		go r.dispatch(ctx, tickets)
	}
	var sampleEvery int64
	if cfg.LagSamples > 0 {
		sampleEvery = int64(max(1, cfg.Rate/cfg.LagSamples))
		if cfg.Rate == 0 {
			sampleEvery = 1000
		}
	}
	memDone := make(chan struct{})
	go func() { defer close(memDone); r.watchMemory(ctx) }()

	start := time.Now()
	var wg sync.WaitGroup
	lats := make([][]time.Duration, cfg.Concurrency)
	samples := make([][]Sample, cfg.Concurrency)
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lats[w], samples[w] = r.worker(ctx, w, tickets, sampleEvery)
		}()
	}
	wg.Wait()
	ended := time.Now()
	elapsed := ended.Sub(start)
	<-memDone
	r.lagWG.Wait() // samples are bounded by LagTimeout
	r.sampleMemory(false)

	all := slices.Concat(lats...)
	slices.Sort(all)
	r.lagMu.Lock()
	lags := slices.Clone(r.lags)
	r.lagMu.Unlock()
	slices.Sort(lags)
	rep := Report{
		Offered: cfg.Rate, Elapsed: elapsed, Ended: ended,
		Acked: r.acked.Load(), Accepted: r.accepted.Load(), Errors: r.errors.Load(), Missed: r.missed.Load(),
		AckedPerSec: float64(r.acked.Load()) / elapsed.Seconds(),
		AckP50:      quantile(all, 0.50), AckP99: quantile(all, 0.99), AckMax: quantile(all, 1),
		LagSamples: len(lags), LagTimeouts: int(r.lagTimeouts.Load()),
		LagP50: quantile(lags, 0.50), LagP99: quantile(lags, 0.99), LagMax: quantile(lags, 1),
		Posts: r.posts,
	}
	if cfg.KeepSamples {
		rep.Samples = slices.Concat(samples...)
	}
	if r.hasMetrics {
		rep.Memory = r.mem
	}
	return rep, nil
}

type run struct {
	cfg   Config
	hc    *http.Client
	posts []string
	seq   atomic.Int64

	acked, accepted, errors, missed atomic.Int64

	lagWG       sync.WaitGroup
	lagMu       sync.Mutex
	lags        []time.Duration
	lagTimeouts atomic.Int64

	memMu      sync.Mutex
	mem        []Memory
	hasMetrics bool
}

// dispatch offers cfg.Rate tickets a second, in 1ms slices; a ticket no
// worker takes at once is counted missed (the generator fell behind).
func (r *run) dispatch(ctx context.Context, tickets chan<- struct{}) {
	defer close(tickets)
	start := time.Now()
	sent := 0.0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			due := r.cfg.Rate * now.Sub(start).Seconds()
			for ; sent < due; sent++ {
				select {
				case tickets <- struct{}{}:
				default:
					r.missed.Add(1)
				}
			}
		}
	}
}

func (r *run) worker(ctx context.Context, w int, tickets <-chan struct{}, sampleEvery int64) (lats []time.Duration, samples []Sample) {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	var zipf *rand.Zipf
	if r.cfg.Zipf {
		zipf = rand.NewZipf(rng, 1.1, 1, uint64(len(r.posts)-1))
	}
	for i := 0; ; i++ {
		if tickets != nil {
			select {
			case _, ok := <-tickets:
				if !ok {
					return lats, samples
				}
			case <-ctx.Done():
				return lats, samples
			}
		} else if ctx.Err() != nil {
			return lats, samples
		}
		var post string
		if zipf != nil {
			post = r.posts[zipf.Uint64()]
		} else {
			post = r.posts[rng.IntN(len(r.posts))]
		}
		n := r.seq.Add(1)
		user := r.cfg.RunID + "-" + strconv.FormatInt(n, 36)
		target := (w + i) % len(r.cfg.Targets)
		t0 := time.Now()
		status, ok := r.like(ctx, r.cfg.Targets[target], post, user)
		acked := time.Now()
		if r.cfg.KeepSamples && (status != 0 || ctx.Err() == nil) {
			samples = append(samples, Sample{Sent: t0, Target: target, Latency: acked.Sub(t0), Status: status})
		}
		if !ok {
			continue
		}
		lats = append(lats, acked.Sub(t0))
		if sampleEvery > 0 && n%sampleEvery == 0 && len(r.cfg.Targets) > 1 {
			r.lagWG.Add(1)
			go func() { defer r.lagWG.Done(); r.followLag(target, post, user, acked) }()
		}
	}
}

// like sends one like and counts its outcome; ok means acked (201/200).
func (r *run) like(ctx context.Context, base, post, user string) (status int, ok bool) {
	target := base + "/v1/posts/" + url.PathEscape(post) + "/likes"
	if r.cfg.WriteLevel != "" {
		target += "?w=" + url.QueryEscape(r.cfg.WriteLevel)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target,
		strings.NewReader(`{"user":"`+user+`"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			r.errors.Add(1)
		}
		return 0, false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusOK:
		r.acked.Add(1)
		return resp.StatusCode, true
	case http.StatusAccepted:
		r.accepted.Add(1)
		return resp.StatusCode, false
	}
	r.errors.Add(1)
	return resp.StatusCode, false
}

// followLag polls every other target until the like is visible there and
// records the time from its ack to the last node showing it.
func (r *run) followLag(origin int, post, user string, acked time.Time) {
	deadline := acked.Add(r.cfg.LagTimeout)
	path := "/v1/posts/" + url.PathEscape(post) + "/likes/" + url.PathEscape(user)
	var last time.Time
	for i, base := range r.cfg.Targets {
		if i == origin {
			continue
		}
		for {
			if time.Now().After(deadline) {
				r.lagTimeouts.Add(1)
				return
			}
			if r.visible(base + path) {
				last = time.Now()
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	r.lagMu.Lock()
	r.lags = append(r.lags, last.Sub(acked))
	r.lagMu.Unlock()
}

func (r *run) visible(u string) bool {
	resp, err := r.hc.Get(u)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(string(raw), `"liked":true`)
}

func (r *run) watchMemory(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.sampleMemory(false)
		}
	}
}

// sampleMemory reads each target's resident and heap bytes from /metrics.
func (r *run) sampleMemory(first bool) {
	for i, base := range r.cfg.Targets {
		rss, heap, ok := r.readMemory(base)
		if !ok {
			continue
		}
		r.memMu.Lock()
		r.hasMetrics = true
		m := &r.mem[i]
		m.Target = base
		if first {
			m.Start, m.HeapStart = rss, heap
		}
		m.End, m.HeapEnd = rss, heap
		m.Peak = max(m.Peak, rss)
		r.memMu.Unlock()
	}
}

func (r *run) readMemory(base string) (rss, heap int64, ok bool) {
	resp, err := r.hc.Get(base + "/metrics")
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, false
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, found := strings.Cut(sc.Text(), " ")
		if !found {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			rss, ok = int64(v), true
		case "go_memstats_heap_inuse_bytes":
			heap = int64(v)
		}
	}
	return rss, heap, ok
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// String is a one-line summary.
func (r Report) String() string {
	offered := "max"
	if r.Offered > 0 {
		offered = fmt.Sprintf("%.0f/s", r.Offered)
	}
	s := fmt.Sprintf("offered %s: acked %d in %v = %.0f/s, accepted (202) %d, errors %d, missed %d; ack p50 %v p99 %v",
		offered, r.Acked, r.Elapsed.Round(time.Millisecond), r.AckedPerSec, r.Accepted, r.Errors, r.Missed,
		r.AckP50.Round(time.Microsecond), r.AckP99.Round(time.Microsecond))
	if r.LagSamples > 0 || r.LagTimeouts > 0 {
		s += fmt.Sprintf("; lag p50 %v p99 %v max %v (%d samples, %d timeouts)",
			r.LagP50.Round(time.Millisecond), r.LagP99.Round(time.Millisecond), r.LagMax.Round(time.Millisecond), r.LagSamples, r.LagTimeouts)
	}
	return s
}
