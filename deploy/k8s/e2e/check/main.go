// Command check is the test half of make k8s-e2e: with deploy/k8s applied
// to a real cluster, it checks likesd with real pods — every pod Ready, one
// cluster joined through DNS, likes through the NodePort reaching every pod,
// scaling, a master restart, and a rollout restart of both Deployments while
// likes flow with no acknowledged like lost — and that no pod logged an
// error. It runs where pod IPs and the node address are reachable (the
// cluster's network namespace) and drives the cluster with kubectl.
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
)

const selector = "application=likes-distributed"

type checker struct {
	kubectl   []string
	nodeURL   string // http://node:31001
	logDir    string
	http      *http.Client
	times     []timing
	logsMu    sync.Mutex
	following map[string]bool
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
	rolloutLoad := flag.Duration("rollout-max", 4*time.Minute, "bound on the rollout step (likes flow until both rollouts finish)")
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
		following: map[string]bool{},
		acked:     map[string]map[string]bool{},
	}
	err := c.run(*rolloutLoad)
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

func (c *checker) run(rolloutMax time.Duration) error {
	ctx, stopLogs := context.WithCancel(context.Background())
	c.logsWG.Add(1)
	go c.followLogs(ctx)

	steps := []struct {
		name string
		fn   func() error
	}{
		{"ready", func() error { return c.allReady(3, 60*time.Second) }},
		{"join", func() error { return c.oneCluster(60 * time.Second) }},
		{"like", c.likeThroughNodePort},
		{"scale", c.scale},
		{"master_restart", c.restartMaster},
		{"pdb_eviction", c.evictTwo},
		{"rollout", func() error { return c.rollout(rolloutMax) }},
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

// like posts one like; it reports whether the like was stored: 201 or 200
// (replicated), or 202 (stored on the pod, not yet replicated). A rollout
// is graceful (hand-off), so the checker holds every one of them to "never
// lost".
func (c *checker) like(base, post, user string) error {
	body := strings.NewReader(fmt.Sprintf(`{"user":%q}`, user))
	resp, err := c.http.Post(base+"/v1/posts/"+url.PathEscape(post)+"/likes", "application/json", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST like: %d", resp.StatusCode)
	}
	return nil
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
	if err := eventually(30*time.Second, func() error { return c.like(c.nodeURL, "k8s-e2e", "alice") }); err != nil {
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
		if err := c.like(c.nodeURL, "k8s-e2e", user); err != nil {
			return err
		}
		c.ack("k8s-e2e", user)
	}
	if _, err := c.kc("scale", "deployment/likes-worker", "--replicas=5"); err != nil {
		return err
	}
	if _, err := c.kc("rollout", "status", "deployment/likes-worker", "--timeout=180s"); err != nil {
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
	var old string
	for _, p := range ps {
		if p.Labels["workertype"] == "master" {
			old = p.Name
		}
	}
	if old == "" {
		return errors.New("no master pod")
	}
	if _, err := c.kc("delete", "pod", old, "--wait=false"); err != nil {
		return err
	}
	if err := eventually(120*time.Second, func() error {
		ps, err := c.pods()
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Labels["workertype"] == "master" && p.Name != old && ready(p) {
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

// rollout restarts both Deployments while likes flow through the NodePort,
// and then wants every acknowledged like on every (new) pod.
func (c *checker) rollout(max time.Duration) error {
	const post = "rollout"
	ctx, cancel := context.WithTimeout(context.Background(), max)
	defer cancel()
	var (
		mu       sync.Mutex
		acked    []string
		failures = map[string]int{}
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				user := fmt.Sprintf("r%06d", next.Add(1))
				err := c.like(c.nodeURL, post, user)
				mu.Lock()
				if err == nil {
					acked = append(acked, user)
				} else {
					failures[shortErr(err)]++
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second) // likes already flowing when the rollout starts
	_, err := c.kc("rollout", "restart", "deployment/likes-master", "deployment/likes-worker")
	if err == nil {
		_, err = c.kc("rollout", "status", "deployment/likes-master", "--timeout=240s")
	}
	if err == nil {
		_, err = c.kc("rollout", "status", "deployment/likes-worker", "--timeout=240s")
	}
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("the rollout took longer than %s", max)
	}
	time.Sleep(2 * time.Second) // and still flowing when it ends
	cancel()
	wg.Wait()
	if err != nil {
		return err
	}
	for _, u := range acked {
		c.ack(post, u)
	}
	var fails []string
	for k, v := range failures {
		fails = append(fails, fmt.Sprintf("%d× %s", v, k))
	}
	sort.Strings(fails)
	fmt.Printf("     %d likes acknowledged during the rollout, %d not %v\n", len(acked), int(next.Load())-len(acked), fails)
	if err := c.allReady(6, 120*time.Second); err != nil {
		return err
	}
	if err := c.oneCluster(120 * time.Second); err != nil {
		return err
	}
	// Every pod is new: the likes from before survived only by hand-off and
	// catch-up. A lost like never comes back, so the wait is bounded.
	return c.everyPodHolds(90 * time.Second)
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
		out, err := c.kc("get", "pods", "-l", selector, "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.phase}{\"\\n\"}{end}")
		if err == nil {
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(line)
				if len(f) != 2 || f[1] == "Pending" {
					continue
				}
				c.logsMu.Lock()
				if !c.following[f[0]] {
					c.following[f[0]] = true
					c.logsWG.Add(1)
					go c.follow(ctx, f[0])
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

// follow streams one pod's log until its container ends or ctx is done
// (the checks are over).
func (c *checker) follow(ctx context.Context, pod string) {
	defer c.logsWG.Done()
	out, err := os.Create(filepath.Join(c.logDir, pod+".log"))
	if err != nil {
		return
	}
	defer out.Close()
	// kubectl's own complaints (a pod deleted mid-stream) are not the pod's.
	errs, err := os.Create(filepath.Join(c.logDir, pod+".kubectl-stderr"))
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
