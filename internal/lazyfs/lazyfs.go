package lazyfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fsType is the type /proc/self/mountinfo shows: CleanupStale unmounts
// only those.
const fsType = "fuse.lazyfs"

// pendingDir is the backing directory that holds unlinked and replaced
// entries until a directory fsync commits their removal; the mount hides
// it.
const pendingDir = ".lazyfs-pending"

var (
	// ErrNotRoot: mounting with mount(2) needs root.
	ErrNotRoot = errors.New("lazyfs: mounting needs root")
	// ErrNested: the backing inside the mount point, or the reverse,
	// would have the server call itself.
	ErrNested = errors.New("lazyfs: backing and mount point nest")
)

// Options tune a mount. The zero value is the strict model.
type Options struct {
	// DurableDirOps makes create, mkdir, unlink, rmdir and rename durable
	// as soon as they return. False (the default): they are durable only
	// once a directory is fsync'd, and a power cut undoes the others.
	// True catches fewer bugs, and suits code that relies on a journaling
	// file system's ordered metadata on purpose.
	DurableDirOps bool
	// Debug logs every FUSE request and reply with the standard logger:
	// for debugging lazyfs itself; very verbose.
	Debug bool
}

// Cut is what a power cut dropped, for a test's log.
type Cut struct {
	Bytes  int64 // written bytes not yet fsync'd
	Files  int   // files whose content lost a write or a truncate
	DirOps int   // directory operations undone (0 with DurableDirOps)
}

// FS is a mounted lazyfs.
type FS struct {
	backing    string
	mountpoint string
	opts       Options
	server     *fuse.Server
	served     chan struct{} // closed when the server has stopped

	// mu is held shared by every FUSE operation and exclusively by
	// PowerCut and Unmount: a cut never sees an operation half done.
	mu  sync.RWMutex
	cut bool

	// dirMu orders directory operations, so the journal lists them in
	// the order the backing saw them.
	dirMu   sync.Mutex
	journal []dirOp
	nextTmp int // name of the next entry in pendingDir

	// filesMu guards files and each file's handles.
	filesMu sync.Mutex
	files   map[uint64]*file // by backing inode number

	unmountOnce sync.Once
	unmountErr  error
}

// Mount serves backing at mountpoint; both must be existing directories,
// neither inside the other.
func Mount(backing, mountpoint string, opts Options) (*FS, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	var err error
	if backing, err = filepath.Abs(backing); err != nil {
		return nil, err
	}
	if mountpoint, err = filepath.Abs(mountpoint); err != nil {
		return nil, err
	}
	if within(backing, mountpoint) || within(mountpoint, backing) {
		return nil, fmt.Errorf("%w: %s, %s", ErrNested, backing, mountpoint)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("lazyfs: backing: %w", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return nil, fmt.Errorf("lazyfs: backing %s: %w", backing, syscall.ENOTDIR)
	}
	var mst syscall.Stat_t
	if err := syscall.Stat(mountpoint, &mst); err != nil {
		if errors.Is(err, syscall.ENOTCONN) {
			return nil, fmt.Errorf("lazyfs: mount point %s is a dead mount (CleanupStale removes it): %w", mountpoint, err)
		}
		return nil, fmt.Errorf("lazyfs: mount point: %w", err)
	}
	// What a killed process left pending had been unlinked: it goes.
	if err := os.RemoveAll(filepath.Join(backing, pendingDir)); err != nil {
		return nil, fmt.Errorf("lazyfs: %w", err)
	}
	l := &FS{
		backing:    backing,
		mountpoint: mountpoint,
		opts:       opts,
		served:     make(chan struct{}),
		files:      make(map[uint64]*file),
	}
	var zero time.Duration
	root := &node{lfs: l}
	nodeFS := fs.NewNodeFS(root, &fs.Options{
		// Every change goes through this kernel, so its caches stay
		// right; no caching still makes calls after a power cut reach
		// the server and fail.
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		RootStableAttr:  &fs.StableAttr{Ino: st.Ino},
	})
	server, err := fuse.NewServer(nodeFS, mountpoint, &fuse.MountOptions{
		FsName:            backing,
		Name:              "lazyfs",
		DirectMountStrict: true, // mount(2) ourselves: no fusermount
		AllowOther:        true, // likesd runs in other namespaces
		DisableXAttrs:     true,
		Debug:             opts.Debug,
	})
	if err != nil {
		return nil, fmt.Errorf("lazyfs: mount %s: %w", mountpoint, err)
	}
	l.server = server
	go func() {
		defer close(l.served)
		server.Serve()
	}()
	if err := server.WaitMount(); err != nil {
		_ = l.detach() // the server stops once the kernel lets go
		return nil, fmt.Errorf("lazyfs: mount %s: %w", mountpoint, err)
	}
	return l, nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Mountpoint is where the file system is mounted.
func (l *FS) Mountpoint() string { return l.mountpoint }

// Backing is the directory that holds the durable state.
func (l *FS) Backing() string { return l.backing }

// PowerCut drops every write and truncate not fsync'd and, in the strict
// model, undoes every directory operation not committed, then fails every
// later call on the mount with EIO. It returns what it dropped; an error
// means the backing could not be put back as the model says. A second
// call does nothing.
func (l *FS) PowerCut() (Cut, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return Cut{}, nil
	}
	l.cut = true
	var c Cut
	l.filesMu.Lock()
	for _, f := range l.files {
		f.mu.Lock()
		if f.ov.changed {
			c.Files++
			c.Bytes += f.ov.pending()
		}
		f.mu.Unlock()
	}
	l.filesMu.Unlock()
	l.closeFilesLocked()
	c.DirOps = len(l.journal)
	return c, l.undoJournal()
}

// Unmount stops the file system. Without a power cut before, it first
// fsyncs every file and commits every directory operation, as a clean
// shutdown would. It does not wait for processes that still hold files
// open: it detaches the mount and aborts the connection, and their calls
// fail. Only the first call does the work; later ones return its result.
func (l *FS) Unmount() error {
	l.unmountOnce.Do(func() { l.unmountErr = l.unmount() })
	return l.unmountErr
}

func (l *FS) unmount() error {
	var errs []error
	// Not server.Unmount: it retries a busy mount for 300 ms, and a busy
	// mount is what a test that cut the power usually has. MNT_FORCE
	// aborts the FUSE connection first, also for copies of the mount in
	// other mount namespaces (ip netns exec makes one): the server stops
	// whoever still holds a file. A mount still busy here is detached.
	if err := unix.Unmount(l.mountpoint, unix.MNT_FORCE); err != nil {
		if err := l.detach(); err != nil {
			errs = append(errs, err)
		}
	}
	<-l.served
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.cut {
		l.cut = true // no more operations, as after a cut
		l.filesMu.Lock()
		for _, f := range l.files {
			if err := f.sync(false); err != nil {
				errs = append(errs, fmt.Errorf("lazyfs: fsync at unmount: %w", err))
			}
		}
		l.filesMu.Unlock()
		errs = append(errs, l.commitJournal())
	}
	l.closeFilesLocked()
	errs = append(errs, os.RemoveAll(filepath.Join(l.backing, pendingDir)))
	return errors.Join(errs...)
}

// detach lazily unmounts a mount still in use.
func (l *FS) detach() error {
	err := unix.Unmount(l.mountpoint, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: not mounted
		return fmt.Errorf("lazyfs: detach %s: %w", l.mountpoint, err)
	}
	return nil
}

// CleanupStale lazily unmounts every lazyfs mount at mountpoint, such as
// one a killed test left behind. Use it only where no live FS is mounted:
// it would cut a live one off too. Nothing mounted is not an error.
func CleanupStale(mountpoint string) error {
	mountpoint, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	for range 16 { // mounts may be stacked
		mounted, err := lazyfsMounted(mountpoint)
		if err != nil || !mounted {
			return err
		}
		if err := unix.Unmount(mountpoint, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("lazyfs: cleanup %s: %w", mountpoint, err)
		}
	}
	return fmt.Errorf("lazyfs: cleanup %s: still mounted", mountpoint)
}

// lazyfsMounted reports whether a lazyfs is mounted at mountpoint.
func lazyfsMounted(mountpoint string) (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	for line := range strings.Lines(string(b)) {
		// id parent maj:min root mountpoint options [optional...] - type source super
		pre, post, ok := strings.Cut(line, " - ")
		fields, typ := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(typ) < 1 {
			continue
		}
		if typ[0] == fsType && unescapeMountinfo(fields[4]) == mountpoint {
			return true, nil
		}
	}
	return false, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
