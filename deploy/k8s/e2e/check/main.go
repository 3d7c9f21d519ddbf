// Command check is the test half of make k8s-e2e: with deploy/k8s applied
// to a real cluster, it checks likesd with real pods — every pod Ready, one
// cluster joined through DNS, likes through the NodePort reaching every pod,
// scaling, a master restart, an eviction under the disruption budget — and,
// while likes flow through the NodePort, that no acknowledged like is lost
// when every pod is deleted at once (each comes back from its volume), in a
// rollout restart of both StatefulSets, and when the workers are scaled
// down and up again; and that no pod logged an error. It runs where pod IPs
// and the node address are reachable (the cluster's network namespace) and
// drives the cluster with kubectl.
//
// Every step prints one line with how long it took; the summary goes to
// --times as "name seconds" lines.
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
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

const selector = "application=likes-distributed"

type checker struct {
	kubectl   []string
	nodeURL   string // http://node:31001
	logDir    string
	http      *http.Client
	times     []timing
	logsMu    sync.Mutex
	following map[types.UID]bool
	logsWG    sync.WaitGroup
	acked     map[string]map[string]bool // post -> users whose like was acknowledged
}

type timing struct {
	name string
	d    time.Duration
}

func main() {
	kubectl := flag.String("kubectl", "kubectl", "kubectl command, flags included (split on spaces)")
	node := flag.String("node", "", "node address the NodePort answers on")
	nodePort := flag.Int("node-port", 31001, "the client Service's NodePort")
	logDir := flag.String("log-dir", "", "where every pod's log is kept")
	times := flag.String("times", "", "file for the measured times (name seconds)")
	loadMax := flag.Duration("load-max", 5*time.Minute, "bound on each step during which likes flow (delete every pod, rollout, scale down and up)")
	flag.Parse()
	if *node == "" || *logDir == "" {
		fmt.Fprintln(os.Stderr, "usage: check --node ADDR --log-dir DIR [--kubectl CMD] [--times FILE]")
		os.Exit(2)
	}
	c := &checker{
		kubectl:   strings.Fields(*kubectl),
		nodeURL:   "http://" + net.JoinHostPort(*node, fmt.Sprint(*nodePort)),
		logDir:    *logDir,
		http:      &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		following: map[types.UID]bool{},
		acked:     map[string]map[string]bool{},
	}
	err := c.run(*loadMax)
	if *times != "" {
		var b strings.Builder
		for _, t := range c.times {
			fmt.Fprintf(&b, "%s %.1f\n", t.name, t.d.Seconds())
		}
		_ = os.WriteFile(*times, []byte(b.String()), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("k8s-e2e check: all passed")
}

func (c *checker) run(loadMax time.Duration) error {
	ctx, stopLogs := context.WithCancel(context.Background())
	c.logsWG.Add(1)
	go c.followLogs(ctx)

	steps := []struct {
		name string
		fn   func() error
	}{
		// Each pod's volume binds first (WaitForFirstConsumer).
		{"ready", func() error { return c.allReady(3, 120*time.Second) }},
		{"join", func() error { return c.oneCluster(60 * time.Second) }},
		{"like", c.likeThroughNodePort},
		{"scale", c.scale},
		{"master_restart", c.restartMaster},
		{"pdb_eviction", c.evictTwo},
		{"delete_all", func() error { return c.deleteAll(loadMax) }},
		{"rollout", func() error { return c.rollout(loadMax) }},
		{"scale_down_up", func() error { return c.scaleDownUp(loadMax) }},
		{"wipe_one", c.wipeOne},
	}
	var err error
	for _, s := range steps {
		start := time.Now()
		if err = s.fn(); err != nil {
			err = fmt.Errorf("%s: %w", s.name, err)
			break
		}
		c.times = append(c.times, timing{s.name, time.Since(start)})
		fmt.Printf("ok   %-15s %5.1fs\n", s.name, time.Since(start).Seconds())
	}
	time.Sleep(time.Second) // the last lines of running pods
	stopLogs()
	c.logsWG.Wait()
	return errors.Join(err, c.logsClean())
}

// ---------------------------------------------------------------- pods

func (c *checker) kc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.kubectl[0], append(slices.Clone(c.kubectl[1:]), args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// pods lists the likesd pods that are not terminating.
func (c *checker) pods() ([]corev1.Pod, error) {
	out, err := c.kc("get", "pods", "-l", selector, "-o", "json")
	if err != nil {
		return nil, err
	}
	var list corev1.PodList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, err
	}
	var live []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Name < live[j].Name })
	return live, nil
}

func ready(p corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// eventually polls f until it returns nil, or fails with f's last error.
func eventually(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// allReady waits for n live pods, all Ready, none restarted.
func (c *checker) allReady(n int, timeout time.Duration) error {
	return eventually(timeout, func() error {
		ps, err := c.pods()
		if err != nil {
			return err
		}
		if len(ps) != n {
			return fmt.Errorf("%d pods, want %d", len(ps), n)
		}
		for _, p := range ps {
			if !ready(p) {
				return fmt.Errorf("pod %s not Ready (%s)", p.Name, p.Status.Phase)
			}
			for _, s := range p.Status.ContainerStatuses {
				if s.RestartCount > 0 {
					return fmt.Errorf("pod %s: container restarted %d times", p.Name, s.RestartCount)
				}
			}
		}
		return nil
	})
}

// ---------------------------------------------------------------- HTTP

type member struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"`
}

func (c *checker) getJSON(u string, v any) error {
	resp, err := c.http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, v)
}

// like posts one like and returns the status: 201 or 200 (acknowledged:
// on w pods' disks), or 202 (stored on the pod that answered, not yet on w
// pods). Any other status is an error. Every stop here is graceful (the
// pod's log is synced and its likes handed off), so the checker holds 202s
// to "never lost" as well, and counts them apart.
func (c *checker) like(base, post, user string) (int, error) {
	body := strings.NewReader(fmt.Sprintf(`{"user":%q}`, user))
	resp, err := c.http.Post(base+"/v1/posts/"+url.PathEscape(post)+"/likes", "application/json", body)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return resp.StatusCode, fmt.Errorf("POST like: %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

func (c *checker) ack(post, user string) {
	if c.acked[post] == nil {
		c.acked[post] = map[string]bool{}
	}
	c.acked[post][user] = true
}

func podURL(p corev1.Pod) string { return "http://" + net.JoinHostPort(p.Status.PodIP, "8080") }

// podAdminURL is a pod's admin listener (LIKESD_ADMIN_ADDR): /v1/cluster,
// probes and metrics are there, not on the API's port.
func podAdminURL(p corev1.Pod) string { return "http://" + net.JoinHostPort(p.Status.PodIP, "9090") }

// oneCluster waits until every live pod is Ready and sees exactly the live
// pods as alive members: one cluster, nobody missing, nobody stale.
func (c *checker) oneCluster(timeout time.Duration) error {
	return eventually(timeout, func() error {
		ps, err := c.pods()
		if err != nil {
			return err
		}
		var want []string
		for _, p := range ps {
			if !ready(p) {
				return fmt.Errorf("pod %s not Ready", p.Name)
			}
			want = append(want, p.Status.PodIP)
		}
		sort.Strings(want)
		for _, p := range ps {
			var reply struct {
				Members []member `json:"members"`
			}
			if err := c.getJSON(podAdminURL(p)+"/v1/cluster", &reply); err != nil {
				return err
			}
			var got []string
			for _, m := range reply.Members {
				if m.State == "alive" {
					host, _, _ := net.SplitHostPort(m.Addr)
					got = append(got, host)
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("pod %s sees alive members %v, want the pods %v", p.Name, got, want)
			}
		}
		return nil
	})
}

// everyPodHolds waits until every live pod holds every acknowledged like.
func (c *checker) everyPodHolds(timeout time.Duration) error {
	return eventually(timeout, func() error {
		ps, err := c.pods()
		if err != nil {
			return err
		}
		for _, p := range ps {
			for post, users := range c.acked {
				got, count, err := c.likers(podURL(p), post)
				if err != nil {
					return fmt.Errorf("pod %s: %w", p.Name, err)
				}
				var missing []string
				for u := range users {
					if !got[u] {
						missing = append(missing, u)
					}
				}
				if len(missing) > 0 {
					sort.Strings(missing)
					return fmt.Errorf("pod %s lacks %d of %d acknowledged likes of %s (e.g. %v)",
						p.Name, len(missing), len(users), post, missing[:min(5, len(missing))])
				}
				var reply struct {
					Count int `json:"count"`
				}
				if err := c.getJSON(podURL(p)+"/v1/posts/"+post+"/likes", &reply); err != nil {
					return err
				}
				if reply.Count != count || reply.Count < len(users) {
					return fmt.Errorf("pod %s: %s count %d, likers %d, acknowledged %d", p.Name, post, reply.Count, count, len(users))
				}
			}
		}
		return nil
	})
}

// likers reads every liker of post from one pod, page by page.
func (c *checker) likers(base, post string) (map[string]bool, int, error) {
	got := map[string]bool{}
	after := ""
	for {
		var page struct {
			Count int      `json:"count"`
			Users []string `json:"users"`
			Next  string   `json:"next"`
		}
		u := base + "/v1/posts/" + post + "/likers?limit=1000"
		if after != "" {
			u += "&after=" + url.QueryEscape(after)
		}
		if err := c.getJSON(u, &page); err != nil {
			return nil, 0, err
		}
		for _, x := range page.Users {
			got[x] = true
		}
		if page.Next == "" {
			return got, page.Count, nil
		}
		after = page.Next
	}
}

// ---------------------------------------------------------------- steps

func (c *checker) likeThroughNodePort() error {
	if err := eventually(30*time.Second, func() error { _, err := c.like(c.nodeURL, "k8s-e2e", "alice"); return err }); err != nil {
		return err
	}
	c.ack("k8s-e2e", "alice")
	// Each request may reach another pod (no keep-alive): the read through
	// the NodePort sees the like once it has reached the pod it lands on.
	start := time.Now()
	if err := eventually(10*time.Second, func() error {
		var reply struct {
			Count int `json:"count"`
		}
		if err := c.getJSON(c.nodeURL+"/v1/posts/k8s-e2e/likes", &reply); err != nil {
			return err
		}
		if reply.Count < 1 {
			return fmt.Errorf("count through the NodePort is %d after the like", reply.Count)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := c.everyPodHolds(30 * time.Second); err != nil {
		return err
	}
	fmt.Printf("     the like reached every pod in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func (c *checker) scale() error {
	for i := range 20 {
		user := fmt.Sprintf("before-scale-%02d", i)
		if _, err := c.like(c.nodeURL, "k8s-e2e", user); err != nil {
			return err
		}
		c.ack("k8s-e2e", user)
	}
	if _, err := c.kc("scale", "statefulset/likes-worker", "--replicas=5"); err != nil {
		return err
	}
	// One new pod at a time, each Ready (caught up) before the next.
	if _, err := c.kc("rollout", "status", "statefulset/likes-worker", "--timeout=240s"); err != nil {
		return err
	}
	if err := c.allReady(6, 60*time.Second); err != nil {
		return err
	}
	if err := c.oneCluster(60 * time.Second); err != nil {
		return err
	}
	return c.everyPodHolds(60 * time.Second)
}

func (c *checker) restartMaster() error {
	ps, err := c.pods()
	if err != nil {
		return err
	}
	var old corev1.Pod
	for _, p := range ps {
		if p.Labels["workertype"] == "master" {
			old = p
		}
	}
	if old.Name == "" {
		return errors.New("no master pod")
	}
	if _, err := c.kc("delete", "pod", old.Name, "--wait=false"); err != nil {
		return err
	}
	// The StatefulSet starts a new pod of the same name once the old one
	// has exited: new is a new UID.
	if err := eventually(120*time.Second, func() error {
		ps, err := c.pods()
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Labels["workertype"] == "master" && p.UID != old.UID && ready(p) {
				return nil
			}
		}
		return errors.New("no new master Ready")
	}); err != nil {
		return err
	}
	if err := c.oneCluster(120 * time.Second); err != nil {
		return err
	}
	return c.everyPodHolds(60 * time.Second)
}

// evictTwo asks the eviction API (what kubectl drain uses) for two workers
// at once: the PodDisruptionBudget grants the first and refuses the second;
// the evicted pod's replacement then holds every like.
func (c *checker) evictTwo() error {
	ps, err := c.pods()
	if err != nil {
		return err
	}
	var workers []string
	for _, p := range ps {
		if p.Labels["workertype"] == "worker" {
			workers = append(workers, p.Name)
		}
	}
	if len(workers) < 2 {
		return fmt.Errorf("%d workers", len(workers))
	}
	// The first eviction waits for the disruption controller to have
	// computed the budget (until then every eviction is refused).
	if err := eventually(60*time.Second, func() error { return c.evict(workers[0]) }); err != nil {
		return err
	}
	err = c.evict(workers[1])
	if err == nil {
		return fmt.Errorf("evicted %s and %s at once: the PodDisruptionBudget did not hold", workers[0], workers[1])
	}
	if !strings.Contains(err.Error(), "disruption budget") {
		return fmt.Errorf("second eviction refused for another reason: %w", err)
	}
	fmt.Printf("     evicted %s; %s refused: %s\n", workers[0], workers[1], firstLine(err.Error()))
	if err := c.allReady(6, 120*time.Second); err != nil {
		return err
	}
	if err := c.oneCluster(120 * time.Second); err != nil {
		return err
	}
	return c.everyPodHolds(60 * time.Second)
}

func (c *checker) evict(pod string) error {
	body := fmt.Sprintf(`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":%q,"namespace":"default"}}`, pod)
	f, err := os.CreateTemp("", "eviction-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(body); err != nil {
		return err
	}
	f.Close()
	_, err = c.kc("create", "--raw", "/api/v1/namespaces/default/pods/"+pod+"/eviction", "-f", f.Name())
	return err
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s)-i > 20 {
		return s[i+2:]
	}
	return s
}

// ---------------------------------------------------------------- under load

// load posts likes of fresh users to one post through the NodePort, from
// four clients, until stop or its bound: each request may land on any pod.
type load struct {
	post   string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	next   atomic.Int64

	start    time.Time
	mu       sync.Mutex
	acked    []string        // 200 or 201: on w pods
	accepted []string        // 202: on the pod that answered
	failed   map[string]int  // by kind
	failedAt []time.Duration // since start, in order
}

func (c *checker) startLoad(post string, max time.Duration) *load {
	l := &load{post: post, failed: map[string]int{}, start: time.Now()}
	l.ctx, l.cancel = context.WithTimeout(context.Background(), max)
	for range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for l.ctx.Err() == nil {
				user := fmt.Sprintf("%s-%06d", post, l.next.Add(1))
				status, err := c.like(c.nodeURL, post, user)
				l.mu.Lock()
				switch {
				case err != nil:
					l.failed[shortErr(err)]++
					l.failedAt = append(l.failedAt, time.Since(l.start))
				case status == http.StatusAccepted:
					l.accepted = append(l.accepted, user)
				default:
					l.acked = append(l.acked, user)
				}
				l.mu.Unlock()
				pause := 10 * time.Millisecond
				if err != nil {
					pause = 100 * time.Millisecond // no pod answers: no spin
				}
				select {
				case <-l.ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}
	return l
}

func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// flowing waits until n more likes are acknowledged than when it was
// called: likes flow (again).
func (l *load) flowing(n int, timeout time.Duration) error {
	from := l.ackedCount()
	return eventually(timeout, func() error {
		if l.ctx.Err() != nil {
			return fmt.Errorf("the load's bound ended: %w", l.ctx.Err())
		}
		if got := l.ackedCount() - from; got < n {
			return fmt.Errorf("%d of %d likes acknowledged through the NodePort", got, n)
		}
		return nil
	})
}

// halt ends the load and waits for its clients; it is idempotent.
func (l *load) halt() {
	l.cancel()
	l.wg.Wait()
}

// stop halts the load and hands every stored like (200, 201 and 202) to
// the checker, which then wants it on every pod.
func (l *load) stop(c *checker) {
	l.halt()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range l.acked {
		c.ack(l.post, u)
	}
	for _, u := range l.accepted {
		c.ack(l.post, u)
	}
}

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var fails []string
	n := 0
	for k, v := range l.failed {
		fails = append(fails, fmt.Sprintf("%d× %s", v, k))
		n += v
	}
	sort.Strings(fails)
	return fmt.Sprintf("%d likes acknowledged (200/201), %d accepted (202), %d failed %v%s",
		len(l.acked), len(l.accepted), n, fails, bursts(l.failedAt))
}

// bursts groups failure times into bursts (no gap over 2s): when requests
// failed, to set beside what the step did then.
func bursts(at []time.Duration) string {
	if len(at) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" at")
	from, n := at[0], 0
	for i, t := range at {
		n++
		if i == len(at)-1 || at[i+1]-t > 2*time.Second {
			fmt.Fprintf(&b, " +%.1f–%.1fs (%d)", from.Seconds(), t.Seconds(), n)
			if i < len(at)-1 {
				from, n = at[i+1], 0
			}
		}
	}
	return b.String()
}

// caughtUp waits for one cluster of every pod and then for every stored
// like on every pod, and prints how long the last took: a like that was
// lost never comes back, so the wait is bounded and its failure names what
// is missing where.
func (c *checker) caughtUp(l *load) error {
	if err := c.oneCluster(120 * time.Second); err != nil {
		return err
	}
	start := time.Now()
	if err := c.everyPodHolds(120 * time.Second); err != nil {
		return fmt.Errorf("likes lost: %w", err)
	}
	ps, err := c.pods()
	if err != nil {
		return err
	}
	fmt.Printf("     %s\n", l)
	fmt.Printf("     0 lost: every one of them on each of the %d pods, read from each pod, %.1fs after they were one cluster\n",
		len(ps), time.Since(start).Seconds())
	return nil
}

// deleteAll deletes every likesd pod at once while likes flow: each comes
// back under its name, on its volume, with its likes. Nothing is handed off
// (every pod is leaving), so what the new pods hold they read from their
// disks or from each other.
func (c *checker) deleteAll(max time.Duration) error {
	before, err := c.pods()
	if err != nil {
		return err
	}
	old := map[types.UID]bool{}
	for _, p := range before {
		old[p.UID] = true
	}
	l := c.startLoad("delete-all", max)
	defer l.halt()
	if err := l.flowing(200, 60*time.Second); err != nil {
		return err
	}
	start := time.Now()
	if _, err := c.kc("delete", "pods", "-l", selector, "--wait=false"); err != nil {
		return err
	}
	if err := eventually(4*time.Minute, func() error {
		ps, err := c.pods()
		if err != nil {
			return err
		}
		if len(ps) != len(before) {
			return fmt.Errorf("%d pods, want %d", len(ps), len(before))
		}
		for _, p := range ps {
			if old[p.UID] {
				return fmt.Errorf("pod %s not replaced yet", p.Name)
			}
			if !ready(p) {
				return fmt.Errorf("pod %s not Ready (%s)", p.Name, p.Status.Phase)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Printf("     every one of the %d pods deleted at once (+%.1fs of the load); all back and Ready after %.1fs\n",
		len(before), start.Sub(l.start).Seconds(), time.Since(start).Seconds())
	if err := l.flowing(100, 60*time.Second); err != nil {
		return err
	}
	l.stop(c)
	if err := c.allReady(len(before), 60*time.Second); err != nil {
		return err
	}
	if err := c.caughtUp(l); err != nil {
		return err
	}
	return c.recoveredFromVolumes(before)
}

// recoveredFromVolumes wants every new pod of these names to have started
// from likes on its volume: its log's "recovered the data dir" line counts
// records or snapshot likes.
func (c *checker) recoveredFromVolumes(pods []corev1.Pod) error {
	now, err := c.pods()
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, p := range pods {
		names[p.Name] = true
	}
	var got []string
	for _, p := range now {
		if !names[p.Name] {
			continue
		}
		var rec recovery
		if err := eventually(30*time.Second, func() error {
			var err error
			rec, err = c.recovered(p)
			return err
		}); err != nil {
			return err
		}
		if rec.Records+rec.SnapshotLikes == 0 {
			return fmt.Errorf("pod %s started from an empty data dir: its volume was not the one it had", p.Name)
		}
		got = append(got, fmt.Sprintf("%s %d", p.Name, rec.Records+rec.SnapshotLikes))
	}
	fmt.Printf("     likes (records + snapshot) each recovered from its volume: %s\n", strings.Join(got, ", "))
	return nil
}

type recovery struct {
	Message       string `json:"message"`
	Records       int    `json:"records"`
	SnapshotLikes int    `json:"snapshot_likes"`
	Incomplete    bool   `json:"incomplete"`
}

// recovered reads the "recovered the data dir" line from a pod's log.
func (c *checker) recovered(p corev1.Pod) (recovery, error) {
	f, err := os.Open(c.logFile(p.Name, p.UID))
	if err != nil {
		return recovery{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r recovery
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Message == "recovered the data dir" {
			if r.Incomplete {
				return r, fmt.Errorf("pod %s: its data dir was damaged", p.Name)
			}
			return r, nil
		}
	}
	return recovery{}, fmt.Errorf("pod %s: no \"recovered the data dir\" in its log yet", p.Name)
}

// rollout restarts both StatefulSets while likes flow through the NodePort,
// and then wants every stored like on every (all new) pod.
func (c *checker) rollout(max time.Duration) error {
	l := c.startLoad("rollout", max)
	defer l.halt()
	if err := l.flowing(100, 60*time.Second); err != nil {
		return err // likes already flowing when the rollout starts
	}
	restarted := time.Since(l.start)
	if _, err := c.kc("rollout", "restart", "statefulset/likes-master", "statefulset/likes-worker"); err != nil {
		return err
	}
	for _, s := range []string{"statefulset/likes-master", "statefulset/likes-worker"} {
		if _, err := c.kc("rollout", "status", s, "--timeout=300s"); err != nil {
			return err
		}
	}
	fmt.Printf("     load from %s; rollout restart at +%.1fs, both StatefulSets rolled out at +%.1fs\n",
		l.start.UTC().Format("15:04:05.000"), restarted.Seconds(), time.Since(l.start).Seconds())
	if err := l.flowing(100, 60*time.Second); err != nil {
		return err // and still flowing when it ends
	}
	l.stop(c)
	ps, err := c.pods()
	if err != nil {
		return err
	}
	if err := c.allReady(len(ps), 120*time.Second); err != nil {
		return err
	}
	// Every pod is new: the likes from before survived by hand-off, on the
	// pods' volumes and by catch-up.
	return c.caughtUp(l)
}

// scaleDownUp scales the workers down to one and up to three again while
// likes flow. The StatefulSet stops one pod at a time; each hands off. The
// removed pods' claims stay Bound, and the pods scaled up again reattach
// them and start from the likes on them.
func (c *checker) scaleDownUp(max time.Duration) error {
	l := c.startLoad("scale-down-up", max)
	defer l.halt()
	if err := l.flowing(100, 60*time.Second); err != nil {
		return err
	}
	if _, err := c.kc("scale", "statefulset/likes-worker", "--replicas=1"); err != nil {
		return err
	}
	start := time.Now()
	if err := c.allReady(2, 4*time.Minute); err != nil {
		return err
	}
	fmt.Printf("     workers scaled down to 1 in %.1fs\n", time.Since(start).Seconds())
	out, err := c.kc("get", "pvc", "-l", "application=likes-distributed,workertype=worker",
		"-o", "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}")
	if err != nil {
		return err
	}
	claims := strings.Fields(out)
	bound := 0
	for _, cl := range claims {
		if strings.HasSuffix(cl, "=Bound") {
			bound++
		}
	}
	if bound < 5 {
		return fmt.Errorf("want the 5 workers' claims kept and Bound after scaling down, got %v", claims)
	}
	fmt.Printf("     the removed workers' claims stay: %s\n", strings.Join(claims, " "))
	if err := l.flowing(100, 60*time.Second); err != nil {
		return err
	}
	before, err := c.pods()
	if err != nil {
		return err
	}
	if _, err := c.kc("scale", "statefulset/likes-worker", "--replicas=3"); err != nil {
		return err
	}
	start = time.Now()
	if _, err := c.kc("rollout", "status", "statefulset/likes-worker", "--timeout=240s"); err != nil {
		return err
	}
	if err := c.allReady(4, 120*time.Second); err != nil {
		return err
	}
	fmt.Printf("     scaled up to 3 again in %.1fs\n", time.Since(start).Seconds())
	if err := l.flowing(100, 60*time.Second); err != nil {
		return err
	}
	l.stop(c)
	if err := c.caughtUp(l); err != nil {
		return err
	}
	// The pods that came back: every pod now that was not there before.
	now, err := c.pods()
	if err != nil {
		return err
	}
	var back []corev1.Pod
	for _, p := range now {
		if !slices.ContainsFunc(before, func(b corev1.Pod) bool { return b.UID == p.UID }) {
			back = append(back, p)
		}
	}
	if len(back) != 2 {
		return fmt.Errorf("%d new pods after scaling up, want 2", len(back))
	}
	return c.recoveredFromVolumes(back)
}

// wipeOne wipes one worker as docs/deploy.md says: its claim deleted
// (held until the pod is gone), then its pod. The StatefulSet makes a new
// pod and a new, empty claim; the pod starts empty and catches up.
func (c *checker) wipeOne() error {
	const pod, claim = "likes-worker-1", "data-likes-worker-1"
	ps, err := c.pods()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(ps, func(p corev1.Pod) bool { return p.Name == pod })
	if i < 0 {
		return fmt.Errorf("no pod %s", pod)
	}
	old := ps[i].UID
	oldVolume, err := c.kc("get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}")
	if err != nil {
		return err
	}
	if _, err := c.kc("delete", "pvc", claim, "--wait=false"); err != nil {
		return err
	}
	if _, err := c.kc("delete", "pod", pod, "--wait=false"); err != nil {
		return err
	}
	var fresh corev1.Pod
	if err := eventually(3*time.Minute, func() error {
		ps, err := c.pods()
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Name == pod && p.UID != old && ready(p) {
				fresh = p
				return nil
			}
		}
		return fmt.Errorf("no new %s Ready", pod)
	}); err != nil {
		return err
	}
	volume, err := c.kc("get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}")
	if err != nil {
		return err
	}
	if volume == oldVolume {
		return fmt.Errorf("%s is still on volume %s", claim, volume)
	}
	var rec recovery
	if err := eventually(30*time.Second, func() error {
		var err error
		rec, err = c.recovered(fresh)
		return err
	}); err != nil {
		return err
	}
	if n := rec.Records + rec.SnapshotLikes; n != 0 {
		return fmt.Errorf("the wiped %s recovered %d likes", pod, n)
	}
	fmt.Printf("     %s wiped: a new claim on volume %s (was %s), started empty\n", pod, volume, oldVolume)
	if err := c.allReady(len(ps), 60*time.Second); err != nil {
		return err
	}
	if err := c.oneCluster(60 * time.Second); err != nil {
		return err
	}
	return c.everyPodHolds(120 * time.Second)
}

func shortErr(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "connection reset"):
		return "connection reset"
	case strings.Contains(err.Error(), "EOF"):
		return "EOF"
	}
	return err.Error()
}

// ---------------------------------------------------------------- logs

// followLogs streams the log of every likesd pod that appears into
// log-dir/POD.log until the container ends, so the shutdown of pods deleted
// by the restart and the rollout is kept too.
func (c *checker) followLogs(ctx context.Context) {
	defer c.logsWG.Done()
	for ctx.Err() == nil {
		out, err := c.kc("get", "pods", "-l", selector, "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.status.phase}{\"\\n\"}{end}")
		if err == nil {
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(line)
				if len(f) != 3 || f[2] == "Pending" {
					continue
				}
				uid := types.UID(f[1])
				c.logsMu.Lock()
				if !c.following[uid] {
					c.following[uid] = true
					c.logsWG.Add(1)
					go c.follow(ctx, f[0], uid)
				}
				c.logsMu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// logFile is where one pod's log is kept: by name and UID, since a
// StatefulSet's pod comes back under the same name.
func (c *checker) logFile(pod string, uid types.UID) string {
	return filepath.Join(c.logDir, fmt.Sprintf("%s-%.8s.log", pod, uid))
}

// follow streams one pod's log until its container ends or ctx is done
// (the checks are over). It starts while the pod of that UID runs, so the
// name still means it.
func (c *checker) follow(ctx context.Context, pod string, uid types.UID) {
	defer c.logsWG.Done()
	name := c.logFile(pod, uid)
	out, err := os.Create(name)
	if err != nil {
		return
	}
	defer out.Close()
	// kubectl's own complaints (a pod deleted mid-stream) are not the pod's.
	errs, err := os.Create(strings.TrimSuffix(name, ".log") + ".kubectl-stderr")
	if err != nil {
		return
	}
	defer errs.Close()
	cmd := exec.CommandContext(ctx, c.kubectl[0], append(slices.Clone(c.kubectl[1:]), "logs", "-f", pod)...)
	cmd.Stdout, cmd.Stderr = out, errs
	cmd.WaitDelay = time.Second
	_ = cmd.Run()
}

// logsClean fails on any error-level or non-JSON line in the pods' logs,
// and on a pod whose log read empty. Failures are grouped by what they say,
// with a count and the pods: one line per kind of error.
func (c *checker) logsClean() error {
	files, _ := filepath.Glob(filepath.Join(c.logDir, "*.log"))
	kinds := map[string]map[string]int{} // kind -> pod -> lines
	lines := 0
	for _, name := range files {
		pod := strings.TrimSuffix(filepath.Base(name), ".log")
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		n := 0
		for sc.Scan() {
			n++
			lines++
			if kind := badLine(sc.Text()); kind != "" {
				if kinds[kind] == nil {
					kinds[kind] = map[string]int{}
				}
				kinds[kind][pod]++
			}
		}
		f.Close()
		if n == 0 {
			// A check that read nothing proves nothing: every pod logs
			// "likesd started".
			stderr, _ := os.ReadFile(strings.TrimSuffix(name, ".log") + ".kubectl-stderr")
			kinds[fmt.Sprintf("no log read (%s)", bytes.TrimSpace(stderr))] = map[string]int{pod: 1}
		}
	}
	fmt.Printf("     %d log lines from %d pods read\n", lines, len(files))
	if len(kinds) == 0 {
		return nil
	}
	var out []string
	for kind, pods := range kinds {
		total := 0
		for _, n := range pods {
			total += n
		}
		out = append(out, fmt.Sprintf("%5d× %s  (%d pods)", total, kind, len(pods)))
	}
	sort.Strings(out)
	return fmt.Errorf("error lines in the pods' logs (full logs: %s):\n%s", c.logDir, strings.Join(out, "\n"))
}

// badLine names the kind of an error-level or non-JSON log line, or
// returns "" for a line that is fine.
func badLine(line string) string {
	var e struct {
		Level     string `json:"level"`
		Component string `json:"component"`
		Message   string `json:"message"`
		Method    string `json:"method"`
		Route     string `json:"route"`
		Status    int    `json:"status"`
	}
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		return "not JSON: " + line[:min(len(line), 120)]
	}
	if e.Level != "error" && e.Level != "fatal" && e.Level != "panic" {
		return ""
	}
	msg := e.Message
	if e.Status != 0 {
		msg = fmt.Sprintf("%s %s %s → %d", msg, e.Method, e.Route, e.Status)
	}
	// Addresses and ports differ from line to line; the kind does not.
	msg = regexp.MustCompile(`\[?[0-9a-f.:]*\]?:[0-9]+`).ReplaceAllString(msg, "ADDR")
	return fmt.Sprintf("%s [%s] %s", e.Level, e.Component, msg)
}
