package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A node the write-level section stopped (SIGSTOP) still ends when the
// suite stops its processes: the interrupt is followed by SIGCONT, so it
// does not wait for the 10 s kill.
func TestStopProcsEndsAStoppedProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	require.NoError(t, cmd.Process.Signal(syscall.SIGSTOP))
	start := time.Now()
	stopProcs([]*exec.Cmd{cmd})
	assert.Less(t, time.Since(start), 5*time.Second, "ended by the interrupt, not the kill")
	require.NotNil(t, cmd.ProcessState)
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.True(t, ok)
	assert.Equal(t, syscall.SIGINT, ws.Signal())
}

func TestOnlyRejectsAnUnknownSectionBeforeStartingAnything(t *testing.T) {
	err := cmdSuite(context.Background(), []string{"--only", "writes,nope"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"nope"`)
}

// scrape sums the unlabelled counters of every node; a node that does not
// answer adds nothing.
func TestScrapeSumsNodesCounters(t *testing.T) {
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total 1.5\n" +
			"likesd_writes_replicated_total 90\nlikesd_writes_accepted_total 10\nlikesd_direct_batches_sent_total 20\n" +
			"likesd_acks_sent_total 40\nlikesd_breaker_opened_total 1\nlikesd_peer_breaker{peer=\"n2\",state=\"open\"} 1\n"))
	}))
	defer node.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	got := scrape(context.Background(), []string{node.URL, node.URL, gone.URL})
	assert.Equal(t, counters{cpu: 3, stored: 200, batches: 40, acks: 80, opened: 2, accepted: 20}, got)
	// 200 likes, each sent to two peers, in 40 batches: 10 a batch.
	assert.Equal(t, "15ms | 10.0 | 5.0 | 2", got.String())
	assert.Equal(t, "— | — | — | 0", got.minus(got).String())
}
