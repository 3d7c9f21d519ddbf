// Package wal owns this node's data directory: the log of every like the
// replica applies, the snapshots that let the log be cut, the lock that
// gives the directory one owner, the generation that fences a stale one
// out, and recovery at start.
//
// # Files
//
//	LOCK                      an fcntl lock: one process per directory
//	gen-<gen>                 the generation that owns the directory now
//	<seq>-<gen>.wal           a log segment, written by generation gen
//	<seq>-<gen>.snap          a snapshot holding every like of segments < seq
//	<name>.corrupt-<why>      a file set aside: recovery found it damaged
//
// Segment numbers grow across process lives, so replay is: the newest
// valid snapshot, then every segment from its number on, in order. The
// replica is a union of likes, so a like replayed twice (a snapshot taken
// while the log went on) changes nothing, and neither does the order
// within a file: a snapshot's entries are restored on GOMAXPROCS
// goroutines, and a segment's records in one batch grouped by post
// (store.RestoreLikes), which is what makes a logged like cheap to replay.
//
// # Durability
//
// Append is called by the store under the lock of the like's shard, so a
// like anyone can see in the replica is already in the log's buffer: the
// durable point a reader waits for (WaitDurable, AfterDurable) is "every
// record appended before this call", one counter compared with another.
// One goroutine writes the buffer and fdatasyncs it: a sync covers every
// record appended while the previous one ran (group commit), and nothing
// waits for a timer, so a lone write costs one write and one fdatasync.
//
// A write or sync that fails makes the log unwritable (Err): the page cache
// is not trusted after a failed fsync, so the data is written again from
// memory, as a fresh snapshot of the whole replica, and the log resumes in
// a new segment once that succeeds; it retries on its own until the disk
// takes it (space returned). Meanwhile new records are not buffered: the
// snapshot will hold them.
//
// # Fencing
//
// Open takes the LOCK and a new generation (one more than any on disk),
// makes gen-<gen> durable and removes older markers before it reads
// anything. A process that lost the directory (its lock gone with a
// deleted file or a network file system, paused, then resumed) finds its
// own marker gone the next time it is about to acknowledge a sync or to
// rename, cut or delete a file, and stops writing for good (ErrFenced). It
// only ever writes files named with its own generation, so it cannot
// append to, truncate or replace what a newer one wrote; what it synced
// before its marker went is read by the newer one's recovery, which starts
// only after removing that marker.
//
// # Recovery
//
// A record or snapshot entry is framed as length, CRC-32C and body. A bad
// frame with no valid frame after it in the same file is a torn tail (a
// crash during a write): the file is cut at the last valid record, logged
// and counted. A bad frame followed by a valid one is damage in the middle:
// the file is renamed to <name>.corrupt-<why>, what could be read of it is
// applied, and Recovery.Incomplete tells the node to rebuild from its peers
// before it reports ready. A snapshot is valid only whole (its end entry
// counts what it holds); a damaged one is set aside the same way.
//
// # What was weighed
//
// pebble's vfs is the file-system seam (vfs.Default in production, its
// strict MemFS, which forgets whatever was not synced, in the crash tests).
// pebble's record format (LevelDB's 32 KiB blocks) was weighed and not
// used: its reader reports damage without saying whether a valid record
// follows, which is the line between a torn tail and a damaged middle here,
// and its block padding costs bytes a like-sized record does not need. The
// framing here is etcd's: length, CRC-32C, body.
package wal
