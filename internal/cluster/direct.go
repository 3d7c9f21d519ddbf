package cluster

import (
	"context"

	"github.com/hashicorp/memberlist"
)

// peerSender sends batches to one peer over memberlist's reliable channel,
// in order, from a bounded queue.
type peerSender struct {
	peer  peer
	node  *memberlist.Node // the sender's own copy, for memberlist's calls
	queue chan []byte
	done  chan struct{}
}

// sendDirect queues frame for every alive peer. It runs on flushLoop, which
// owns n.peers: peers that appeared get a sender, peers that went get theirs
// stopped.
func (n *Node) sendDirect(frame []byte) {
	if n.peers == nil {
		n.peers = map[string]*peerSender{}
	}
	alive := map[string]bool{}
	for _, m := range n.members.peers(stateAlive, stateSuspect) {
		alive[m.name] = true
		p, ok := n.peers[m.name]
		if !ok || p.peer.addr() != m.addr() {
			if ok {
				n.stopPeer(m.name)
			}
			p = n.startPeer(m)
		}
		n.enqueue(p, frame)
	}
	for name := range n.peers {
		if !alive[name] {
			n.stopPeer(name)
		}
	}
}

// enqueue never blocks: when the peer's queue is full the oldest batch is
// dropped (counted) and left to push/pull.
func (n *Node) enqueue(p *peerSender, frame []byte) {
	n.directPending.Add(1)
	for {
		select {
		case p.queue <- frame:
			return
		default:
		}
		select {
		case <-p.queue:
			n.directPending.Add(-1)
			n.stats.peerDropped.Add(1)
		default:
		}
	}
}

func (n *Node) startPeer(m peer) *peerSender {
	p := n.newPeer(m)
	n.peers[m.name] = p
	go n.runPeer(p)
	return p
}

func (n *Node) newPeer(m peer) *peerSender {
	return &peerSender{peer: m, node: m.node(), queue: make(chan []byte, n.cfg.PeerQueue), done: make(chan struct{})}
}

// runPeer sends p's batches in order until its queue is closed. After a
// failed send it drops what is already queued (counted; repair re-sends
// it): a peer that is down but not yet declared dead would otherwise cost a
// TCP timeout per batch, and stall shutdown behind it.
func (n *Node) runPeer(p *peerSender) {
	defer close(p.done)
	failing := false
	for frame := range p.queue {
		err := n.ml.SendReliable(p.node, frame)
		n.directPending.Add(-1)
		if err == nil {
			failing = false
			n.stats.directSent.Add(1)
			continue
		}
		n.stats.directErrors.Add(1)
		if !failing { // log a failing peer once, not per batch
			n.log.Warn().Err(err).Str("peer", p.peer.name).Msg("direct send failed: queued batches left to repair")
		}
		failing = true
		for drained := false; !drained; {
			select {
			case _, ok := <-p.queue:
				if !ok {
					return
				}
				n.directPending.Add(-1)
				n.stats.peerDropped.Add(1)
			default:
				drained = true
			}
		}
	}
}

// stopPeer closes the peer's queue; its sender finishes what is queued.
func (n *Node) stopPeer(name string) {
	if p, ok := n.peers[name]; ok {
		close(p.queue)
		delete(n.peers, name)
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

// waitSends waits, within ctx, for the sends still in flight.
func (n *Node) waitSends(ctx context.Context) {
	done := make(chan struct{})
	go func() { n.sends.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		n.log.Warn().Msg("sends still in flight at close: they end within TCPTimeout")
	}
}
