package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/likesd/likesd/internal/dropq"
)

// The direct fast path: one sender per peer sends its batches on the
// node's stream to that peer (stream.go), one TCP connection it keeps open.
//
// A peer that stops answering must not cost a TCP timeout per batch, nor
// keep getting nothing once it answers again. So a sender watches each send:
// a send still in flight after PeerRetryInterval has the peer pinged (UDP,
// bounded by ProbeTimeout) every PeerRetryInterval until the send ends. If
// a ping is answered while a dial hangs (a dial whose packets were lost
// waits out TCPTimeout), the dial is left to finish on its own and the
// next batch goes; a write on an open stream is waited for while the peer
// answers (it is slow, not stuck; its deadline bounds it). If pings went
// unanswered before one was, what is queued was queued while the peer was
// away: it becomes a backlog, sent newest first and only when no fresh
// batch waits, so new likes reach the peer at once, and the stream the send
// hung on is reset (the next batch dials a new one). A send that fails (a
// refused or timed-out dial, a connection the peer reset or closed, a write
// that timed out, a stream reset because the peer's breaker opened) means
// the peer is gone: what is queued is dropped (counted; the repair path
// heals it), and so is every batch until the peer answers one of the pings
// sent every PeerRetryInterval. Unanswered pings alone never drop anything:
// on a starved machine pings time out while sends still succeed. A peer
// that answers again thus gets batches within about PeerRetryInterval, a
// round trip and a FlushInterval, whatever memberlist thinks of it
// meanwhile.

// maxAbandoned bounds the sends to one peer left in flight at once; past it
// a slow send is waited for.
const maxAbandoned = 4

// maxPings bounds the pings to one peer in flight at once.
const maxPings = 32

// peerSender sends batches to one peer, in order, from a bounded queue.
type peerSender struct {
	peer      peer
	node      *memberlist.Node     // the sender's own copy, for memberlist's calls
	queue     *dropq.Queue[[]byte] // drops its oldest batch when full
	done      chan struct{}
	abandoned atomic.Int32 // sends left in flight

	out     atomic.Pointer[stream] // the open stream to the peer, if any
	stopped atomic.Bool            // runPeer returned: no new stream
	// link: no runPeer yet, only the stream, which anti-entropy opened
	// (Node.peerLink). Guarded by Node.sendersMu.
	link bool
	// syncDial lets one of anti-entropy's sends at a time dial the stream
	// (Node.sendTo). The sender's own sends take no lock across a dial: a
	// send it left hanging must not hold up the next.
	syncDial sync.Mutex
}

// sendDirect queues frame for every peer the member table lists as a send
// target. It runs on flushLoop, which owns n.peers: peers that appeared get
// a sender, peers that went get theirs stopped.
func (n *Node) sendDirect(frame []byte, first, last uint64) {
	if n.peers == nil {
		n.peers = map[string]*peerSender{}
	}
	targets := n.members.sendTargets(time.Now(), n.cfg.gossipToTheDeadTime())
	live := make(map[string]bool, len(targets))
	for _, t := range targets {
		live[t.name] = true
		p, ok := n.peers[t.name]
		if !ok || !samePeer(p.peer, t) {
			if ok {
				n.stopPeer(t.name)
			}
			p = n.startPeer(t)
		}
		if n.writes.allow(t.name, first, last) {
			n.enqueue(p, frame)
		}
	}
	for name := range n.peers {
		if !live[name] {
			n.stopPeer(name)
		}
	}
}

// enqueue never blocks: when the peer's queue is full the oldest batch is
// dropped (counted in PeerDropped) and left to anti-entropy.
func (n *Node) enqueue(p *peerSender, frame []byte) {
	n.directPending.Add(1)
	if k := p.queue.Push(frame); k > 0 {
		n.directPending.Add(-int64(k))
	}
}

// startPeer starts a sender to t. A link anti-entropy opened to t
// (Node.peerLink) becomes it, so its session carries the frames too.
func (n *Node) startPeer(t peer) *peerSender {
	n.sendersMu.Lock()
	p := n.senders[t.name]
	if p == nil || !p.link || !samePeer(p.peer, t) {
		if p != nil && p.link {
			p.resetStream(errStreamReset)
		}
		p = n.newPeer(t)
	}
	p.link = false
	if n.senders == nil {
		n.senders = map[string]*peerSender{}
	}
	n.senders[t.name] = p
	n.sendersMu.Unlock()
	n.peers[t.name] = p
	go n.runPeer(p)
	return p
}

// samePeer reports whether a sender to a still reaches b: the same
// address, speaking the same streams.
func samePeer(a, b peer) bool {
	return a.addr() == b.addr() && a.streams == b.streams && a.sessions == b.sessions
}

func (n *Node) newPeer(t peer) *peerSender {
	return &peerSender{peer: t, node: t.node(), queue: dropq.New[[]byte](n.cfg.PeerQueue, &n.stats.peerDropped), done: make(chan struct{})}
}

// runPeer sends p's batches until its queue is closed (see above).
func (n *Node) runPeer(p *peerSender) {
	defer close(p.done)
	defer func() { // the last batches, flushed at Close, still go
		p.stopped.Store(true)
		if s := p.out.Swap(nil); s != nil {
			s.finish()
		}
	}()
	var backlog [][]byte // queued while p did not answer; newest last
	defer func() {
		for range backlog {
			n.dropped()
		}
	}()
	var carry []byte // taken from the queue, not joinable to the last send
	closed := false
	for {
		var frame []byte
		switch {
		case carry != nil:
			frame, carry = carry, nil
		case closed:
			return
		default:
			select {
			case f, ok := <-p.queue.C():
				if !ok {
					return
				}
				frame = f
			default:
				if k := len(backlog); k > 0 {
					frame, backlog = backlog[k-1], backlog[:k-1]
					break
				}
				f, ok := <-p.queue.C()
				if !ok {
					return
				}
				frame = f
			}
		}
		if carry == nil && !closed {
			frame, carry, closed = n.joinQueued(p, frame)
		}
		switch n.deliver(p, frame) {
		case delivered:
		case resumed:
			if carry != nil {
				backlog, carry = append(backlog, carry), nil
			}
			for drained := false; !drained; {
				select {
				case f, ok := <-p.queue.C():
					if !ok {
						return
					}
					backlog = append(backlog, f)
				default:
					drained = true
				}
			}
			for len(backlog) > n.cfg.PeerQueue {
				backlog = backlog[1:]
				n.dropped()
			}
		case failed:
			if carry != nil {
				n.dropped()
				carry = nil
			}
			for range backlog {
				n.dropped()
			}
			backlog = backlog[:0]
			if !n.awaitPeer(p) {
				return
			}
		}
	}
}

// joinQueued joins to frame the frames waiting in p's queue while they
// join (the usual case: what queued up during the last send); carry is
// the first that did not, closed whether the queue was closed.
func (n *Node) joinQueued(p *peerSender, frame []byte) (joined, carry []byte, closed bool) {
	for {
		select {
		case f, ok := <-p.queue.C():
			if !ok {
				return frame, nil, true
			}
			j, ok := joinFrames(frame, f, n.cfg.DirectBatchBytes)
			if !ok {
				return frame, f, false
			}
			frame = j
			n.directPending.Add(-1)
		default:
			return frame, nil, false
		}
	}
}

type outcome int

const (
	delivered outcome = iota // sent, or slow while the peer answers
	resumed                  // left in flight once the peer answered again after unanswered pings
	failed                   // the send failed: the peer is gone
)

// deliver sends frame and waits for the send, or for the peer to answer a
// ping while the send hangs.
func (n *Node) deliver(p *peerSender, frame []byte) outcome {
	res := make(chan error, 1)
	n.sends.Add(1)
	go func() {
		defer n.sends.Done()
		res <- n.sendFrame(p, frame)
	}()
	result := func(err error) outcome {
		if n.sent(p, err) {
			return delivered
		}
		return failed
	}
	stall := time.NewTimer(n.cfg.PeerRetryInterval)
	defer stall.Stop()
	select {
	case err := <-res:
		return result(err)
	case <-stall.C:
	}
	pr := n.newPinger(p)
	defer pr.stop()
	pr.ping()
	unanswered := false
	for {
		select {
		case err := <-res:
			return result(err)
		case <-pr.tick.C:
			pr.ping()
		case ok := <-pr.results:
			pr.inflight--
			switch {
			case !ok:
				unanswered = true
			case p.abandoned.Load() >= maxAbandoned:
				// enough sends left in flight: wait for this one
			case unanswered:
				n.log.Info().Str("peer", p.peer.name).Msg("peer answers again: fresh batches first")
				n.abandon(p, res)
				return resumed
			case n.streaming(p) && p.out.Load() != nil:
				// The peer answers and the write is slow (a full socket
				// buffer, a long round trip): it is moving, so it is
				// waited for (its deadline bounds it); resetting it would
				// lose what it carries and start the next on a cold
				// connection, slower still.
			default: // the peer answers: the dial is slow or stuck, not the peer
				n.abandon(p, res)
				return delivered
			}
		}
	}
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

// sent counts a send's outcome; it may run after the sender moved on.
func (n *Node) sent(p *peerSender, err error) bool {
	n.directPending.Add(-1)
	if errors.Is(err, errStreamReset) {
		// This node reset the stream under the send (it hung through an
		// outage the peer is back from, or the sender stopped): the batch is
		// dropped, left to repair, and the peer is not to blame. A reset
		// because the peer's breaker opened is a failure (errBreakerReset).
		n.stats.peerDropped.Add(1)
		return true
	}
	if err != nil {
		n.writes.sendFailed(p.peer.name)
		n.stats.directErrors.Add(1)
		n.log.Info().Err(err).Str("peer", p.peer.name).Msg("direct send failed")
		return false
	}
	n.stats.directSent.Add(1)
	return true
}

// abandon leaves a send in flight to finish on its own (a dial on a lost
// link ends within TCPTimeout; a write on a stream ends when the stream is
// reset, here); Close waits for it.
func (n *Node) abandon(p *peerSender, res <-chan error) {
	if p.resetStream(errStreamReset) {
		n.stats.streamResets.Add(1)
	}
	p.abandoned.Add(1)
	n.sends.Add(1)
	go func() {
		defer n.sends.Done()
		defer p.abandoned.Add(-1)
		n.sent(p, <-res)
	}()
}

// awaitPeer drops p's batches until p answers a ping; it reports false
// when p's queue was closed first.
func (n *Node) awaitPeer(p *peerSender) bool {
	n.log.Warn().Str("peer", p.peer.name).Msg("send to peer failed: its batches are dropped (left to repair) until it answers")
	for drained := false; !drained; { // what is queued is older than the cut
		select {
		case _, ok := <-p.queue.C():
			if !ok {
				return false
			}
			n.dropped()
		default:
			drained = true
		}
	}
	pr := n.newPinger(p)
	defer pr.stop()
	pr.ping()
	for {
		select {
		case _, ok := <-p.queue.C():
			if !ok {
				return false
			}
			n.dropped()
		case <-pr.tick.C:
			pr.ping()
		case ok := <-pr.results:
			pr.inflight--
			if ok {
				n.log.Info().Str("peer", p.peer.name).Msg("peer answers again: batches resume")
				// Its breaker closes (what a failed send opened), and what
				// it missed meanwhile crosses by anti-entropy: now.
				n.writes.answered(p.peer.name)
				n.sync.urge(p.peer.name)
				return true
			}
		}
	}
}

func (n *Node) dropped() {
	n.directPending.Add(-1)
	n.stats.peerDropped.Add(1)
}

// pinger pings one peer every PeerRetryInterval; it is owned by the
// peer's sender, and its pings end within ProbeTimeout.
type pinger struct {
	n        *Node
	name     string
	addr     net.Addr
	tick     *time.Ticker
	results  chan bool // never blocks a ping: at most maxPings in flight
	inflight int
}

func (n *Node) newPinger(p *peerSender) *pinger {
	return &pinger{
		n: n, name: p.peer.name, addr: &net.UDPAddr{IP: p.peer.ip, Port: int(p.peer.port)},
		tick: time.NewTicker(n.cfg.PeerRetryInterval), results: make(chan bool, maxPings),
	}
}

func (pr *pinger) ping() {
	if pr.inflight >= maxPings {
		return
	}
	pr.inflight++
	pr.n.sends.Add(1)
	go func() {
		defer pr.n.sends.Done()
		_, err := pr.n.ml.Ping(pr.name, pr.addr)
		pr.results <- err == nil
	}()
}

func (pr *pinger) stop() { pr.tick.Stop() }

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

// stopPeer closes the peer's queue; its sender finishes what is queued.
func (n *Node) stopPeer(name string) {
	if p, ok := n.peers[name]; ok {
		p.queue.Close()
		delete(n.peers, name)
		n.sendersMu.Lock()
		if n.senders[name] == p {
			delete(n.senders, name)
		}
		n.sendersMu.Unlock()
	}
}

// resetPeerStream resets the stream to the named peer, if one is open: its
// breaker opened, so whatever the stream holds is not reaching it. A send
// hanging on it fails (the sender then waits for the peer to answer a
// ping, direct.go); an idle stream is just closed.
func (n *Node) resetPeerStream(name string) {
	n.sendersMu.Lock()
	p := n.senders[name]
	n.sendersMu.Unlock()
	if p != nil && p.resetStream(errBreakerReset) {
		n.stats.streamResets.Add(1)
	}
}

// stopPeers stops every sender and waits for them (flushLoop's exit).
func (n *Node) stopPeers() {
	var senders []*peerSender
	for name, p := range n.peers {
		senders = append(senders, p)
		n.stopPeer(name)
	}
	for _, p := range senders {
		<-p.done
	}
}
