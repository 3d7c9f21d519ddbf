//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/likesd/likesd/internal/faultcheck"
)

// recorder collects the history of one schedule; every method is safe for
// concurrent use.
type recorder struct {
	mu sync.Mutex
	h  faultcheck.History
}

func (r *recorder) start(at time.Time) {
	r.mu.Lock()
	r.h.Start = at
	r.mu.Unlock()
}

func (r *recorder) sent(l faultcheck.Like) {
	r.mu.Lock()
	r.h.Sent = append(r.h.Sent, l)
	r.mu.Unlock()
}

func (r *recorder) ack(a faultcheck.Ack) {
	r.mu.Lock()
	r.h.Acks = append(r.h.Acks, a)
	r.mu.Unlock()
}

func (r *recorder) end(e faultcheck.End) {
	r.mu.Lock()
	r.h.Ends = append(r.h.Ends, e)
	r.mu.Unlock()
}

func (r *recorder) cut(node int, from, to time.Time) {
	r.mu.Lock()
	r.h.Cutoffs = append(r.h.Cutoffs, faultcheck.Cutoff{Node: node, From: from, To: to})
	r.mu.Unlock()
}

func (r *recorder) counts(ss []faultcheck.CountSample) {
	r.mu.Lock()
	r.h.Counts = append(r.h.Counts, ss...)
	r.mu.Unlock()
}

// history returns the history; call it once the load has stopped.
func (r *recorder) history() faultcheck.History {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.h
}

// loadConfig shapes the client.
type loadConfig struct {
	rate    int           // likes per second offered, over all nodes
	workers int           // concurrent requests at most
	timeout time.Duration // per request; keep it below the shortest kill -9 downtime
	tag     string        // keeps users unique across schedules
	posts   []string
	sample  []string // posts whose counts are polled on every node
}

// load is the client: likes to random nodes, each retried through the
// other nodes on an error or a timeout, every acknowledgement recorded.
type load struct {
	cfg   loadConfig
	nodes []*node
	hc    *http.Client
	rec   *recorder
	seq   atomic.Int64
	shed  atomic.Int64 // likes not offered because every worker was busy
	given atomic.Int64 // likes given up after every node failed
}

func newHTTPClient(timeout time.Duration, conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	tr.MaxIdleConns = 0
	return &http.Client{Timeout: timeout, Transport: tr}
}

// maxLoad bounds one load run, whatever its caller does: a schedule takes
// about a minute.
const maxLoad = 10 * time.Minute

// run offers likes at cfg.rate until ctx ends (or maxLoad, or
// rate × maxLoad likes), then waits for the requests in flight (each
// bounded by its timeout and attempts).
func (l *load) run(ctx context.Context) {
	const tick = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(ctx, maxLoad)
	defer cancel()
	limit := l.cfg.rate * int(maxLoad/time.Second)
	jobs := make(chan struct{}, l.cfg.workers)
	var wg sync.WaitGroup
	for range l.cfg.workers {
		wg.Go(func() {
			for range jobs {
				l.like(ctx)
			}
		})
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	start, offered := time.Now(), 0
	for ctx.Err() == nil && offered < limit {
		select {
		case <-ctx.Done():
		case now := <-t.C:
			// Catch up to the rate; a burst after a stall is shed, not queued.
			due := int(now.Sub(start).Seconds()*float64(l.cfg.rate)) - offered
			burst := min(due, max(l.cfg.rate/10, 1))
			l.shed.Add(int64(due - burst))
			for range burst {
				select {
				case jobs <- struct{}{}:
				default:
					l.shed.Add(1)
				}
			}
			offered += due
		}
	}
	close(jobs)
	wg.Wait()
}

// like sends one new like, through every node in a random order until one
// acknowledges it.
func (l *load) like(ctx context.Context) {
	lk := faultcheck.Like{
		Post: l.cfg.posts[rand.IntN(len(l.cfg.posts))],
		User: fmt.Sprintf("%s-%d", l.cfg.tag, l.seq.Add(1)),
	}
	l.rec.sent(lk)
	body := `{"user":"` + lk.User + `"}`
	for _, i := range rand.Perm(len(l.nodes)) {
		if ctx.Err() != nil {
			break
		}
		n := l.nodes[i]
		life := n.life()
		status, err := l.post(n.url+"/v1/posts/"+url.PathEscape(lk.Post)+"/likes", body)
		if err == nil && (status == http.StatusOK || status == http.StatusCreated || status == http.StatusAccepted) {
			l.rec.ack(faultcheck.Ack{Like: lk, Life: life, Status: status, At: time.Now()})
			return
		}
	}
	l.given.Add(1)
}

// post is not tied to the load's context: a like in flight when the load
// stops still gets its answer recorded.
func (l *load) post(u, body string) (int, error) {
	resp, err := l.hc.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// pollCounts reads the sample posts' counts on every node every interval
// until ctx ends. A read that overlaps the end of a life is dropped: which
// life answered it is not known.
func (l *load) pollCounts(ctx context.Context, every time.Duration) {
	var wg sync.WaitGroup
	for _, n := range l.nodes {
		wg.Go(func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				before, ok := n.settled()
				if !ok {
					continue
				}
				got, err := readCounts(ctx, l.hc, n, l.cfg.sample)
				if after, ok := n.settled(); err != nil || !ok || after != before {
					continue
				}
				at := time.Now()
				ss := make([]faultcheck.CountSample, 0, len(got))
				for p, c := range got {
					ss = append(ss, faultcheck.CountSample{Life: before, Post: p, Count: c, At: at})
				}
				l.rec.counts(ss)
			}
		})
	}
	wg.Wait()
}

func readCounts(ctx context.Context, hc *http.Client, n *node, posts []string) (map[string]int, error) {
	var reply struct {
		Counts map[string]int `json:"counts"`
	}
	err := getJSON(ctx, hc, n.url+"/v1/counts?"+url.Values{"post": posts}.Encode(), &reply)
	return reply.Counts, err
}

// readLikers reads a post's whole likers set from n, page by page.
func readLikers(ctx context.Context, hc *http.Client, n *node, post string) ([]string, error) {
	var users []string
	after := ""
	for range 10_000 { // a bound far above any post's pages here
		q := url.Values{"limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		var page struct {
			Users []string `json:"users"`
			Next  string   `json:"next"`
		}
		if err := getJSON(ctx, hc, n.url+"/v1/posts/"+url.PathEscape(post)+"/likers?"+q.Encode(), &page); err != nil {
			return nil, err
		}
		users = append(users, page.Users...)
		if page.Next == "" {
			return users, nil
		}
		after = page.Next
	}
	return nil, fmt.Errorf("%s: %s: too many pages", n.name(), post)
}

func getJSON(ctx context.Context, hc *http.Client, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}
