package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/client"
)

// TestClusterScriptStopsOnCtrlC runs scripts/cluster.sh (make cluster) and
// interrupts it as a terminal's Ctrl-C does: SIGINT to the whole foreground
// process group. Every node stops gracefully and the script exits 0 (its
// old trap, `kill 0`, signalled itself again and again until bash crashed).
// A second run on the same data dirs starts with the first run's likes.
func TestClusterScriptStopsOnCtrlC(t *testing.T) {
	bin := likesdBinary(t)
	var httpPorts, gossipPorts []string
	for range 3 {
		httpPorts = append(httpPorts, fmt.Sprint(freePort(t)))
		gossipPorts = append(gossipPorts, fmt.Sprint(freePort(t)))
	}
	data := t.TempDir()

	run := func(during func(nodes []*client.Client)) {
		t.Helper()
		logs := &syncBuffer{}
		cmd := exec.Command("bash", "../../scripts/cluster.sh", bin)
		cmd.Env = append(os.Environ(), "HTTP_PORTS="+strings.Join(httpPorts, " "), "GOSSIP_PORTS="+strings.Join(gossipPorts, " "),
			"DATA_DIR="+data)
		cmd.Stdout, cmd.Stderr = logs, logs
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

		var nodes []*client.Client
		for _, port := range httpPorts {
			c := client.New("http://127.0.0.1:"+port, httpClient)
			require.Eventually(t, func() bool { return c.Ready(context.Background()) }, 15*time.Second, 20*time.Millisecond, logs.String())
			nodes = append(nodes, c)
		}
		during(nodes)
		require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGINT))
		select {
		case err := <-exited:
			require.NoError(t, err, "exit 0 after Ctrl-C:\n%s", logs.String())
		case <-time.After(30 * time.Second):
			t.Fatalf("still running after Ctrl-C:\n%s", logs.String())
		}
		out := logs.String()
		assert.NotContains(t, out, "Segmentation fault")
		assert.Equal(t, 3, strings.Count(out, " stopped"), "each node shut down gracefully:\n%s", out)
	}

	run(func(nodes []*client.Client) {
		r, err := nodes[1].LikeAt(context.Background(), "p", "alice", "")
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, r.Status, "acknowledged by w=2 nodes")
	})
	for _, n := range []string{"n1", "n2", "n3"} {
		markers, err := filepath.Glob(filepath.Join(data, n, "gen-*"))
		require.NoError(t, err)
		assert.NotEmpty(t, markers, "%s keeps its data dir in DATA_DIR/%s", n, n)
	}
	run(func(nodes []*client.Client) {
		// Ready means caught up with a founder, which may not have held
		// every like; the like is back on every node once they repair.
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			for i, c := range nodes {
				n, err := c.Count(context.Background(), "p")
				if assert.NoError(ct, err) {
					assert.Equal(ct, 1, n, "node %d has the first run's like", i+1)
				}
			}
		}, 10*time.Second, 20*time.Millisecond)
	})
}
