package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/client"
)

// These tests run real likesd processes with --data-dir: every node stopped
// or killed at once, two processes on one directory, a stale process that
// resumes, a disk that fills up.

// load likes fresh users through random nodes until stop is closed, and
// returns the likes acknowledged with 200 or 201.
type load struct {
	mu    sync.Mutex
	acked map[[2]string]bool
	sent  int
	codes map[int]int
	wg    sync.WaitGroup
	stop  chan struct{}
}

func startLoad(procs []*proc, workers int) *load {
	l := &load{acked: map[[2]string]bool{}, codes: map[int]int{}, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			hc := &http.Client{Timeout: 2 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				p := procs[rng.IntN(len(procs))]
				post, user := fmt.Sprintf("p%d", rng.IntN(20)), fmt.Sprintf("w%d-%d", w, i)
				r, err := client.New("http://"+p.httpAddr, hc).LikeAt(context.Background(), post, user, "")
				l.mu.Lock()
				l.sent++
				l.codes[r.Status]++
				if err == nil && (r.Status == http.StatusOK || r.Status == http.StatusCreated) {
					l.acked[[2]string{post, user}] = true
				}
				l.mu.Unlock()
				if err != nil {
					time.Sleep(5 * time.Millisecond) // a node is down: no spin
				}
			}
		}()
	}
	return l
}

func (l *load) halt() map[[2]string]bool {
	close(l.stop)
	l.wg.Wait()
	return l.acked
}

// waitHolds waits until every node holds every like in want.
func waitHolds(t *testing.T, want map[[2]string]bool, procs ...*proc) {
	t.Helper()
	counts := map[string]int{}
	for k := range want {
		counts[k[0]]++
	}
	var posts []string
	for p := range counts {
		posts = append(posts, p)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, p := range procs {
			got, err := p.api().Counts(context.Background(), posts...)
			if !assert.NoError(c, err) {
				return
			}
			for post, n := range counts {
				assert.GreaterOrEqual(c, got[post], n, "node %s post %s", p.name, post)
			}
		}
	}, 30*time.Second, 50*time.Millisecond)
	for _, p := range procs { // counts can hide a swap: check each like
		for k := range want {
			liked, err := p.api().HasLiked(context.Background(), k[0], k[1], "")
			require.NoError(t, err)
			require.True(t, liked, "node %s lost acknowledged like %v", p.name, k)
		}
	}
}

func durableCluster(t *testing.T, dirs []string, ports []int) []*proc {
	var procs []*proc
	for i, d := range dirs {
		var seeds []string
		if i > 0 {
			seeds = []string{procs[0].gossipAddr}
		}
		procs = append(procs, startProcFlags(t, fmt.Sprintf("n%d", i+1), []string{"--data-dir", d, "--write-acks", "2"}, ports[i], seeds...))
	}
	return procs
}

func TestEveryNodeStoppedOrKilledAtOnceKeepsEveryAcknowledgedLike(t *testing.T) {
	for _, how := range []struct {
		name string
		sig  syscall.Signal
	}{{"kill -9", syscall.SIGKILL}, {"SIGTERM", syscall.SIGTERM}} {
		t.Run(how.name, func(t *testing.T) {
			root := t.TempDir()
			dirs := []string{filepath.Join(root, "n1"), filepath.Join(root, "n2"), filepath.Join(root, "n3")}
			ports := []int{freePort(t), freePort(t), freePort(t)}
			procs := durableCluster(t, dirs, ports)
			waitAlive(t, 3, procs...)

			ld := startLoad(procs, 4)
			require.Eventually(t, func() bool { ld.mu.Lock(); defer ld.mu.Unlock(); return len(ld.acked) >= 300 }, 30*time.Second, 10*time.Millisecond)
			for _, p := range procs { // all at once, under load
				require.NoError(t, p.cmd.Process.Signal(how.sig))
			}
			for _, p := range procs {
				select {
				case <-p.exited:
				case <-time.After(30 * time.Second):
					t.Fatalf("%s did not exit", p.name)
				}
			}
			acked := ld.halt()
			t.Logf("%d likes sent, %d acknowledged before every node stopped; replies %v", ld.sent, len(acked), ld.codes)
			if how.sig == syscall.SIGTERM {
				for _, p := range procs {
					assert.NoError(t, p.exitErr)
					assert.NotContains(t, p.logs.String(), "hand-off cut short by the shutdown bound",
						"%s: with its likes on disk a stop waits for no peer", p.name)
				}
			}

			procs = durableCluster(t, dirs, ports)
			for _, p := range procs {
				assert.Contains(t, p.logs.String(), `"message":"recovered the data dir"`)
			}
			waitHolds(t, acked, procs...)
		})
	}
}

func TestALikeSurvivesARestartOfALoneNode(t *testing.T) {
	dir := t.TempDir()
	p := startProcFlags(t, "n1", []string{"--data-dir", dir}, 0)
	assert.Equal(t, http.StatusCreated, p.like(t, "p", "alice"))
	assert.Equal(t, http.StatusCreated, p.like(t, "p", "bob"))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	<-p.exited
	require.NoError(t, p.exitErr)

	p = startProcFlags(t, "n1-again", []string{"--data-dir", dir}, 0)
	n, err := p.api().Count(context.Background(), "p")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, http.StatusOK, p.like(t, "p", "alice"), "a retry after the restart counts once")
}

func TestASecondProcessOnTheSameDataDirRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	startProcFlags(t, "n1", []string{"--data-dir", dir}, 0)
	out, err := exec.Command(likesdBinary(t), "--http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--gossip-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--data-dir", dir).CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", out)
	assert.Contains(t, string(out), "in use by another likesd process")
}

// A process that lost its directory (its LOCK file deleted while it was
// stopped) and resumes after a newer one took the directory answers no
// write as durable and changes nothing the newer one reads.
func TestAStaleProcessThatResumesIsFencedOut(t *testing.T) {
	dir := t.TempDir()
	old := startProcFlags(t, "old", []string{"--data-dir", dir}, 0)
	assert.Equal(t, http.StatusCreated, old.like(t, "p", "before"))
	require.NoError(t, old.cmd.Process.Signal(syscall.SIGSTOP))
	require.NoError(t, os.Remove(filepath.Join(dir, "LOCK")))

	cur := startProcFlags(t, "new", []string{"--data-dir", dir}, 0)
	assert.Equal(t, http.StatusCreated, cur.like(t, "p", "new"))
	require.NoError(t, old.cmd.Process.Signal(syscall.SIGCONT))
	// The old one's next sync finds its generation gone: never a 201 again.
	var codes []int
	require.Eventually(t, func() bool {
		r, err := old.api().LikeAt(context.Background(), "p", fmt.Sprintf("stale-%d", len(codes)), "1")
		codes = append(codes, r.Status)
		var ce *client.Error
		return errors.As(err, &ce) && ce.Status == http.StatusInsufficientStorage && ce.Code == "disk_unwritable"
	}, 10*time.Second, 20*time.Millisecond)
	for _, c := range codes[:len(codes)-1] {
		assert.Equal(t, http.StatusAccepted, c, "a write after the takeover is never acknowledged")
	}
	assert.Contains(t, old.logs.String(), "lost its data dir to a newer one")
	require.NoError(t, old.cmd.Process.Kill())
	require.NoError(t, cur.cmd.Process.Signal(syscall.SIGTERM))
	<-cur.exited

	again := startProcFlags(t, "again", []string{"--data-dir", dir}, 0)
	for user, want := range map[string]bool{"before": true, "new": true, "stale-0": false} {
		liked, err := again.api().HasLiked(context.Background(), "p", user, "")
		require.NoError(t, err)
		assert.Equal(t, want, liked, user)
	}
}

// A disk that fills up: writes answer 507 with Retry-After, reads go on,
// and once space returns the node writes its replica anew and takes
// writes again by itself; nothing acknowledged is lost.
func TestAFullDiskRefusesWritesKeepsReadsAndRecoversByItself(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	require.NoError(t, exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).Run())
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	p := startProcFlags(t, "n1", []string{"--data-dir", dir}, 0)
	ctx := context.Background()

	acked := map[string]bool{}
	var full *client.Error
	for i := 0; full == nil; i++ {
		require.Less(t, i, 200000, "the disk never filled")
		user := fmt.Sprintf("user-%06d-%s", i, strings.Repeat("x", 40))
		r, err := p.api().LikeAt(ctx, "p", user, "")
		switch {
		case err == nil && r.Status == http.StatusCreated:
			acked[user] = true
		case errors.As(err, &full):
		}
	}
	require.Equal(t, http.StatusInsufficientStorage, full.Status)
	require.Equal(t, "disk_unwritable", full.Code)
	n, err := p.api().Count(ctx, "p")
	require.NoError(t, err, "reads go on")
	require.GreaterOrEqual(t, n, len(acked))

	require.NoError(t, exec.Command("mount", "-o", "remount,size=64m", dir).Run())
	require.Eventually(t, func() bool {
		r, err := p.api().LikeAt(ctx, "p", "after-the-disk-came-back", "")
		return err == nil && r.Status == http.StatusCreated
	}, 20*time.Second, 50*time.Millisecond, "the node resumes writes by itself")
	acked["after-the-disk-came-back"] = true
	// The line may reach the captured output after the 201 does.
	require.Eventually(t, func() bool { return strings.Contains(p.logs.String(), "disk writable again") },
		10*time.Second, 20*time.Millisecond, "the recovery is logged")

	require.NoError(t, p.cmd.Process.Kill())
	<-p.exited
	p = startProcFlags(t, "n1-again", []string{"--data-dir", dir}, 0)
	for u := range acked {
		liked, err := p.api().HasLiked(ctx, "p", u, "")
		require.NoError(t, err)
		require.True(t, liked, "acknowledged like of %s lost", u)
	}
}
