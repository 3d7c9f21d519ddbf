package lazyfs

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The test binary doubles as the programs these tests run on the mount,
// as real processes: LAZYFS_HELPER names which.
const helperEnv = "LAZYFS_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "writer":
		writerMain(os.Getenv("LAZYFS_FILE"))
	case "logger":
		k, _ := strconv.Atoi(os.Getenv("LAZYFS_K"))
		loggerMain(os.Getenv("LAZYFS_FILE"), k)
	case "holder":
		holderMain(os.Getenv("LAZYFS_FILE"))
	case "mounter":
		mounterMain(os.Getenv("LAZYFS_BACKING"), os.Getenv("LAZYFS_MNT"))
	}
	os.Exit(0)
}

const recLen = 12

func record(i int) string { return fmt.Sprintf("rec %07d\n", i) }

// writerMain creates a log, fsyncs it and its directory, says "ready",
// then obeys stdin line by line: "w" appends the next record, "s" fsyncs;
// it answers "ok" after each, so the test knows exactly what it did.
func writerMain(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	check(err)
	check(f.Sync())
	syncDir(filepath.Dir(path))
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for i := 0; in.Scan(); {
		switch in.Text() {
		case "w":
			_, err = f.WriteString(record(i))
			i++
		case "s":
			err = f.Sync()
		}
		check(err)
		fmt.Println("ok")
	}
}

// loggerMain is the same program on its own: it appends records and
// fsyncs every k, saying "synced n" after each fsync, until it dies or the
// power cut fails its calls.
func loggerMain(path string, k int) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	check(err)
	check(f.Sync())
	syncDir(filepath.Dir(path))
	for i := 1; ; i++ {
		if _, err := f.WriteString(record(i - 1)); err != nil {
			os.Exit(4) // the power is out
		}
		if i%k == 0 {
			if err := f.Sync(); err != nil {
				os.Exit(4)
			}
			fmt.Println("synced", i)
		}
	}
}

// holderMain opens a file, says "ready", and at each line on stdin writes
// to the file and says what the write returned.
func holderMain(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	check(err)
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		_, err := f.WriteString("x")
		fmt.Println(err)
	}
}

// mounterMain mounts and waits to be killed, leaving a dead mount.
func mounterMain(backing, mnt string) {
	_, err := Mount(backing, mnt, Options{})
	check(err)
	fmt.Println("mounted")
	select {}
}

func syncDir(path string) {
	d, err := os.Open(path)
	check(err)
	check(d.Sync())
	check(d.Close())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(3)
	}
}

// helper starts the test binary as the named helper program.
func helper(t *testing.T, name string, env ...string) (cmd *exec.Cmd, stdin io.WriteCloser, stdout *bufio.Scanner) {
	t.Helper()
	return helperCmd(t, exec.Command(os.Args[0], "-test.run=^$"), name, env...)
}

func helperCmd(t *testing.T, cmd *exec.Cmd, name string, env ...string) (_ *exec.Cmd, stdin io.WriteCloser, stdout *bufio.Scanner) {
	t.Helper()
	cmd.Env = append(os.Environ(), append(env, helperEnv+"="+name)...)
	cmd.Stderr = os.Stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, stdin, bufio.NewScanner(out)
}

// kill kills a helper with SIGKILL and waits for it to be gone.
func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
}

func records(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(record(i))
	}
	return b.String()
}

// TestProgramLockstep runs a real process that appends records and
// fsyncs every k, in lockstep with the test, and cuts the power at a
// seeded point: what is left is exactly the records fsync'd.
func TestProgramLockstep(t *testing.T) {
	for seed := range uint64(12) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			r := newRig(t, Options{})
			k, stop := 1+rng.IntN(8), rng.IntN(120)
			cmd, in, out := helper(t, "writer", "LAZYFS_FILE="+r.path("log"))
			require.True(t, out.Scan())
			require.Equal(t, "ready", out.Text())
			do := func(c string) {
				_, err := fmt.Fprintln(in, c)
				require.NoError(t, err)
				require.True(t, out.Scan(), "the writer died")
				require.Equal(t, "ok", out.Text())
			}
			written, synced := 0, 0
			for written < stop {
				do("w")
				written++
				if written%k == 0 {
					do("s")
					synced = written
				}
			}
			c, err := r.fs.PowerCut()
			require.NoError(t, err)
			kill(t, cmd) // dies with the power; blocked on stdin, it did nothing more
			require.NoError(t, r.fs.Unmount())
			r.mount()
			require.Equal(t, records(synced), string(r.read("log")), "k=%d written=%d", k, written)
			require.EqualValues(t, (written-synced)*recLen, c.Bytes)
			require.Zero(t, c.DirOps)
		})
	}
}

// TestProgramFreeRunning lets a real process append and fsync as fast as
// it can and cuts the power at a seeded point while it runs: what is left
// is a prefix of whole fsync'd batches, at least what it had reported
// fsync'd.
func TestProgramFreeRunning(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 11))
			r := newRig(t, Options{})
			k, reports := 1+rng.IntN(16), 1+rng.IntN(40)
			cmd, _, out := helper(t, "logger", "LAZYFS_FILE="+r.path("log"), "LAZYFS_K="+strconv.Itoa(k))
			reported := 0
			for range reports {
				require.True(t, out.Scan(), "the logger died")
				n, err := strconv.Atoi(strings.TrimPrefix(out.Text(), "synced "))
				require.NoError(t, err)
				reported = n
			}
			_, err := r.fs.PowerCut() // the logger is still writing
			require.NoError(t, err)
			kill(t, cmd)
			require.NoError(t, r.fs.Unmount())
			r.mount()
			got := r.read("log")
			n := len(got) / recLen
			require.Equal(t, records(n), string(got), "a prefix of whole records")
			require.GreaterOrEqual(t, n, reported, "everything reported fsync'd survives")
			require.Zero(t, n%k, "only whole fsync'd batches: k=%d, %d records", k, n)
		})
	}
}

// TestCleanupStale: a process that dies while serving a mount leaves a
// dead mount point; CleanupStale removes it and a new Mount works.
func TestCleanupStale(t *testing.T) {
	r := newRig(t, Options{})
	f := r.create("f")
	write(t, f, "durable")
	require.NoError(t, f.Sync())
	r.syncDir(".")
	require.NoError(t, f.Close())
	require.NoError(t, r.fs.Unmount())
	r.fs = nil

	cmd, _, out := helper(t, "mounter", "LAZYFS_BACKING="+r.backing, "LAZYFS_MNT="+r.mnt)
	require.True(t, out.Scan())
	require.Equal(t, "mounted", out.Text())
	kill(t, cmd)
	_, err := os.Stat(r.path("f"))
	require.ErrorIs(t, err, syscall.ENOTCONN, "the mount is dead")
	_, err = Mount(r.backing, r.mnt, Options{})
	require.ErrorContains(t, err, "CleanupStale")

	require.NoError(t, CleanupStale(r.mnt))
	require.NoError(t, CleanupStale(r.mnt), "nothing mounted is fine")
	r.mount()
	require.Equal(t, "durable", string(r.read("f")))
}

// TestNoGoroutineLeak: after Unmount, also of a busy mount after a cut,
// the server's goroutines are gone.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	r := newRig(t, Options{})
	f := r.create("f")
	write(t, f, "x")
	r.cut()
	require.NoError(t, r.fs.Unmount())
	r.fs = nil
	// Polled here, not with require.Eventually: its own goroutine counts.
	for deadline := time.Now().Add(30 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the mount:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
}

// TestUnmountWithCopyInOtherNamespace: a process in a mount namespace of
// its own (as ip netns exec runs likesd) holds a copy of the mount; Unmount
// still stops the server, and the process's next write fails.
func TestUnmountWithCopyInOtherNamespace(t *testing.T) {
	r := newRig(t, Options{})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // Go makes its mounts private
	_, in, out := helperCmd(t, cmd, "holder", "LAZYFS_FILE="+r.path("f"))
	require.True(t, out.Scan())
	require.Equal(t, "ready", out.Text())
	ask := func() string {
		_, err := fmt.Fprintln(in)
		require.NoError(t, err)
		require.True(t, out.Scan(), "the holder died")
		return out.Text()
	}
	require.Equal(t, "<nil>", ask())
	require.NoError(t, r.fs.Unmount())
	r.fs = nil
	require.NotEqual(t, "<nil>", ask(), "a write after Unmount")
}
