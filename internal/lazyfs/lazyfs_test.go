package lazyfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// rig is one backing directory, mounted, cut and mounted again.
type rig struct {
	t       *testing.T
	opts    Options
	backing string
	mnt     string
	fs      *FS
}

// newRig mounts a fresh backing. The tests need root and /dev/fuse, as CI
// has; elsewhere they skip.
func newRig(t *testing.T, opts Options) *rig {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("lazyfs: no /dev/fuse on this machine: the FUSE tests need it (CI has it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("lazyfs: not root: the FUSE tests mount with mount(2), which needs root (CI runs as root)")
	}
	dir := t.TempDir()
	r := &rig{t: t, opts: opts, backing: filepath.Join(dir, "backing"), mnt: filepath.Join(dir, "mnt")}
	require.NoError(t, os.Mkdir(r.backing, 0o755))
	require.NoError(t, os.Mkdir(r.mnt, 0o755))
	r.mount()
	// Registered after TempDir: runs before its removal.
	t.Cleanup(func() {
		if r.fs != nil {
			require.NoError(t, r.fs.Unmount())
		}
	})
	return r
}

func (r *rig) mount() {
	r.t.Helper()
	l, err := Mount(r.backing, r.mnt, r.opts)
	require.NoError(r.t, err)
	r.fs = l
}

// cut cuts the power, unmounts and mounts the backing again.
func (r *rig) cut() Cut {
	r.t.Helper()
	c, err := r.fs.PowerCut()
	require.NoError(r.t, err)
	require.NoError(r.t, r.fs.Unmount())
	r.mount()
	return c
}

func (r *rig) path(name string) string { return filepath.Join(r.mnt, name) }

// read returns a file's content through the mount; nil if it does not
// exist.
func (r *rig) read(name string) []byte {
	r.t.Helper()
	b, err := os.ReadFile(r.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(r.t, err)
	if b == nil {
		b = []byte{}
	}
	return b
}

func (r *rig) exists(name string) bool {
	_, err := os.Lstat(r.path(name))
	return err == nil
}

// syncDir fsyncs a directory of the mount.
func (r *rig) syncDir(name string) {
	r.t.Helper()
	d, err := os.Open(r.path(name))
	require.NoError(r.t, err)
	defer d.Close()
	require.NoError(r.t, d.Sync())
}

func (r *rig) create(name string) *os.File {
	r.t.Helper()
	f, err := os.OpenFile(r.path(name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	require.NoError(r.t, err)
	r.t.Cleanup(func() { f.Close() })
	return f
}

func write(t *testing.T, f *os.File, s string) {
	t.Helper()
	_, err := f.WriteString(s)
	require.NoError(t, err)
}

// TestWriteSyncWriteCut: only what was written before the fsync survives.
func TestWriteSyncWriteCut(t *testing.T) {
	r := newRig(t, Options{})
	f := r.create("f")
	r.syncDir(".")
	write(t, f, "synced.")
	require.NoError(t, f.Sync())
	write(t, f, "lost")
	require.Equal(t, "synced.lost", string(r.read("f")))
	st, err := f.Stat()
	require.NoError(t, err)
	require.EqualValues(t, 11, st.Size())
	require.Equal(t, Cut{Bytes: 4, Files: 1}, r.cut())
	require.Equal(t, "synced.", string(r.read("f")))
	got, err := os.ReadFile(filepath.Join(r.backing, "f"))
	require.NoError(t, err)
	require.Equal(t, "synced.", string(got), "the backing holds the durable content")
}

// TestOSFileSync: Go's os.File.Sync (fsync) and fdatasync both make the
// content durable.
func TestOSFileSync(t *testing.T) {
	r := newRig(t, Options{})
	a, b := r.create("a"), r.create("b")
	r.syncDir(".")
	write(t, a, "fsync")
	require.NoError(t, a.Sync())
	write(t, b, "fdatasync")
	require.NoError(t, unix.Fdatasync(int(b.Fd())))
	require.Equal(t, Cut{}, r.cut())
	require.Equal(t, "fsync", string(r.read("a")))
	require.Equal(t, "fdatasync", string(r.read("b")))
}

// TestSyncThroughAnyHandle: the overlay belongs to the file, not the
// handle: an fsync through one handle makes another's writes durable, and
// writes survive a close until the power goes.
func TestSyncThroughAnyHandle(t *testing.T) {
	r := newRig(t, Options{})
	w := r.create("f")
	r.syncDir(".")
	write(t, w, "written, closed")
	require.NoError(t, w.Close())
	require.Equal(t, "written, closed", string(r.read("f")), "a closed file keeps its unsynced writes")
	s, err := os.Open(r.path("f"))
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Sync())
	r.cut()
	require.Equal(t, "written, closed", string(r.read("f")))
}

// TestNeverFsynced: a file written and never fsync'd is empty after a cut
// if its directory was fsync'd, and gone if not (strict model); with
// DurableDirOps it is there, empty.
func TestNeverFsynced(t *testing.T) {
	t.Run("dir synced", func(t *testing.T) {
		r := newRig(t, Options{})
		write(t, r.create("f"), "never synced")
		r.syncDir(".")
		require.Equal(t, Cut{Bytes: 12, Files: 1}, r.cut())
		require.Equal(t, []byte{}, r.read("f"))
	})
	t.Run("dir not synced", func(t *testing.T) {
		r := newRig(t, Options{})
		f := r.create("f")
		write(t, f, "synced, but the name is not")
		require.NoError(t, f.Sync())
		require.Equal(t, Cut{DirOps: 1}, r.cut())
		require.False(t, r.exists("f"))
	})
	t.Run("durable dir ops", func(t *testing.T) {
		r := newRig(t, Options{DurableDirOps: true})
		write(t, r.create("f"), "never synced")
		require.Equal(t, Cut{Bytes: 12, Files: 1}, r.cut())
		require.Equal(t, []byte{}, r.read("f"))
	})
}

// TestRename: the write-to-temp, fsync, rename, fsync-dir pattern is
// durable; without the fsync of the file the new name has what the temp
// file durably had (nothing); without the directory fsync the rename is
// undone, and the file it replaced is back.
func TestRename(t *testing.T) {
	setup := func(t *testing.T, opts Options) *rig {
		r := newRig(t, opts)
		old := r.create("current")
		write(t, old, "old")
		require.NoError(t, old.Sync())
		r.syncDir(".")
		return r
	}
	t.Run("after fsync", func(t *testing.T) {
		r := setup(t, Options{})
		tmp := r.create("tmp")
		write(t, tmp, "new")
		require.NoError(t, tmp.Sync())
		require.NoError(t, os.Rename(r.path("tmp"), r.path("current")))
		r.syncDir(".")
		require.Equal(t, Cut{}, r.cut())
		require.Equal(t, "new", string(r.read("current")))
		require.False(t, r.exists("tmp"))
	})
	t.Run("file not fsynced", func(t *testing.T) {
		r := setup(t, Options{})
		write(t, r.create("tmp"), "new")
		require.NoError(t, os.Rename(r.path("tmp"), r.path("current")))
		r.syncDir(".")
		require.Equal(t, Cut{Bytes: 3, Files: 1}, r.cut())
		require.Equal(t, []byte{}, r.read("current"), "renamed, but its content never reached the disk")
	})
	t.Run("dir not fsynced", func(t *testing.T) {
		r := setup(t, Options{})
		tmp := r.create("tmp")
		write(t, tmp, "new")
		require.NoError(t, tmp.Sync())
		require.NoError(t, os.Rename(r.path("tmp"), r.path("current")))
		require.Equal(t, "new", string(r.read("current")))
		require.Equal(t, Cut{DirOps: 3}, r.cut()) // create tmp, current aside, rename
		require.Equal(t, "old", string(r.read("current")))
		require.False(t, r.exists("tmp"), "tmp's creation was not committed either")
	})
	t.Run("durable dir ops", func(t *testing.T) {
		r := setup(t, Options{DurableDirOps: true})
		tmp := r.create("tmp")
		write(t, tmp, "new")
		require.NoError(t, tmp.Sync())
		require.NoError(t, os.Rename(r.path("tmp"), r.path("current")))
		require.Equal(t, Cut{}, r.cut())
		require.Equal(t, "new", string(r.read("current")))
	})
}

// TestDirOpsUndone: every directory operation after the last directory
// fsync is undone, newest first, whatever directory it was in.
func TestDirOpsUndone(t *testing.T) {
	r := newRig(t, Options{})
	require.NoError(t, os.Mkdir(r.path("d"), 0o755))
	require.NoError(t, os.Mkdir(r.path("gone"), 0o755))
	keep := r.create("d/keep")
	write(t, keep, "durable")
	require.NoError(t, keep.Sync())
	x := r.create("x")
	write(t, x, "x")
	require.NoError(t, x.Sync())
	y := r.create("y")
	write(t, y, "y")
	require.NoError(t, y.Sync())
	r.syncDir(".") // commits d's operations too: they came before

	require.NoError(t, os.Remove(r.path("d/keep")))
	require.NoError(t, os.Remove(r.path("gone")))
	require.NoError(t, os.Mkdir(r.path("new"), 0o755))
	write(t, r.create("new/f"), "f")
	require.NoError(t, os.Rename(r.path("d"), r.path("new/d")))
	require.NoError(t, unix.Renameat2(unix.AT_FDCWD, r.path("x"), unix.AT_FDCWD, r.path("y"), unix.RENAME_EXCHANGE))
	require.Equal(t, "y", string(r.read("x")))
	require.False(t, r.exists("gone"))

	c := r.cut()
	require.Equal(t, 6, c.DirOps)
	require.Equal(t, "durable", string(r.read("d/keep")))
	require.True(t, r.exists("gone"))
	require.False(t, r.exists("new"))
	require.Equal(t, "x", string(r.read("x")))
	require.Equal(t, "y", string(r.read("y")))
	ents, err := os.ReadDir(r.mnt)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"d", "gone", "x", "y"}, names)
	_, err = os.Stat(filepath.Join(r.backing, pendingDir))
	require.ErrorIs(t, err, os.ErrNotExist, "nothing left pending in the backing")
}

// TestDirFsyncCommitsItsDirectory: an fsync of a directory commits up to
// its own last change, with everything before it (the journal is ordered),
// and nothing after; a directory is known by its inode, also after a
// rename.
func TestDirFsyncCommitsItsDirectory(t *testing.T) {
	r := newRig(t, Options{})
	for _, d := range []string{"a", "b", "c"} {
		require.NoError(t, os.Mkdir(r.path(d), 0o755))
	}
	r.syncDir(".")
	create := func(name string) {
		f := r.create(name)
		write(t, f, name)
		require.NoError(t, f.Sync())
	}
	create("b/before")
	create("a/x")
	create("c/f")
	require.NoError(t, os.Rename(r.path("c"), r.path("renamed")))
	create("b/after")
	r.syncDir("a")
	r.syncDir("renamed")
	require.Equal(t, Cut{DirOps: 2}, r.cut(), "the rename of c and b/after are left")
	require.Equal(t, "a/x", string(r.read("a/x")))
	require.Equal(t, "b/before", string(r.read("b/before")), "committed with a/x, which came after it")
	require.False(t, r.exists("b/after"), "b was not fsync'd after it")
	require.False(t, r.exists("renamed"))
	require.Equal(t, "c/f", string(r.read("c/f")), "fsync of c under its new name committed c/f")
}

// TestUnlinkCommitted: an unlink followed by a directory fsync stays, also
// for a file still open, whose handle keeps working.
func TestUnlinkCommitted(t *testing.T) {
	r := newRig(t, Options{})
	f := r.create("f")
	write(t, f, "abc")
	require.NoError(t, f.Sync())
	r.syncDir(".")
	require.NoError(t, os.Remove(r.path("f")))
	r.syncDir(".")
	write(t, f, "d")
	require.NoError(t, f.Sync())
	got := make([]byte, 4)
	_, err := f.ReadAt(got, 0)
	require.NoError(t, err)
	require.Equal(t, "abcd", string(got))
	require.Equal(t, Cut{}, r.cut())
	require.False(t, r.exists("f"))
}

// TestTruncate: a truncate is lost like a write; an fsync makes it
// durable; bytes it cut off stay zeros when the file grows again.
func TestTruncate(t *testing.T) {
	r := newRig(t, Options{})
	f := r.create("f")
	write(t, f, "hello world")
	require.NoError(t, f.Sync())
	r.syncDir(".")

	require.NoError(t, f.Truncate(5))
	require.Equal(t, "hello", string(r.read("f")))
	require.Equal(t, Cut{Files: 1}, r.cut())
	require.Equal(t, "hello world", string(r.read("f")), "the truncate was not fsync'd")

	require.NoError(t, os.Truncate(r.path("f"), 2)) // by path, no handle
	f, err := os.OpenFile(r.path("f"), os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt([]byte("!"), 6)
	require.NoError(t, err)
	require.Equal(t, "he\x00\x00\x00\x00!", string(r.read("f")))
	require.NoError(t, f.Sync())
	r.cut()
	require.Equal(t, "he\x00\x00\x00\x00!", string(r.read("f")))

	g, err := os.OpenFile(r.path("f"), os.O_RDWR|os.O_TRUNC, 0)
	require.NoError(t, err)
	defer g.Close()
	require.Equal(t, []byte{}, r.read("f"))
	r.cut()
	require.Equal(t, "he\x00\x00\x00\x00!", string(r.read("f")), "O_TRUNC is a truncate like any other")
}

// TestAppendLog: a log of small records, each fsync'd, as a WAL writes
// it; the records after the last fsync are lost, the others all there.
func TestAppendLog(t *testing.T) {
	r := newRig(t, Options{})
	f := r.create("wal")
	r.syncDir(".")
	var want bytes.Buffer
	for i := range 300 {
		rec := fmt.Sprintf("record %04d\n", i)
		write(t, f, rec)
		if i < 290 {
			require.NoError(t, f.Sync())
			want.WriteString(rec)
		}
	}
	require.Equal(t, Cut{Bytes: 10 * 12, Files: 1}, r.cut())
	require.Equal(t, want.String(), string(r.read("wal")))
}

// TestOAppend: writes through O_APPEND handles land at the end, also
// interleaved across two handles, and fsync keeps them.
func TestOAppend(t *testing.T) {
	r := newRig(t, Options{})
	write(t, r.create("f"), "0")
	r.syncDir(".")
	open := func() *os.File {
		f, err := os.OpenFile(r.path("f"), os.O_WRONLY|os.O_APPEND, 0)
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		return f
	}
	a, b := open(), open()
	for i := range 5 {
		write(t, a, fmt.Sprint("a", i))
		write(t, b, fmt.Sprint("b", i))
	}
	require.NoError(t, b.Sync())
	write(t, a, "lost")
	want := "0a0b0a1b1a2b2a3b3a4b4"
	require.Equal(t, want+"lost", string(r.read("f")))
	r.cut()
	require.Equal(t, want, string(r.read("f")))
}

// TestConcurrentWriters: goroutines write and fsync their own files and
// their own regions of one shared file at once; after a cut each has
// exactly what it had fsync'd.
func TestConcurrentWriters(t *testing.T) {
	r := newRig(t, Options{})
	const writers, rounds, rec = 8, 40, 16
	shared := r.create("shared")
	r.syncDir(".")
	own := make([]*os.File, writers)
	for i := range own {
		own[i] = r.create(fmt.Sprint("own", i))
	}
	r.syncDir(".")
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			for j := range rounds {
				p := fmt.Appendf(nil, "w%d r%02d ........", i, j)[:rec]
				if _, err := own[i].Write(p); err != nil {
					errs <- err
					return
				}
				if _, err := shared.WriteAt(p, int64((j*writers+i)*rec)); err != nil {
					errs <- err
					return
				}
				if j%2 == 0 { // every other round synced: the last one is not
					if err := own[i].Sync(); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, shared.Sync())
	c := r.cut()
	require.Equal(t, writers, c.Files)
	require.EqualValues(t, writers*rec, c.Bytes)
	sharedGot := r.read("shared")
	require.Len(t, sharedGot, writers*rounds*rec)
	for i := range writers {
		var want []byte
		for j := range rounds - 1 {
			p := fmt.Appendf(nil, "w%d r%02d ........", i, j)[:rec]
			want = append(want, p...)
			require.Equal(t, string(p), string(sharedGot[(j*writers+i)*rec:][:rec]))
		}
		require.Equal(t, string(want), string(r.read(fmt.Sprint("own", i))))
	}
}

// TestAfterCut: after a power cut a survivor's writes, fsyncs and opens
// fail with EIO; Unmount does not wait for it to close its file.
func TestAfterCut(t *testing.T) {
	r := newRig(t, Options{})
	f := r.create("f")
	write(t, f, "x")
	require.NoError(t, f.Sync())
	r.syncDir(".")
	_, err := r.fs.PowerCut()
	require.NoError(t, err)
	_, err = f.WriteString("into the void")
	require.ErrorIs(t, err, syscall.EIO)
	require.ErrorIs(t, f.Sync(), syscall.EIO)
	_, err = os.Open(r.path("f"))
	require.ErrorIs(t, err, syscall.EIO)
	require.ErrorIs(t, os.WriteFile(r.path("g"), nil, 0o644), syscall.EIO)
	again, err := r.fs.PowerCut()
	require.NoError(t, err)
	require.Equal(t, Cut{}, again, "a second cut drops nothing")

	require.NoError(t, r.fs.Unmount(), "unmount with a file still open")
	require.NoError(t, r.fs.Unmount(), "idempotent")
	f.Close()
	r.mount()
	require.Equal(t, "x", string(r.read("f")))
}

// TestUnmountIsCleanShutdown: Unmount without a cut keeps everything.
func TestUnmountIsCleanShutdown(t *testing.T) {
	r := newRig(t, Options{})
	f := r.create("f")
	write(t, f, "kept")
	require.NoError(t, os.Remove(r.path("f")))
	write(t, r.create("g"), "kept too")
	require.NoError(t, f.Close())
	require.NoError(t, r.fs.Unmount())
	got, err := os.ReadFile(filepath.Join(r.backing, "g"))
	require.NoError(t, err)
	require.Equal(t, "kept too", string(got))
	ents, err := os.ReadDir(r.backing)
	require.NoError(t, err)
	require.Len(t, ents, 1, "f's unlink is durable and nothing is left pending")
	r.mount()
}

// TestMountRefusesNesting: a backing inside the mount point would have the
// server call itself.
func TestMountRefusesNesting(t *testing.T) {
	r := newRig(t, Options{})
	_, err := Mount(filepath.Join(r.mnt, "sub"), filepath.Dir(r.mnt), Options{})
	require.ErrorIs(t, err, ErrNested)
	_, err = Mount(r.backing, filepath.Join(r.backing, "sub"), Options{})
	require.ErrorIs(t, err, ErrNested)
}

// TestOSyncAndFallocate: writes through O_SYNC and O_DSYNC descriptors are
// durable when they return (the kernel fsyncs after each); fallocate
// grows the file like a truncate, KEEP_SIZE changes nothing visible.
func TestOSyncAndFallocate(t *testing.T) {
	r := newRig(t, Options{})
	for _, name := range []string{"sync", "dsync", "falloc"} {
		r.create(name)
	}
	r.syncDir(".")
	for name, flag := range map[string]int{"sync": os.O_SYNC, "dsync": syscall.O_DSYNC} {
		f, err := os.OpenFile(r.path(name), os.O_WRONLY|flag, 0)
		require.NoError(t, err)
		write(t, f, name)
		require.NoError(t, f.Close())
	}
	f, err := os.OpenFile(r.path("falloc"), os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 4096))
	require.Equal(t, []byte{}, r.read("falloc"))
	require.NoError(t, unix.Fallocate(int(f.Fd()), 0, 0, 3))
	require.Equal(t, []byte{0, 0, 0}, r.read("falloc"))
	require.Equal(t, Cut{Files: 1}, r.cut())
	require.Equal(t, "sync", string(r.read("sync")))
	require.Equal(t, "dsync", string(r.read("dsync")))
	require.Equal(t, []byte{}, r.read("falloc"))
}

// TestChosenOrders: orders picked to break the journal and the overlay,
// next to the random ones.
func TestChosenOrders(t *testing.T) {
	durable := func(t *testing.T, r *rig, name, content string) *os.File {
		f := r.create(name)
		write(t, f, content)
		require.NoError(t, f.Sync())
		r.syncDir(".")
		return f
	}
	t.Run("replaced file with unsynced writes comes back durable", func(t *testing.T) {
		r := newRig(t, Options{})
		old := durable(t, r, "f", "old")
		write(t, old, "+unsynced")
		durable(t, r, "g", "new")
		require.NoError(t, os.Rename(r.path("g"), r.path("f")))
		require.Equal(t, "new", string(r.read("f")))
		r.cut()
		require.Equal(t, "old", string(r.read("f")))
		require.Equal(t, "new", string(r.read("g")))
	})
	t.Run("a name unlinked then created again", func(t *testing.T) {
		r := newRig(t, Options{})
		durable(t, r, "f", "first")
		require.NoError(t, os.Remove(r.path("f")))
		second := r.create("f")
		write(t, second, "second")
		require.NoError(t, second.Sync())
		r.cut() // undoes the create, then the unlink
		require.Equal(t, "first", string(r.read("f")))

		require.NoError(t, os.Remove(r.path("f")))
		durable(t, r, "f", "third")
		r.cut()
		require.Equal(t, "third", string(r.read("f")))
	})
	t.Run("truncate, write and fsync through three handles", func(t *testing.T) {
		r := newRig(t, Options{})
		durable(t, r, "f", "0123456789")
		open := func() *os.File {
			f, err := os.OpenFile(r.path("f"), os.O_RDWR, 0)
			require.NoError(t, err)
			t.Cleanup(func() { f.Close() })
			return f
		}
		a, b, c := open(), open(), open()
		require.NoError(t, a.Truncate(4))
		_, err := b.WriteAt([]byte("xy"), 6)
		require.NoError(t, err)
		require.NoError(t, c.Sync())
		r.cut()
		require.Equal(t, "0123\x00\x00xy", string(r.read("f")))
	})
	t.Run("the pending directory is out of reach", func(t *testing.T) {
		r := newRig(t, Options{})
		durable(t, r, "f", "x")
		require.NoError(t, os.Remove(r.path("f")))
		_, err := os.Stat(filepath.Join(r.backing, pendingDir))
		require.NoError(t, err, "the unlinked file waits in the backing")
		_, err = os.Stat(r.path(pendingDir))
		require.ErrorIs(t, err, os.ErrNotExist)
		require.ErrorIs(t, os.Mkdir(r.path(pendingDir), 0o755), os.ErrPermission)
		require.ErrorIs(t, os.WriteFile(r.path(pendingDir), nil, 0o644), os.ErrPermission)
		require.NoError(t, os.WriteFile(r.path("g"), nil, 0o644))
		require.ErrorIs(t, os.Rename(r.path("g"), r.path(pendingDir)), os.ErrPermission)
		r.cut()
		require.Equal(t, "x", string(r.read("f")))
	})
}

// TestCutDuringWriters: a power cut in the middle of goroutines appending
// and fsyncing: each file keeps a prefix of whole fsync'd batches, at
// least what its writer saw fsync'd, and every call after the cut fails.
func TestCutDuringWriters(t *testing.T) {
	r := newRig(t, Options{})
	const writers, batch = 4, 3
	files := make([]*os.File, writers)
	for i := range files {
		files[i] = r.create(fmt.Sprint("log", i))
	}
	r.syncDir(".")
	acked := make([]int, writers) // records each writer saw fsync'd
	var wg sync.WaitGroup
	started := make(chan struct{}, writers)
	for i := range writers {
		wg.Go(func() {
			for n := 1; ; n++ {
				if _, err := files[i].WriteString(record(n - 1)); err != nil {
					return
				}
				if n%batch == 0 {
					if files[i].Sync() != nil {
						return
					}
					acked[i] = n
					if n == batch {
						started <- struct{}{}
					}
				}
			}
		})
	}
	for range writers {
		<-started // every writer has fsync'd once
	}
	_, err := r.fs.PowerCut()
	require.NoError(t, err)
	wg.Wait() // each writer stops at its first failed call
	require.NoError(t, r.fs.Unmount())
	r.mount()
	for i := range writers {
		got := r.read(fmt.Sprint("log", i))
		n := len(got) / recLen
		require.Equal(t, records(n), string(got), "log%d: a prefix of whole records", i)
		require.GreaterOrEqual(t, n, acked[i], "log%d", i)
		require.Zero(t, n%batch, "log%d: whole batches", i)
	}
}

// TestFlock: flock works on the mount (the kernel keeps the locks), as a
// WAL that locks its files needs.
func TestFlock(t *testing.T) {
	r := newRig(t, Options{})
	a := r.create("f")
	b, err := os.Open(r.path("f"))
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, unix.Flock(int(a.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	require.ErrorIs(t, unix.Flock(int(b.Fd()), unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
	require.NoError(t, unix.Flock(int(a.Fd()), unix.LOCK_UN))
	require.NoError(t, unix.Flock(int(b.Fd()), unix.LOCK_EX|unix.LOCK_NB))
}
