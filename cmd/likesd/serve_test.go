package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLogsOfOneRun runs one node in process with each log format and stops
// it: logs into a pipe or file carry no terminal colors, and every line from
// the start on names the node, the shutdown lines included.
func TestLogsOfOneRun(t *testing.T) {
	tests := []struct {
		format, wantNode string
	}{
		{"console", "node=n7"},
		{"json", `"node":"n7"`},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			logs := &syncBuffer{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan int, 1)
			args := []string{"--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--node-name", "n7", "--log-format", tt.format}
			go func() {
				done <- run(ctx, args, env(map[string]string{"LIKESD_PUSH_PULL_INTERVL": "1s"}), &syncBuffer{}, logs)
			}()
			require.Eventually(t, func() bool { return strings.Contains(logs.String(), "likesd started") }, 10*time.Second, 10*time.Millisecond)
			cancel()
			select {
			case code := <-done:
				require.Equal(t, 0, code, logs.String())
			case <-time.After(20 * time.Second):
				t.Fatal("no exit after cancel")
			}
			out := logs.String()
			assert.NotContains(t, out, "\x1b[", "no ANSI escapes when the output is no terminal")
			var sawStarted, sawShuttingDown, sawStopped bool
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				sawStarted = sawStarted || strings.Contains(line, "likesd started")
				sawShuttingDown = sawShuttingDown || strings.Contains(line, "shutting down")
				sawStopped = sawStopped || strings.Contains(line, "stopped")
				assert.Contains(t, line, tt.wantNode, "every line names the node: %s", line)
			}
			assert.True(t, sawStarted && sawShuttingDown && sawStopped, out)
			assert.Contains(t, out, "LIKESD_PUSH_PULL_INTERVL", "an unknown LIKESD_ variable is warned about")
		})
	}
}

// --admin-addr moves the operator's routes off the API's port (finding 4 of
// issue #20), and a node started with it shuts down cleanly.
func TestAdminAddr(t *testing.T) {
	httpAddr, adminAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	logs := &syncBuffer{}
	args := []string{"--http-addr", httpAddr, "--admin-addr", adminAddr, "--gossip-addr", "127.0.0.1:0", "--log-level", "warn"}
	go func() { done <- run(ctx, args, nil, &syncBuffer{}, logs) }()
	get := func(addr, path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Eventually(t, func() bool { return get(adminAddr, "/readyz") == http.StatusOK }, 10*time.Second, 10*time.Millisecond, logs.String())
	for _, p := range []string{"/metrics", "/v1/cluster", "/healthz", "/debug/pprof/"} {
		assert.Equal(t, http.StatusOK, get(adminAddr, p), "admin %s", p)
	}
	for _, p := range []string{"/metrics", "/v1/cluster", "/healthz", "/readyz", "/debug/pprof/"} {
		assert.Equal(t, http.StatusNotFound, get(httpAddr, p), "API %s", p)
	}
	assert.Equal(t, http.StatusOK, get(httpAddr, "/v1/posts/p/likes"))
	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after cancel")
	}
}
