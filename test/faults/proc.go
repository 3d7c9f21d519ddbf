//go:build faults

package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/likesd/likesd/internal/faultcheck"
	"github.com/likesd/likesd/internal/lazyfs"
)

const (
	httpPort   = 8080
	gossipPort = 7946
	// exitTimeout bounds a graceful stop: likesd's --shutdown-timeout (20 s)
	// plus slack for a busy machine. Past it the process is killed.
	exitTimeout = 40 * time.Second
)

// node is one likesd host: a namespace with a fixed IP, so its ports are
// fixed too, and the process lives run in it one after another.
type node struct {
	id      int
	ns, ip  string
	url     string // http://ip:8080
	bin     string
	joinTo  []string // gossip addresses for --join; empty for a founding seed
	logDir  string
	dataDir string // --data-dir, kept across lives; empty: in memory
	// disk is the lazyfs mount at dataDir (what a power cut hits), its
	// durable content in dataDir+".disk"; mounted before every start.
	disk *lazyfs.FS
	// keyFile is the node's --gossip-key-file (keys_test.go), kept across lives.
	keyFile string
	// extra are flags added to every start (the canaries' misconfigurations).
	extra []string
	onEnd func(faultcheck.End)
	// onCrash hears of a life that ended by itself; it must not block.
	onCrash func(faultcheck.End, error)
	readyHC *http.Client

	mu      sync.Mutex
	gen     int // the current life (the next one, while down)
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // SIGSTOPped
	ending  bool // signalled to end, not yet exited: still may answer
}

func (n *node) name() string       { return fmt.Sprintf("n%d", n.id) }
func (n *node) gossipAddr() string { return fmt.Sprintf("%s:%d", n.ip, gossipPort) }

// life is the process life that answers a request sent now: the one
// running, also while it is ending (it answers until it exits, and the next
// cannot start before), or the next one while down (nobody answers).
func (n *node) life() faultcheck.Life {
	n.mu.Lock()
	defer n.mu.Unlock()
	return faultcheck.Life{Node: n.id, Gen: n.gen}
}

// settled reports the life running now, if one runs and is not ending:
// then whatever answers is that life, as long as it is still settled
// afterwards.
func (n *node) settled() (faultcheck.Life, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return faultcheck.Life{Node: n.id, Gen: n.gen}, n.cmd != nil && !n.ending
}

// start runs a new life. Default flags, except the addresses, JSON logs and
// a readable node name that is new at every start (as the default name is).
func (n *node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("%s: already running", n.name())
	}
	args := []string{"netns", "exec", n.ns, n.bin,
		"--http-addr", fmt.Sprintf("%s:%d", n.ip, httpPort),
		"--gossip-addr", n.gossipAddr(),
		"--node-name", fmt.Sprintf("%s-%d", n.name(), n.gen),
		"--log-format", "json",
		// Node 1 has no --join: explicit, so a restarted node 1 never
		// acknowledges alone before its old peers find it again.
		"--write-acks", "2",
	}
	if len(n.joinTo) > 0 {
		args = append(args, "--join", strings.Join(n.joinTo, ","))
	}
	if n.keyFile != "" {
		args = append(args, "--gossip-key-file", n.keyFile)
	}
	args = append(args, n.extra...)
	if n.dataDir != "" {
		args = append(args, "--data-dir", n.dataDir)
		if err := n.mountLocked(); err != nil {
			return err
		}
	}
	logf, err := os.OpenFile(filepath.Join(n.logDir, n.name()+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s life %d: %s\n", time.Now().Format(time.RFC3339Nano), n.gen, strings.Join(args, " "))
	// ip netns exec enters the namespace and execs likesd: the pid is
	// likesd's, so signals reach it directly.
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no LIKESD_* from outside
	// If this test dies without cleaning up, its nodes die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", n.name(), err)
	}
	exited := make(chan struct{})
	life := faultcheck.Life{Node: n.id, Gen: n.gen}
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		crashed := !n.ending // nobody asked it to end
		if crashed {
			n.gen++
			n.cmd, n.exited, n.stopped = nil, nil, false
		}
		n.mu.Unlock()
		if crashed {
			n.onCrash(faultcheck.End{Life: life, At: time.Now()}, err)
		}
		close(exited)
	}()
	n.cmd, n.exited, n.stopped = cmd, exited, false
	return nil
}

// mountLocked mounts the node's disk if it is not: before a start, since
// the namespace likesd runs in takes its copy of the mounts then.
func (n *node) mountLocked() error {
	if n.disk != nil {
		return nil
	}
	backing := n.dataDir + ".disk"
	if err := os.MkdirAll(backing, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(n.dataDir, 0o755); err != nil {
		return err
	}
	fs, err := lazyfs.Mount(backing, n.dataDir, lazyfs.Options{})
	if err != nil {
		return fmt.Errorf("%s: mount its disk: %w", n.name(), err)
	}
	n.disk = fs
	return nil
}

// powerCut kills the life with SIGKILL, then its disk forgets everything
// that was not fsync'd, as the machine's power going would.
func (n *node) powerCut(t interface{ Logf(string, ...any) }) error {
	if err := n.kill9(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.disk == nil {
		return fmt.Errorf("%s: no disk to cut (FAULT_MEMORY?)", n.name())
	}
	cut, err := n.disk.PowerCut()
	uerr := n.disk.Unmount()
	n.disk = nil
	t.Logf("%s power cut: %d unsynced bytes in %d files and %d directory operations dropped", n.name(), cut.Bytes, cut.Files, cut.DirOps)
	return errors.Join(err, uerr)
}

// kill9 ends the life with SIGKILL and waits for the exit.
func (n *node) kill9() error { return n.end(syscall.SIGKILL, true) }

// term ends the life with SIGTERM (a graceful stop, as Kubernetes does) and
// waits for the exit; past exitTimeout it kills and says so.
func (n *node) term() error { return n.end(syscall.SIGTERM, false) }

func (n *node) end(sig syscall.Signal, kill bool) error {
	n.mu.Lock()
	cmd, exited, stopped := n.cmd, n.exited, n.stopped
	if cmd == nil {
		n.mu.Unlock()
		return fmt.Errorf("%s: not running", n.name())
	}
	life := faultcheck.Life{Node: n.id, Gen: n.gen}
	n.ending = true
	at := time.Now()
	err := cmd.Process.Signal(sig)
	if stopped && !kill {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %v: %w", n.name(), sig, err)
	}
	var waitErr error
	select {
	case <-exited:
	case <-time.After(exitTimeout):
		_ = cmd.Process.Kill()
		<-exited
		kill = true
		waitErr = fmt.Errorf("%s: still running %s after %v: killed", n.name(), exitTimeout, sig)
	}
	n.onEnd(faultcheck.End{Life: life, At: at, Kill: kill})
	n.mu.Lock()
	n.gen++
	n.cmd, n.exited, n.stopped, n.ending = nil, nil, false, false
	n.mu.Unlock()
	return waitErr
}

// pause sends SIGSTOP (true) or SIGCONT (false).
func (n *node) pause(stop bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("%s: not running", n.name())
	}
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	n.stopped = stop
	return n.cmd.Process.Signal(sig)
}

// hup sends SIGHUP: re-read the keyring file now.
func (n *node) hup() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("%s: not running", n.name())
	}
	return n.cmd.Process.Signal(syscall.SIGHUP)
}

func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// waitReady polls /readyz until 200, the process exits, or ctx ends.
func (n *node) waitReady(ctx context.Context) error {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if exited == nil {
		return fmt.Errorf("%s: not running", n.name())
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if n.ready(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready: %w", n.name(), context.Cause(ctx))
		case <-exited:
			return fmt.Errorf("%s: exited before it was ready (see %s)", n.name(), filepath.Join(n.logDir, n.name()+".log"))
		case <-tick.C:
		}
	}
}

func (n *node) ready(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := n.readyHC.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// shutdown kills whatever life runs, without recording it (the run is over).
func (n *node) shutdown() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.ending = true
	n.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.disk != nil {
		_ = n.disk.Unmount()
		n.disk = nil
	}
}
