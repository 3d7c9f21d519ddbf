package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/likesd/likesd/internal/link"
)

// The direct fast path: internal/link decides, per peer, what to send,
// when to probe and when to give up (its package doc says how); this file
// carries its actions out. A peerSender is one link's connection: the
// stream to the peer (stream.go) its sends go on, and its acks come back
// on. Sends and probes run on goroutines of their own, so a send that
// hangs holds up nothing but its link, and report back to the machine.

// peerSender is the connection of one link to a peer, or of anti-entropy
// to a peer the fast path has no link to (linkID 0: only its stream is
// used).
type peerSender struct {
	peer peer
	node *memberlist.Node // the sender's own copy, for memberlist's calls
	// linkID is the link.Machine's link it carries; 0 for anti-entropy's
	// own. Guarded by Node.sendersMu.
	linkID uint64

	out     atomic.Pointer[stream] // the open stream to the peer, if any
	stopped atomic.Bool            // its link ended: no new stream
	// syncDial lets one of anti-entropy's sends at a time dial the stream
	// (Node.sendTo). The fast path's sends take no lock across a dial: a
	// send left hanging must not hold up the next.
	syncDial sync.Mutex
}

// linkKey is what a link to p depends on: a sender to p reaches a peer
// with the same key (the same address, speaking the same streams).
func linkKey(p peer) string {
	return fmt.Sprintf("%s/%t/%t", p.addr(), p.streams, p.sessions)
}

func samePeer(a, b peer) bool { return linkKey(a) == linkKey(b) }

func (n *Node) newPeer(t peer) *peerSender {
	return &peerSender{peer: t, node: t.node()}
}

// sendDirect queues frames to every peer the member table lists as a send
// target whose breaker lets them through (the link machine decides), and
// counts them once queued.
func (n *Node) sendDirect(frames []link.Frame) {
	n.writes.update(func(w *writes, now time.Time) {
		// Read under w.mu: a view older than the last one applied would
		// move or drop links for nothing.
		members, targets, _ := n.memberView()
		w.lk.SetMembers(members, targets, now)
		for _, f := range frames {
			w.lk.Queue(f, now)
		}
	})
	for _, f := range frames {
		n.countQueued(len(f.Data), f.Count)
	}
}

// closeLinks ends every link once Close flushed the log: each finishes
// what is queued when its peer answers (a send ends within TCPTimeout, or
// at once when Close's bound ends and the streams are closed).
func (n *Node) closeLinks() {
	n.writes.update(func(w *writes, now time.Time) { w.lk.Close(now) })
	<-n.writes.linksDone
}

// carry carries out the link machine's actions, in the order it took
// them (writes.update holds carryMu across the hand-over), but for Notes
// (logNotes, after). Nothing here blocks: sends and probes get goroutines.
func (n *Node) carry(acts []link.Action) {
	for _, a := range acts {
		switch a.Kind {
		case link.Open:
			n.openLink(a)
		case link.Send:
			n.startSend(a)
		case link.Probe:
			n.startProbe(a)
		case link.Reset:
			reason := errStreamReset
			if a.Breaker {
				reason = errBreakerReset
			}
			if p := n.linkSender(a.Peer, a.Link); p != nil && p.resetStream(reason) {
				n.stats.streamResets.Add(1)
			}
		case link.Forget:
			n.forgetLink(a)
		case link.Urge:
			n.sync.urge(a.Peer)
		}
	}
}

// logNotes logs the machine's Note actions; writes.update calls it after
// carry, holding no lock.
func (n *Node) logNotes(acts []link.Action) {
	for _, a := range acts {
		if a.Kind != link.Note {
			continue
		}
		ev := n.log.Info()
		switch a.Note {
		case link.NoteStalled:
			ev = n.log.Debug()
		case link.NoteDown:
			ev = n.log.Warn()
		}
		ev.Str("peer", a.Peer).Msg(a.Note)
	}
}

// openLink gives a new link its sender: the link anti-entropy opened to
// the peer (peerLink), whose session then carries frames too, or a new one.
// A link to the peer still finishing its queue (the peer moved, or came
// back before it was forgotten) loses its sender here: what it still holds
// ends ResetHere, left to anti-entropy, rather than going to an address
// the peer left.
func (n *Node) openLink(a link.Action) {
	t := a.Ref.(peer)
	n.sendersMu.Lock()
	defer n.sendersMu.Unlock()
	p := n.senders[t.name]
	if p == nil || p.linkID != 0 || !samePeer(p.peer, t) {
		if p != nil { // anti-entropy's to where t was, or a link that ended
			p.stopped.Store(true)
			p.resetStream(errStreamReset)
		}
		p = n.newPeer(t)
	}
	p.linkID = a.Link
	if n.senders == nil {
		n.senders = map[string]*peerSender{}
	}
	n.senders[t.name] = p
}

// forgetLink ends a link's sender: its stream is finished (what it
// carries still goes) and anti-entropy opens its own when it needs one.
func (n *Node) forgetLink(a link.Action) {
	n.sendersMu.Lock()
	p := n.senders[a.Peer]
	if p == nil || p.linkID != a.Link {
		n.sendersMu.Unlock()
		return
	}
	delete(n.senders, a.Peer)
	n.sendersMu.Unlock()
	p.stopped.Store(true)
	if s := p.out.Swap(nil); s != nil {
		s.finish()
	}
}

// peerLink returns the peer's sender, whose stream (peerStream) carries its
// frames and this node's anti-entropy to it: the fast path's, when it runs
// one to m as the member table lists it now, or else a link of its own
// (no queue nor goroutine: only its stream is used), which the fast path
// takes over if it starts sending to m (openLink).
func (n *Node) peerLink(m peer) (*peerSender, error) {
	n.sendersMu.Lock()
	defer n.sendersMu.Unlock()
	old := n.senders[m.name]
	if old != nil && !old.stopped.Load() && samePeer(old.peer, m) {
		return old, nil
	}
	if old != nil && old.linkID != 0 && !old.stopped.Load() {
		// A live link's sender, to another address than m: m is older
		// than the link (sendTo's read, before the peer moved) or newer
		// (the link moves at the machine's next tick, and openLink then
		// adopts anti-entropy's sender). Taking its place would leave the
		// link with no sender, and no Open would come again.
		return nil, errLinkMoving
	}
	if old != nil && old.linkID == 0 {
		old.resetStream(errStreamReset) // m restarted, or moved
	}
	if n.senders == nil {
		n.senders = map[string]*peerSender{}
	}
	p := n.newPeer(m)
	n.senders[m.name] = p
	return p, nil
}

// errLinkMoving: the fast path's link to a peer is to another address
// than the member anti-entropy sends to; it tries again later.
var errLinkMoving = errors.New("cluster: the link to the peer is moving")

// dropLink closes the link to a peer that is no longer a member (the fast
// path's senders are stopped by flushLoop).
func (n *Node) dropLink(name string) {
	n.sendersMu.Lock()
	defer n.sendersMu.Unlock()
	if p := n.senders[name]; p != nil && p.linkID == 0 {
		delete(n.senders, name)
		p.resetStream(errStreamReset)
	}
}

// linkSender is the sender of link id to name, if it still runs.
func (n *Node) linkSender(name string, id uint64) *peerSender {
	n.sendersMu.Lock()
	defer n.sendersMu.Unlock()
	if p := n.senders[name]; p != nil && p.linkID == id {
		return p
	}
	return nil
}

// startSend sends a frame on a goroutine and reports how it ended.
func (n *Node) startSend(a link.Action) {
	p := n.linkSender(a.Peer, a.Link)
	n.sends.Add(1)
	go func() {
		defer n.sends.Done()
		err := errStreamReset
		if p != nil {
			err = n.sendFrame(p, a.Frame.Data)
		}
		r := link.Sent
		switch {
		case err == nil:
		case errors.Is(err, errStreamReset):
			// This node reset the stream under the send (it hung through
			// an outage the peer is back from, or the link ended): the
			// frame is dropped, left to repair, and the peer is not to
			// blame. A reset because the peer's breaker opened is a
			// failure (errBreakerReset).
			r = link.ResetHere
		default:
			r = link.Failed
			n.log.Info().Err(err).Str("peer", a.Peer).Msg("direct send failed")
		}
		n.writes.update(func(w *writes, now time.Time) { w.lk.SendDone(a.Peer, a.Link, a.ID, r, now) })
	}()
}

// startProbe pings the peer on a goroutine (within ProbeTimeout) and
// reports whether it answered, and whether the send in flight, if any, is
// a write on an open stream.
func (n *Node) startProbe(a link.Action) {
	p := n.linkSender(a.Peer, a.Link)
	if p == nil {
		n.sends.Add(1)
		go func() { // reported off the caller's lock hand-over
			defer n.sends.Done()
			n.writes.update(func(w *writes, now time.Time) { w.lk.ProbeDone(a.Peer, a.Link, a.ID, false, false, now) })
		}()
		return
	}
	addr := &net.UDPAddr{IP: p.peer.ip, Port: int(p.peer.port)}
	n.sends.Add(1)
	go func() {
		defer n.sends.Done()
		_, err := n.ml.Ping(a.Peer, addr)
		writing := n.streaming(p) && p.out.Load() != nil
		n.writes.update(func(w *writes, now time.Time) { w.lk.ProbeDone(a.Peer, a.Link, a.ID, err == nil, writing, now) })
	}()
}

// streaming reports whether p's batches go on a stream.
func (n *Node) streaming(p *peerSender) bool { return n.mux != nil && p.peer.streams }

// sendFrame sends one batch to p: on its stream, or, when either end takes
// no streams, through memberlist (a connection per batch).
func (n *Node) sendFrame(p *peerSender, frame []byte) error {
	if n.halted.Load() { // Close's bound ended (abort)
		return errStreamReset
	}
	if !n.streaming(p) {
		return n.ml.SendReliable(p.node, frame)
	}
	s, err := n.peerStream(p)
	if err != nil {
		return err
	}
	return s.write(frame, n.cfg.TCPTimeout)
}

// waitSends waits, within ctx, for the sends and pings still in flight
// (after memberlist's Shutdown a send ends within TCPTimeout).
func (n *Node) waitSends(ctx context.Context) {
	done := make(chan struct{})
	go func() { n.sends.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		n.log.Warn().Msg("sends still in flight at close: they end within TCPTimeout")
	}
}
