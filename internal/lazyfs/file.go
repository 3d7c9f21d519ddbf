package lazyfs

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// file is one backing inode that is open or has unsynced changes: its
// overlay outlives the handles, so a write, a close and a later open still
// see each other, and the kernel forgetting the inode loses nothing.
type file struct {
	ino uint64
	fd  *os.File // the backing file, read-write; open as long as the file is in FS.files

	handles int // guarded by FS.filesMu

	mu sync.Mutex // guards ov
	ov overlay
}

// sync makes the overlay durable.
func (f *file) sync(datasync bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ov.apply(f.fd); err != nil {
		return err
	}
	if datasync {
		return unix.Fdatasync(int(f.fd.Fd()))
	}
	return f.fd.Sync()
}

// acquire returns the file of inode ino, opening it at path if it is not
// open, with one more handle. With fd non-nil (a file just created) it
// uses fd or closes it.
func (l *FS) acquire(path string, fd *os.File) (*file, error) {
	if fd == nil {
		var err error
		if fd, err = os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0); err != nil {
			return nil, err
		}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(fd.Fd()), &st); err != nil {
		fd.Close()
		return nil, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		fd.Close()
		return nil, syscall.EINVAL
	}
	l.filesMu.Lock()
	defer l.filesMu.Unlock()
	if f, ok := l.files[st.Ino]; ok {
		fd.Close()
		f.handles++
		return f, nil
	}
	f := &file{ino: st.Ino, fd: fd, handles: 1, ov: newOverlay(st.Size)}
	l.files[st.Ino] = f
	return f, nil
}

// release drops a handle. The last one closes the file unless it has
// changes a later fsync could still make durable.
func (l *FS) release(f *file) {
	l.filesMu.Lock()
	defer l.filesMu.Unlock()
	if l.files[f.ino] != f { // closed by a power cut or a commit
		return
	}
	f.handles--
	l.closeIfIdleLocked(f)
}

// forget closes inode ino's file if it is unlinked and no handle holds it:
// nobody can fsync its changes any more.
func (l *FS) forget(ino uint64) {
	l.filesMu.Lock()
	defer l.filesMu.Unlock()
	if f, ok := l.files[ino]; ok {
		l.closeIfIdleLocked(f)
	}
}

func (l *FS) closeIfIdleLocked(f *file) {
	if f.handles > 0 {
		return
	}
	f.mu.Lock()
	changed := f.ov.changed
	f.mu.Unlock()
	if changed {
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.fd.Fd()), &st); err == nil && st.Nlink > 0 {
			return
		}
	}
	f.fd.Close()
	delete(l.files, f.ino)
}

// fileOf returns the file of inode ino if it is open.
func (l *FS) fileOf(ino uint64) *file {
	l.filesMu.Lock()
	defer l.filesMu.Unlock()
	return l.files[ino]
}

// closeFilesLocked closes every file; the caller holds mu exclusively.
func (l *FS) closeFilesLocked() {
	l.filesMu.Lock()
	defer l.filesMu.Unlock()
	for ino, f := range l.files {
		f.fd.Close()
		delete(l.files, ino)
	}
}

// errno maps an error from the backing to what the caller sees.
func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}
