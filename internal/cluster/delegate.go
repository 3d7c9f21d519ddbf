package cluster

import (
	"bytes"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
)

// delegate adapts Node to memberlist.Delegate without putting memberlist's
// methods on Node's exported surface. start wires it: meta is
// Node.nodeMeta, receive Node.receive, queue the node's broadcast queue.
type delegate struct {
	meta    func() []byte
	receive func(peer string, msg []byte) // never blocks on I/O
	queue   *memberlist.TransmitLimitedQueue
}

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte { return d.meta() }

// nodeMeta carries this node's origin (the first part of its likes' dots),
// when it started, whether it is leaving, and how it sends (see
// members.go): a node in gossip mode takes sessions but broadcasts its
// frames, so it does not say metaSessionsOnly.
func (n *Node) nodeMeta() []byte {
	sessions := n.speaksSessions() // what peers then expect its anti-entropy on
	return encodeMeta(n.origin, n.started, n.leaving.Load(), n.mux != nil, sessions, sessions && n.cfg.FastPath == FastPathDirect)
}

// NotifyMsg runs on memberlist's packet loop or a stream's goroutine: copy
// and hand off, never block on I/O (an ack takes writes.mu for a moment).
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) > 0 && b[0] != msgAck {
		b = bytes.Clone(b) // memberlist reuses b after we return
	}
	d.receive("", b)
}

// receive takes a message from a peer: memberlist's (peer empty), or one
// from the named peer's stream, which hands over its buffer.
func (n *Node) receive(peer string, msg []byte) {
	if len(msg) == 0 {
		return
	}
	if msg[0] == msgAck {
		// Acks are applied here, not behind frames and sync chunks in the
		// inbox: a full inbox must not read as every peer going silent.
		// Applying one is a decode and a short critical section.
		n.handleAck(peer, msg)
		return
	}
	n.inbox.Offer(received{msg: msg, peer: peer}) // full: dropped, counted in InboxDropped
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

// LocalState carries nothing: push/pull keeps only memberlist's own
// membership exchange. Anti-entropy of likes runs its own sessions
// (sync.go), which compare content, not metadata.
func (d *delegate) LocalState(bool) []byte { return nil }

func (d *delegate) MergeRemoteState([]byte, bool) {}

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
	stray   func(addr string)
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
	if addr, ok := strayPingFrom(line); ok && w.stray != nil {
		w.stray(addr)
	}
	switch {
	case bytes.Contains(line, []byte("use of closed network connection")):
		// memberlist's gossip and probe goroutines may still send after
		// Shutdown closed the transport: expected at exit, not an error.
		level = zerolog.DebugLevel
	case level == zerolog.ErrorLevel && (bytes.Contains(line, []byte("ping")) || bytes.HasPrefix(line, []byte("Failed to send"))):
		// A probe or send to a peer that failed is the failure detector at
		// work (a peer exiting in a rollout, a slow one): memberlist calls
		// it an error, this node's health does not depend on it.
		level = zerolog.WarnLevel
	}
	w.log.WithLevel(level).Msg(string(line))
	return len(p), nil
}
