// Package lazyfs owns a FUSE file system that forgets what was not
// fsync'd, so that tests can cut the power under real processes, as
// Jepsen's LazyFS does.
//
// Mount serves a directory, the backing, at a mount point. The backing
// holds the durable state: what a disk would hold after a power cut.
// Processes use the mount point as an ordinary file system; PowerCut then
// throws away everything a real power cut could throw away, makes every
// later call on the mount fail with EIO, and Unmount leaves the backing as
// the disk after the cut, ready for a new Mount.
//
// # The crash model
//
// File content. A write or a truncate (ftruncate, open with O_TRUNC,
// fallocate growing the file) goes to an in-memory overlay of the file,
// kept per inode, shared by every open handle, and outliving them; reads
// see the overlay over the backing file. fsync or fdatasync of the file,
// through any handle, writes the overlay into the backing file and fsyncs
// it: then, and only then, is that content durable. A power cut drops every
// overlay: each file is left with the content, and the size, it had at its
// last fsync. A file created and never fsync'd is left empty (in the
// default model, gone unless its directory was fsync'd since); bytes
// appended after the last fsync are gone, and so are truncates. Nothing is
// torn: an fsync is all or nothing, and a write is never partly durable
// (a real disk may keep any subset of unsynced pages; lazyfs keeps none).
// A power cut while an fsync runs waits for it: the fsync happened, even
// if its caller, killed with the power, never saw it return.
//
// Directory entries (the default, Options.DurableDirOps false). Create,
// mkdir, unlink, rmdir and rename change the backing at once, and each is
// appended to one journal for the whole mount. An fsync of a directory
// commits the journal up to the last operation that changed that
// directory (known by inode, so also after the directory was renamed):
// the journal is ordered, as a journaling file system's is, so operations
// before that one, in any directory, are committed with it, and later
// ones, even in that directory, are not. A power cut undoes, newest first,
// every operation not committed: a file created and fsync'd whose
// directory was not fsync'd afterwards is gone; a rename not followed by
// an fsync of its directories is undone, and the file it replaced is back
// with its durable content; an unlinked file is back. A rename counts as
// a change of both directories. An unlinked file, or one replaced by a
// rename, waits in a hidden directory of the backing (.lazyfs-pending,
// invisible through the mount) until its removal is committed; a Mount
// removes what a killed process left there.
//
// With Options.DurableDirOps, directory operations are durable as soon as
// they return, as on a file system that commits metadata synchronously;
// only file content is lost.
//
// Not modelled: attributes (chmod, chown, utimes) reach the backing at
// once and are never undone; mtime and ctime change when content reaches
// the backing, not at each write; sync(2) and syncfs(2) make nothing durable
// (only fsync and fdatasync do, and writes through an O_SYNC or O_DSYNC
// descriptor, which the kernel follows with an fsync); symbolic links,
// hard links, device nodes and extended attributes are not supported, and
// mmap is untested. Reads a process makes after a power cut may still be
// served from the kernel's page cache; every other call fails. The backing
// must be one file system (files are known by inode number).
//
// Unmount without a power cut is a clean shutdown: it fsyncs every file
// and commits every directory operation first.
//
// Mounting needs root and /dev/fuse: lazyfs mounts with mount(2) itself
// and needs no fusermount binary. The server runs in the calling process;
// if that process dies without Unmount, the mount point is left dead
// ("transport endpoint is not connected") until CleanupStale.
package lazyfs
