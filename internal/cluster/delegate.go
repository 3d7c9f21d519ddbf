package cluster

import (
	"bytes"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
)

// delegate adapts Node to memberlist.Delegate without putting memberlist's
// methods on Node's exported surface.
type delegate struct{ n *Node }

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta carries this node's origin, so peers know whom to ask for the
// ranges of its likes, and whether it is leaving (see members.go).
func (d *delegate) NodeMeta(limit int) []byte {
	return encodeMeta(d.n.origin, d.n.leaving.Load())
}

// NotifyMsg runs on memberlist's packet loop or a stream's goroutine: copy
// and hand off, never block.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	msg := bytes.Clone(b) // memberlist reuses b after we return
	select {
	case d.n.inbox <- msg:
	default:
		d.n.stats.inboxDropped.Add(1)
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.n.queue.GetBroadcasts(overhead, limit)
}

// LocalState is this node's version vector: a few hundred bytes however
// many likes it holds.
func (d *delegate) LocalState(bool) []byte {
	return encodeState(d.n.cfg.NodeName, d.n.origin, d.n.reportedVV())
}

// MergeRemoteState runs on every push/pull, not only on join: a peer ahead
// of this node schedules the repair of exactly what is missing.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	n := d.n
	name, _, vv, err := decodeState(buf)
	if err != nil {
		n.stats.decodeErrors.Add(1)
		n.log.Warn().Err(err).Int("bytes", len(buf)).Msg("bad push/pull state dropped")
		return
	}
	n.stats.pushPullMerges.Add(1)
	n.stats.pushPullBytes.Add(uint64(len(buf)))
	n.repair.noteRemote(name, vv)
	n.log.Debug().Bool("join", join).Str("peer", name).Int("bytes", len(buf)).Msg("push/pull")
}

// broadcast is one frame in memberlist's queue. It is unique, so queueing
// it does not scan the queue for frames it would invalidate.
type broadcast struct{ msg []byte }

var _ memberlist.UniqueBroadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *broadcast) Message() []byte                       { return b.msg }
func (b *broadcast) Finished()                             {}
func (b *broadcast) UniqueBroadcast()                      {}

// memberlistLog turns memberlist's "[LEVEL] memberlist: ..." lines into
// zerolog events at the matching level, and tells suspect of the members
// this node's probes suspect (see members.go).
type memberlistLog struct {
	log     zerolog.Logger
	suspect func(name string)
}

func (w memberlistLog) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := zerolog.InfoLevel
	for _, l := range []struct {
		prefix string
		level  zerolog.Level
	}{{"[DEBUG]", zerolog.DebugLevel}, {"[INFO]", zerolog.InfoLevel}, {"[WARN]", zerolog.WarnLevel}, {"[ERR]", zerolog.ErrorLevel}} {
		if rest, ok := bytes.CutPrefix(line, []byte(l.prefix)); ok {
			level, line = l.level, bytes.TrimSpace(rest)
			break
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	if name, ok := suspectOf(line); ok && w.suspect != nil {
		w.suspect(name)
	}
	w.log.WithLevel(level).Msg(string(line))
	return len(p), nil
}
