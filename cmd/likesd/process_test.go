package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/client"
)

// These tests build the real binary and run real likesd processes on
// loopback with millisecond intervals.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func likesdBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "likesd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "likesd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

func freePort(t testing.TB) int {
	t.Helper()
	// A TCP and a UDP socket on the same port: memberlist needs both.
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

type proc struct {
	name       string
	httpAddr   string
	gossipAddr string
	cmd        *exec.Cmd
	logs       *syncBuffer
	exited     chan struct{}
	exitErr    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fastFlags shrink every interval, as the in-process cluster tests do.
var fastFlags = []string{
	"--push-pull-interval", "500ms", "--gossip-interval", "20ms", "--probe-interval", "200ms",
	"--probe-timeout", "100ms", "--rejoin-interval", "300ms", "--log-level", "info",
}

// startProc runs likesd on fresh loopback ports (or gossipPort, to restart
// in place), joining seeds.
func startProc(t testing.TB, name string, gossipPort int, seeds ...string) *proc {
	t.Helper()
	return startProcFlags(t, name, nil, gossipPort, seeds...)
}

// startProcFlags is startProc with extra flags.
func startProcFlags(t testing.TB, name string, extra []string, gossipPort int, seeds ...string) *proc {
	t.Helper()
	if gossipPort == 0 {
		gossipPort = freePort(t)
	}
	p := &proc{
		name:       name,
		httpAddr:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		gossipAddr: fmt.Sprintf("127.0.0.1:%d", gossipPort),
		logs:       &syncBuffer{},
		exited:     make(chan struct{}),
	}
	args := append([]string{"--http-addr", p.httpAddr, "--gossip-addr", p.gossipAddr}, fastFlags...)
	args = append(args, extra...)
	if len(seeds) > 0 {
		args = append(args, "--join", strings.Join(seeds, ","))
	}
	p.cmd = exec.Command(likesdBinary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no LIKESD_* from the outside
	require.NoError(t, p.cmd.Start())
	go func() { p.exitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("--- logs of %s (%s)\n%s", p.name, p.httpAddr, p.logs.String())
		}
	})
	require.Eventually(t, func() bool { return p.api().Ready(context.Background()) }, 10*time.Second, 20*time.Millisecond,
		"%s never became ready", name)
	return p
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

func (p *proc) api() *client.Client { return client.New("http://"+p.httpAddr, httpClient) }

func (p *proc) like(t testing.TB, post, user string) int {
	t.Helper()
	created, _, err := p.api().Like(context.Background(), post, user)
	require.NoError(t, err)
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

func (p *proc) counts(_ testing.TB, posts ...string) map[string]int {
	got, _ := p.api().Counts(context.Background(), posts...)
	return got
}

func (p *proc) aliveMembers(testing.TB) []string {
	c, _ := p.api().Cluster(context.Background())
	return c.Alive()
}

func (p *proc) self(t testing.TB) string {
	c, err := p.api().Cluster(context.Background())
	require.NoError(t, err)
	return c.Self
}

func waitCounts(t *testing.T, want map[string]int, procs ...*proc) {
	t.Helper()
	posts := make([]string, 0, len(want))
	for p := range want {
		posts = append(posts, p)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, p := range procs {
			assert.Equal(c, want, p.counts(t, posts...), "node %s", p.name)
		}
	}, 20*time.Second, 25*time.Millisecond)
}

func waitAlive(t *testing.T, n int, procs ...*proc) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, p := range procs {
			assert.Len(c, p.aliveMembers(t), n, "node %s", p.name)
		}
	}, 20*time.Second, 25*time.Millisecond)
}

func TestProcessesConvergeRecoverAndLeave(t *testing.T) {
	n1 := startProc(t, "n1", 0)
	n2 := startProc(t, "n2", 0, n1.gossipAddr)
	n3 := startProc(t, "n3", 0, n1.gossipAddr)
	waitAlive(t, 3, n1, n2, n3)

	// Likes through different nodes, the same user retried through several.
	assert.Equal(t, http.StatusCreated, n1.like(t, "p1", "alice"))
	assert.Equal(t, http.StatusCreated, n2.like(t, "p1", "bob"))
	assert.Equal(t, http.StatusCreated, n3.like(t, "p2", "alice"))
	waitCounts(t, map[string]int{"p1": 2, "p2": 1}, n1, n2, n3)
	assert.Equal(t, http.StatusOK, n3.like(t, "p1", "alice"), "alice's like arrived by gossip already")
	resp, err := httpClient.Get("http://" + n1.httpAddr + "/metrics")
	require.NoError(t, err)
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(scrape), `likesd_likes_total{result="new"} 1`)
	assert.Contains(t, string(scrape), `likesd_members{state="alive"} 3`)
	waitCounts(t, map[string]int{"p1": 2, "p2": 1}, n1, n2, n3)

	// n3 dies without a word, misses likes, and comes back on its port.
	_, gport, _ := net.SplitHostPort(n3.gossipAddr)
	require.NoError(t, n3.cmd.Process.Signal(syscall.SIGKILL))
	<-n3.exited
	for i := 0; i < 50; i++ {
		n1.like(t, "p3", fmt.Sprintf("u%d", i))
		n2.like(t, "p1", fmt.Sprintf("u%d", i))
	}
	var port int
	_, err = fmt.Sscan(gport, &port)
	require.NoError(t, err)
	n3 = startProc(t, "n3-restarted", port, n1.gossipAddr)
	waitCounts(t, map[string]int{"p1": 52, "p2": 1, "p3": 50}, n1, n2, n3)
	waitAlive(t, 3, n1, n2, n3)

	// SIGTERM: n2 exits cleanly and the others see it leave.
	name2 := n2.self(t)
	require.NoError(t, n2.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-n2.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("n2 did not exit after SIGTERM")
	}
	assert.NoError(t, n2.exitErr, "exit status 0")
	assert.Contains(t, n2.logs.String(), `"message":"left the cluster"`)
	waitAlive(t, 2, n1, n3)
	for _, p := range []*proc{n1, n3} {
		assert.NotContains(t, p.aliveMembers(t), name2)
		assert.Regexp(t, `"member":"`+regexp.QuoteMeta(name2)+`"[^\n]*"message":"member left"`, p.logs.String(),
			"%s logged n2 leaving (not failing)", p.name)
	}
}

// BenchmarkProcessConvergence measures, with 3 real processes on loopback
// and the fast intervals above, the time from a like's 201 on one node
// until both others report it.
func BenchmarkProcessConvergence(b *testing.B) {
	n1 := startProc(b, "n1", 0)
	n2 := startProc(b, "n2", 0, n1.gossipAddr)
	n3 := startProc(b, "n3", 0, n1.gossipAddr)
	for len(n1.aliveMembers(b)) != 3 || len(n2.aliveMembers(b)) != 3 || len(n3.aliveMembers(b)) != 3 {
		time.Sleep(10 * time.Millisecond)
	}
	nodes := []*proc{n1, n2, n3}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		post := fmt.Sprintf("bench%d", i)
		origin := nodes[i%3]
		if origin.like(b, post, "u") != http.StatusCreated {
			b.Fatal("like failed")
		}
		for _, p := range nodes {
			for p.counts(b, post)[post] != 1 {
				time.Sleep(time.Millisecond)
			}
		}
	}
}

// BenchmarkProcessCatchUp measures how long a node restarted after SIGKILL
// takes to hold every like (1000 likes made while it was down).
func BenchmarkProcessCatchUp(b *testing.B) {
	n1 := startProc(b, "n1", 0)
	n2 := startProc(b, "n2", 0, n1.gossipAddr)
	for i := 0; i < 1000; i++ {
		n1.like(b, "p", fmt.Sprintf("u%d", i))
	}
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		_ = n2.cmd.Process.Kill()
		<-n2.exited
		_, gport, _ := net.SplitHostPort(n2.gossipAddr)
		var port int
		fmt.Sscan(gport, &port)
		b.StartTimer()
		start := time.Now()
		n2 = startProc(b, "n2", port, n1.gossipAddr)
		for n2.counts(b, "p")["p"] != 1000 {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-catch-up")
}

// A user likes through one node and reloads through another (a load
// balancer's choice): with the like's version the read answers only once
// that node has the like. n1 frames its likes every second and anti-entropy
// runs once a minute, so without the version n2 would not have it yet.
func TestReadYourWritesThroughAnotherNode(t *testing.T) {
	slow := []string{"--flush-interval", "1s", "--sync-interval", "1m", "--read-wait", "10s", "--write-timeout", "5s"}
	n1 := startProcFlags(t, "n1", slow, 0)
	n2 := startProcFlags(t, "n2", slow, 0, n1.gossipAddr)
	waitAlive(t, 2, n1, n2)
	ctx := context.Background()
	for i := range 5 {
		user := fmt.Sprint("u", i)
		r, err := n1.api().LikeAt(ctx, "p", user, "1")
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, r.Status)
		require.Equal(t, 1, r.Replicas)
		liked, err := n2.api().HasLiked(ctx, "p", user, r.Version)
		require.NoError(t, err)
		assert.True(t, liked, "n2 answers with %s's like once it has it", user)
	}

	// At the default level (2) the like is on n2 before n1 answers 201.
	r, err := n1.api().LikeAt(ctx, "p", "w2", "")
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, r.Status)
	assert.Equal(t, 2, r.Replicas)
	liked, err := n2.api().HasLiked(ctx, "p", "w2", "")
	require.NoError(t, err)
	assert.True(t, liked, "acknowledged means n2 holds it")
}

// A node over its memory budget refuses new likes with a 507 and says so
// in /readyz, its log and its metrics (issue #20). The budget is a share
// of --memory-limit here, a limit no process meets.
func TestMemoryBudgetInAProcess(t *testing.T) {
	if _, ok := cgroupMemoryMax(); ok {
		t.Skip("the container's memory limit would be the budget's")
	}
	p := startProcFlags(t, "n1", []string{"--memory-limit", "4MiB", "--memory-refuse-at", "50"}, 0)
	base := "http://" + p.httpAddr
	get := func(path string) (int, string) {
		resp, err := httpClient.Get(base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	require.Eventually(t, func() bool {
		_, body := get("/readyz")
		return strings.Contains(body, "over memory budget")
	}, 10*time.Second, 20*time.Millisecond)
	resp, err := httpClient.Post(base+"/v1/posts/p/likes", "application/json", strings.NewReader(`{"user":"u"}`))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusInsufficientStorage, resp.StatusCode, string(body))
	assert.Contains(t, string(body), `"over_memory_budget"`)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	code, _ := get("/v1/posts/p/likes")
	assert.Equal(t, http.StatusOK, code, "reads are served")
	_, metrics := get("/metrics")
	assert.Contains(t, metrics, "likesd_memory_budget_over 1")
	assert.Contains(t, metrics, `likesd_http_refused_total{reason="memory"} 1`)
	assert.Equal(t, 1, strings.Count(p.logs.String(), "memory over budget"), "logged once")
}
