package lazyfs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a file or directory of the mount. It implements only what lazyfs
// models: go-fuse answers ENOTSUP (or ENOSYS) for the rest.
type node struct {
	fs.Inode
	lfs *FS
}

var (
	_ fs.NodeLookuper  = (*node)(nil)
	_ fs.NodeGetattrer = (*node)(nil)
	_ fs.NodeSetattrer = (*node)(nil)
	_ fs.NodeOpener    = (*node)(nil)
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeMkdirer   = (*node)(nil)
	_ fs.NodeUnlinker  = (*node)(nil)
	_ fs.NodeRmdirer   = (*node)(nil)
	_ fs.NodeRenamer   = (*node)(nil)
	_ fs.NodeReaddirer = (*node)(nil)
	_ fs.NodeFsyncer   = (*node)(nil)
	_ fs.NodeStatfser  = (*node)(nil)
)

// enter starts an operation: EIO after a power cut; otherwise a cut waits
// until leave.
func (l *FS) enter() syscall.Errno {
	l.mu.RLock()
	if l.cut {
		l.mu.RUnlock()
		return syscall.EIO
	}
	return 0
}

func (l *FS) leave() { l.mu.RUnlock() }

func (n *node) path() string { return filepath.Join(n.lfs.backing, n.Path(nil)) }

func (n *node) child(name string) string { return filepath.Join(n.path(), name) }

// hidden reports whether name is lazyfs's own directory in the root.
func (n *node) hidden(name string) bool { return name == pendingDir && n.IsRoot() }

// newChild returns the inode for a backing entry.
func (n *node) newChild(ctx context.Context, x *unix.Statx_t) *fs.Inode {
	gen := uint64(1)
	if x.Mask&unix.STATX_BTIME != 0 {
		// A new file may get a freed inode number; the birth time tells it
		// from the old one.
		gen = uint64(x.Btime.Sec)*1e9 + uint64(x.Btime.Nsec)
	}
	return n.NewInode(ctx, &node{lfs: n.lfs}, fs.StableAttr{Mode: uint32(x.Mode) & syscall.S_IFMT, Ino: x.Ino, Gen: gen})
}

// attr fills out from the backing's attributes, with the size a reader
// sees.
func (l *FS) attr(x *unix.Statx_t, out *fuse.Attr) {
	out.Ino = x.Ino
	out.Size = x.Size
	out.Blocks = x.Blocks
	out.Atime, out.Atimensec = uint64(x.Atime.Sec), x.Atime.Nsec
	out.Mtime, out.Mtimensec = uint64(x.Mtime.Sec), x.Mtime.Nsec
	out.Ctime, out.Ctimensec = uint64(x.Ctime.Sec), x.Ctime.Nsec
	out.Mode = uint32(x.Mode)
	out.Nlink = x.Nlink
	out.Uid, out.Gid = x.Uid, x.Gid
	out.Rdev = uint32(unix.Mkdev(x.Rdev_major, x.Rdev_minor))
	out.Blksize = x.Blksize
	if f := l.fileOf(x.Ino); f != nil {
		f.mu.Lock()
		out.Size = uint64(f.ov.size)
		f.mu.Unlock()
		out.Blocks = (out.Size + 511) / 512
	}
}

func lstatx(path string, x *unix.Statx_t) error {
	return unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, x)
}

func fstatx(f *os.File, x *unix.Statx_t) error {
	return unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS|unix.STATX_BTIME, x)
}

// own gives path to the caller, as a file system run by root does.
func own(ctx context.Context, path string) {
	if c, ok := fuse.FromContext(ctx); ok {
		_ = os.Lchown(path, int(c.Uid), int(c.Gid))
	}
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.lfs.enter(); e != 0 {
		return nil, e
	}
	defer n.lfs.leave()
	if n.hidden(name) {
		return nil, syscall.ENOENT
	}
	var x unix.Statx_t
	if err := lstatx(n.child(name), &x); err != nil {
		return nil, errno(err)
	}
	n.lfs.attr(&x, &out.Attr)
	return n.newChild(ctx, &x), 0
}

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if e := n.lfs.enter(); e != 0 {
		return e
	}
	defer n.lfs.leave()
	var x unix.Statx_t
	var err error
	if h, ok := fh.(*handle); ok {
		err = fstatx(h.f.fd, &x)
	} else {
		err = lstatx(n.path(), &x)
	}
	if err != nil {
		return errno(err)
	}
	n.lfs.attr(&x, &out.Attr)
	return 0
}

// Setattr changes mode, owner and times on the backing at once, and the
// size in the overlay.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if e := n.lfs.enter(); e != 0 {
		return e
	}
	defer n.lfs.leave()
	p := n.path()
	h, _ := fh.(*handle)
	if h != nil {
		// Through the descriptor: the file may have no name any more.
		p = "/proc/self/fd/" + strconv.Itoa(int(h.f.fd.Fd()))
	}
	if m, ok := in.GetMode(); ok {
		if err := syscall.Chmod(p, m&07777); err != nil {
			return errno(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		u, g := -1, -1
		if uok {
			u = int(uid)
		}
		if gok {
			g = int(gid)
		}
		if err := os.Chown(p, u, g); err != nil {
			return errno(err)
		}
	}
	if size, ok := in.GetSize(); ok {
		f := h.file()
		if f == nil {
			var err error
			if f, err = n.lfs.acquire(p, nil); err != nil {
				return errno(err)
			}
			defer n.lfs.release(f)
		}
		f.mu.Lock()
		f.ov.truncate(int64(size))
		f.mu.Unlock()
	}
	mtime, mok := in.GetMTime()
	atime, aok := in.GetATime()
	if mok || aok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
		}
		if mok {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0); err != nil {
			return errno(err)
		}
	}
	var x unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_BASIC_STATS, &x); err != nil {
		return errno(err)
	}
	n.lfs.attr(&x, &out.Attr)
	return 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if e := n.lfs.enter(); e != 0 {
		return nil, 0, e
	}
	defer n.lfs.leave()
	if n.StableAttr().Mode != syscall.S_IFREG {
		return nil, 0, syscall.ENOTSUP
	}
	f, err := n.lfs.acquire(n.path(), nil)
	if err != nil {
		return nil, 0, errno(err)
	}
	if flags&syscall.O_TRUNC != 0 {
		f.mu.Lock()
		f.ov.truncate(0)
		f.mu.Unlock()
	}
	return &handle{lfs: n.lfs, f: f}, 0, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if e := n.lfs.enter(); e != 0 {
		return nil, nil, 0, e
	}
	defer n.lfs.leave()
	if n.hidden(name) {
		return nil, nil, 0, syscall.EPERM
	}
	p := n.child(name)
	var fd *os.File
	existed := false
	err := n.lfs.create(n.StableAttr().Ino, p, func() error {
		var err error
		fd, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, os.FileMode(mode&0o777))
		if err != nil {
			return err
		}
		// Mode as asked: the kernel applied the caller's umask already.
		_ = fd.Chmod(os.FileMode(mode & 0o777))
		own(ctx, p)
		return nil
	})
	if os.IsExist(err) && flags&syscall.O_EXCL == 0 {
		existed = true
		fd, err = nil, nil
	}
	if err != nil {
		return nil, nil, 0, errno(err)
	}
	f, err := n.lfs.acquire(p, fd)
	if err != nil {
		return nil, nil, 0, errno(err)
	}
	if existed && flags&syscall.O_TRUNC != 0 {
		f.mu.Lock()
		f.ov.truncate(0)
		f.mu.Unlock()
	}
	var x unix.Statx_t
	if err := fstatx(f.fd, &x); err != nil {
		n.lfs.release(f)
		return nil, nil, 0, errno(err)
	}
	n.lfs.attr(&x, &out.Attr)
	return n.newChild(ctx, &x), &handle{lfs: n.lfs, f: f}, 0, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.lfs.enter(); e != 0 {
		return nil, e
	}
	defer n.lfs.leave()
	if n.hidden(name) {
		return nil, syscall.EPERM
	}
	p := n.child(name)
	err := n.lfs.create(n.StableAttr().Ino, p, func() error {
		if err := syscall.Mkdir(p, mode&0o7777); err != nil {
			return err
		}
		own(ctx, p)
		return nil
	})
	if err != nil {
		return nil, errno(err)
	}
	var x unix.Statx_t
	if err := lstatx(p, &x); err != nil {
		return nil, errno(err)
	}
	n.lfs.attr(&x, &out.Attr)
	return n.newChild(ctx, &x), 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if e := n.lfs.enter(); e != 0 {
		return e
	}
	defer n.lfs.leave()
	if n.hidden(name) {
		return syscall.ENOENT
	}
	return errno(n.lfs.remove(n.StableAttr().Ino, n.child(name), false))
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if e := n.lfs.enter(); e != 0 {
		return e
	}
	defer n.lfs.leave()
	if n.hidden(name) {
		return syscall.ENOENT
	}
	return errno(n.lfs.remove(n.StableAttr().Ino, n.child(name), true))
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if e := n.lfs.enter(); e != 0 {
		return e
	}
	defer n.lfs.leave()
	np, ok := newParent.(*node)
	if !ok || np.lfs != n.lfs {
		return syscall.EXDEV
	}
	if n.hidden(name) || np.hidden(newName) {
		return syscall.EPERM
	}
	return errno(n.lfs.rename(n.StableAttr().Ino, np.StableAttr().Ino, n.child(name), np.child(newName), flags))
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if e := n.lfs.enter(); e != 0 {
		return nil, e
	}
	defer n.lfs.leave()
	d, err := os.Open(n.path())
	if err != nil {
		return nil, errno(err)
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, errno(err)
	}
	list := make([]fuse.DirEntry, 0, len(ents))
	for _, e := range ents {
		if n.hidden(e.Name()) {
			continue
		}
		de := fuse.DirEntry{Name: e.Name(), Mode: uint32(e.Type().Perm())}
		if info, err := e.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				de.Ino, de.Mode = st.Ino, st.Mode
			}
		}
		list = append(list, de)
	}
	return fs.NewListDirStream(list), 0
}

// Fsync of a file makes its overlay durable; of a directory, commits the
// journal up to the directory's last change.
func (n *node) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	if e := n.lfs.enter(); e != 0 {
		return e
	}
	defer n.lfs.leave()
	if n.IsDir() {
		return errno(n.lfs.commitDir(n.StableAttr().Ino))
	}
	h, ok := fh.(*handle)
	if !ok {
		return syscall.EBADF
	}
	if err := h.f.sync(flags&fsyncFdatasync != 0); err != nil {
		return syscall.EIO
	}
	return 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if e := n.lfs.enter(); e != 0 {
		return e
	}
	defer n.lfs.leave()
	var s syscall.Statfs_t
	if err := syscall.Statfs(n.lfs.backing, &s); err != nil {
		return errno(err)
	}
	out.FromStatfsT(&s)
	return 0
}

// handle is an open file: reads and writes go to its file's overlay.
type handle struct {
	lfs *FS
	f   *file
}

var (
	_ fs.FileReader    = (*handle)(nil)
	_ fs.FileWriter    = (*handle)(nil)
	_ fs.FileFlusher   = (*handle)(nil)
	_ fs.FileReleaser  = (*handle)(nil)
	_ fs.FileAllocater = (*handle)(nil)
)

func (h *handle) file() *file {
	if h == nil {
		return nil
	}
	return h.f
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if e := h.lfs.enter(); e != 0 {
		return nil, e
	}
	defer h.lfs.leave()
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	n, err := h.f.ov.read(dest, off, h.f.fd)
	if err != nil && err != io.EOF {
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if e := h.lfs.enter(); e != 0 {
		return 0, e
	}
	defer h.lfs.leave()
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	h.f.ov.write(data, off)
	return uint32(len(data)), 0
}

// Flush (close) fails after a power cut, so that a survivor's close says so.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if e := h.lfs.enter(); e != 0 {
		return e
	}
	h.lfs.leave()
	return 0
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.lfs.release(h.f)
	return 0
}

// Allocate grows the file (mode 0) or does nothing visible (KEEP_SIZE);
// other modes are not modelled.
func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if e := h.lfs.enter(); e != 0 {
		return e
	}
	defer h.lfs.leave()
	switch mode {
	case 0:
		h.f.mu.Lock()
		if end := int64(off + size); end > h.f.ov.size {
			h.f.ov.truncate(end)
		}
		h.f.mu.Unlock()
		return 0
	case unix.FALLOC_FL_KEEP_SIZE:
		return 0
	}
	return syscall.EOPNOTSUPP
}

// fsyncFdatasync is FUSE_FSYNC_FDATASYNC: fdatasync rather than fsync.
const fsyncFdatasync = 1
