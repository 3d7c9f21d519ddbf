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
// last fsync. A file created and never fsync'd is left empty; bytes
// appended after the last fsync are gone, and so are truncates. Nothing is
// torn: an fsync is all or nothing, and a write is never partly durable
// (a real disk may keep any subset of unsynced pages; lazyfs keeps none).
// A power cut while an fsync runs waits for it: the fsync happened, even
// if its caller, killed with the power, never saw it return.
//
// Directory entries (the default, Options.DurableDirOps false). Create,
// mkdir, unlink, rmdir and rename change the backing at once, but each is
// recorded; an fsync of any directory on the mount commits every recorded
// operation so far, and a power cut undoes, newest first, those not yet
// committed: a file created and fsync'd but whose directory was not
// fsync'd is gone, a rename not followed by a directory fsync is undone
// (the old name is back, with its durable content), an unlinked file is
// back. The journal is one ordered log for the whole mount, as on a file
// system that journals metadata in order: fsync of one directory also
// commits what was done in another. An unlinked file, or one replaced by a
// rename, waits in a hidden directory of the backing (.lazyfs-pending,
// invisible through the mount) until the commit removes it.
//
// With Options.DurableDirOps, directory operations are durable as soon as
// they return, as on a file system that commits metadata synchronously;
// only file content is lost.
//
// Not modelled: attributes (chmod, chown, utimes) and anything else reach
// the backing at once and are never undone; symbolic links, hard links,
// device nodes, extended attributes and mmap of a file written through
// the mount are not supported; reads a process makes after a power cut may
// still be served from the kernel's page cache (every other call fails).
//
// Unmount without a power cut is a clean shutdown: it fsyncs every file
// and commits every directory operation first.
//
// Mounting needs root and /dev/fuse: lazyfs mounts with mount(2) itself
// and needs no fusermount binary. The server runs in the calling process;
// if that process dies without Unmount, the mount point is left dead
// ("transport endpoint is not connected") until CleanupStale.
package lazyfs
