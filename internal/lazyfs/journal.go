package lazyfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// dirOp is one directory operation done on the backing and not yet
// committed, in the terms needed to undo it.
type dirOp struct {
	kind     opKind
	from, to string    // backing paths; created uses from only
	dirs     [2]uint64 // the directories it changed, by backing inode
	ino      uint64    // moves into pendingDir: the inode, to forget at commit
}

func (op dirOp) changed(dir uint64) bool { return op.dirs[0] == dir || op.dirs[1] == dir }

type opKind uint8

const (
	opCreated   opKind = iota // from was created: undo removes it
	opMoved                   // from was renamed to to: undo renames back
	opExchanged               // from and to were exchanged: undo exchanges again
)

func (k opKind) String() string {
	return [...]string{opCreated: "create", opMoved: "rename", opExchanged: "exchange"}[k]
}

// The strict model's directory operations. Each runs under dirMu, changes
// the backing and appends what undoes it to the journal. With
// DurableDirOps they change the backing only. dir, from and to are the
// parent directories' backing inode numbers.

func (l *FS) create(dir uint64, path string, do func() error) error {
	l.dirMu.Lock()
	defer l.dirMu.Unlock()
	if err := do(); err != nil {
		return err
	}
	if !l.opts.DurableDirOps {
		l.journal = append(l.journal, dirOp{kind: opCreated, from: path, dirs: [2]uint64{dir, dir}})
	}
	return nil
}

// remove unlinks a file (dir false) or removes an empty directory.
func (l *FS) remove(parent uint64, path string, dir bool) error {
	l.dirMu.Lock()
	defer l.dirMu.Unlock()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return err
	}
	isDir := st.Mode&syscall.S_IFMT == syscall.S_IFDIR
	switch {
	case dir && !isDir:
		return syscall.ENOTDIR
	case !dir && isDir:
		return syscall.EISDIR
	}
	if l.opts.DurableDirOps {
		var err error
		if dir {
			err = syscall.Rmdir(path)
		} else {
			err = syscall.Unlink(path)
		}
		if err == nil {
			l.forget(st.Ino)
		}
		return err
	}
	if dir {
		if err := emptyDir(path); err != nil {
			return err
		}
	}
	_, err := l.moveAsideLocked(parent, path, st.Ino)
	return err
}

// rename renames from to to, with renameat2's flags.
func (l *FS) rename(fromDir, toDir uint64, from, to string, flags uint32) error {
	l.dirMu.Lock()
	defer l.dirMu.Unlock()
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL
	}
	var replaced syscall.Stat_t
	exists := syscall.Lstat(to, &replaced) == nil
	if l.opts.DurableDirOps {
		if err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, uint(flags)); err != nil {
			return err
		}
		if exists && flags == 0 {
			l.forget(replaced.Ino)
		}
		return nil
	}
	if flags != 0 || !exists {
		if err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, uint(flags)); err != nil {
			return err
		}
		kind := opMoved
		if flags&unix.RENAME_EXCHANGE != 0 {
			kind = opExchanged
		}
		l.journal = append(l.journal, dirOp{kind: kind, from: from, to: to, dirs: [2]uint64{fromDir, toDir}})
		return nil
	}
	// to is replaced: keep it aside, so that an undo can bring it back.
	var moved syscall.Stat_t
	if err := syscall.Lstat(from, &moved); err != nil {
		return err
	}
	if moved.Ino == replaced.Ino {
		return nil // the same file: rename does nothing
	}
	switch movedDir, replacedDir := moved.Mode&syscall.S_IFMT == syscall.S_IFDIR, replaced.Mode&syscall.S_IFMT == syscall.S_IFDIR; {
	case movedDir && !replacedDir:
		return syscall.ENOTDIR
	case !movedDir && replacedDir:
		return syscall.EISDIR
	case replacedDir:
		if err := emptyDir(to); err != nil {
			return err
		}
	}
	aside, err := l.moveAsideLocked(toDir, to, replaced.Ino)
	if err != nil {
		return err
	}
	if err := syscall.Rename(from, to); err != nil {
		// Put the replaced entry back; the journal forgets it.
		if err2 := syscall.Rename(aside, to); err2 != nil {
			return fmt.Errorf("lazyfs: rename failed (%w), and restoring %s failed: %v", err, to, err2)
		}
		l.journal = l.journal[:len(l.journal)-1]
		return err
	}
	l.journal = append(l.journal, dirOp{kind: opMoved, from: from, to: to, dirs: [2]uint64{fromDir, toDir}})
	return nil
}

// moveAsideLocked renames path, in directory parent, into pendingDir and
// journals it.
func (l *FS) moveAsideLocked(parent uint64, path string, ino uint64) (string, error) {
	dir := filepath.Join(l.backing, pendingDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	aside := filepath.Join(dir, strconv.Itoa(l.nextTmp))
	l.nextTmp++
	if err := syscall.Rename(path, aside); err != nil {
		return "", err
	}
	l.journal = append(l.journal, dirOp{kind: opMoved, from: path, to: aside, dirs: [2]uint64{parent, parent}, ino: ino})
	return aside, nil
}

func emptyDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) > 0 {
		return syscall.ENOTEMPTY
	}
	return nil
}

// commitDir is an fsync of directory dir: it commits the journal up to
// the last operation that changed dir. The journal is ordered, as a
// journaling file system's is: what came before that operation, in any
// directory, is committed with it; what came after, even in dir, is not.
func (l *FS) commitDir(dir uint64) error {
	l.dirMu.Lock()
	defer l.dirMu.Unlock()
	n := 0
	for i, op := range l.journal {
		if op.changed(dir) {
			n = i + 1
		}
	}
	return l.commitLocked(n)
}

// commitJournal commits every journaled operation.
func (l *FS) commitJournal() error {
	l.dirMu.Lock()
	defer l.dirMu.Unlock()
	return l.commitLocked(len(l.journal))
}

// commitLocked makes the first n journaled operations durable: what they
// put in pendingDir goes.
func (l *FS) commitLocked(n int) error {
	var errs []error
	for _, op := range l.journal[:n] {
		if op.ino == 0 {
			continue
		}
		if err := os.RemoveAll(op.to); err != nil {
			errs = append(errs, err)
		}
		l.forget(op.ino)
	}
	l.journal = slices.Delete(l.journal, 0, n)
	return errors.Join(errs...)
}

// undoJournal undoes every journaled operation, newest first. Each undo
// finds the backing as its operation left it: everything after it is
// undone already.
func (l *FS) undoJournal() error {
	l.dirMu.Lock()
	defer l.dirMu.Unlock()
	var errs []error
	for i := len(l.journal) - 1; i >= 0; i-- {
		op := l.journal[i]
		var err error
		switch op.kind {
		case opCreated:
			err = os.Remove(op.from)
		case opMoved:
			err = syscall.Rename(op.to, op.from)
		case opExchanged:
			err = unix.Renameat2(unix.AT_FDCWD, op.from, unix.AT_FDCWD, op.to, unix.RENAME_EXCHANGE)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("lazyfs: undo %v %s %s: %w", op.kind, op.from, op.to, err))
		}
	}
	l.journal = nil
	return errors.Join(errs...)
}
