package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
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
func TestClusterScriptStopsOnCtrlC(t *testing.T) {
	bin := likesdBinary(t)
	var httpPorts, gossipPorts []string
	for range 3 {
		httpPorts = append(httpPorts, fmt.Sprint(freePort(t)))
		gossipPorts = append(gossipPorts, fmt.Sprint(freePort(t)))
	}
	logs := &syncBuffer{}
	cmd := exec.Command("bash", "../../scripts/cluster.sh", bin)
	cmd.Env = append(os.Environ(), "HTTP_PORTS="+strings.Join(httpPorts, " "), "GOSSIP_PORTS="+strings.Join(gossipPorts, " "))
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

	for _, port := range httpPorts {
		c := client.New("http://127.0.0.1:"+port, httpClient)
		require.Eventually(t, func() bool { return c.Ready(context.Background()) }, 15*time.Second, 20*time.Millisecond, logs.String())
	}
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
