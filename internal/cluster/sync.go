package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/antientropy"
	"github.com/likesd/likesd/internal/dropq"
	"github.com/likesd/likesd/internal/gset"
)

// joinAttemptsBeforeAlone is how many joins in a row must reach nobody
// before a node that never saw another member counts as alone.
const joinAttemptsBeforeAlone = 5

// syncDriver carries out anti-entropy: one goroutine owns the
// antientropy.Syncer, feeds it messages, members and the time, and performs
// what it returns. Sends go through one goroutine per peer, so a slow or
// dead peer never stalls the others or the state machine.
// A message to a peer that speaks sessions goes on this node's session to
// it, which the sender goroutine dials when none is open (Node.sendTo); to
// a peer of the previous version, through memberlist.
type syncDriver struct {
	syncDeps                                    // set by newSyncDriver, read-only after
	sy       *antientropy.Syncer                // owned by run
	inbox    *dropq.Queue[*antientropy.Message] // full: dropped, counted in stats.dropped
	joins    chan bool                          // join attempts: reached another member?
	fails    chan string                        // peers a message could not be sent to
	urges    chan string                        // peers to start a session with now
	leave    chan chan error                    // Close asks for a hand-off; answered when done
	tick     time.Duration

	synced    atomic.Bool
	handedOff atomic.Bool
	sawPeer   atomic.Bool // some other member was ever listed
	stats     struct {
		sessions, sessionsFailed, pulled, pushed, bytesOut, bytesIn, dropped atomic.Uint64
		handoffTimeouts, keyMismatches, rekeys, streamed, refused            atomic.Uint64
	}
	mismatchLog logEvery

	// Owned by run.
	peers   []string
	senders map[string]*syncSender
	wg      sync.WaitGroup
	// digestSecret is the primary key the replica's digest key was last
	// derived from (nil: none yet; empty: plaintext).
	digestSecret []byte
	// unkeyedPeers are peers of the version before key ids, logged once.
	unkeyedPeers map[string]bool
}

type syncSender struct {
	q    *dropq.Queue[[]byte] // full: dropped, counted in stats.dropped
	stop context.CancelFunc
}

// syncDeps is what the driver takes from the node, which wires it in
// start. run's goroutine calls the functions but sendTo, which only the
// sender goroutines call (with log); the driver holds no lock of its own
// while calling any of them.
type syncDeps struct {
	log        zerolog.Logger
	replica    Replica                           // the node's (its guard): re-keyed by checkKey
	primaryKey func() []byte                     // Node.primaryKey
	syncPeers  func() []string                   // Node.syncPeers: the members to sync with
	sendTo     func(to string, msg []byte) error // Node.sendTo: may block on the network
	dropLink   func(name string)                 // Node.dropLink: a peer left the sync peers
}

func newSyncDriver(cfg Config, deps syncDeps) (*syncDriver, error) {
	c := antientropy.DefaultConfig()
	c.Name = cfg.NodeName
	c.HasSeeds = len(cfg.Seeds) > 0
	c.SyncInterval = cfg.SyncInterval
	c.SessionTimeout = cfg.SyncTimeout
	c.ChunkBytes = cfg.SyncChunkBytes
	c.JoinAttempts = joinAttemptsBeforeAlone
	c.Holds, c.Partial = cfg.Holds, cfg.Partial
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("cluster: session seed: %w", err)
	}
	c.FirstSession = binary.BigEndian.Uint64(seed[:]) >> 1 // room to count up
	sy, err := antientropy.New(c, deps.replica)
	if err != nil {
		return nil, err
	}
	d := &syncDriver{
		syncDeps: deps, sy: sy,
		joins:        make(chan bool, 16),
		fails:        make(chan string, 64),
		urges:        make(chan string, 64),
		leave:        make(chan chan error),
		tick:         min(max(cfg.SyncInterval/5, 5*time.Millisecond), 50*time.Millisecond),
		senders:      map[string]*syncSender{},
		unkeyedPeers: map[string]bool{},
	}
	d.inbox = dropq.New[*antientropy.Message](1024, &d.stats.dropped)
	return d, nil
}

// deliver hands a decoded message to the loop without blocking; when the
// loop is behind, the message is dropped and its session times out.
func (d *syncDriver) deliver(m *antientropy.Message, size int) {
	d.stats.bytesIn.Add(uint64(size))
	d.inbox.Offer(m)
}

// urge asks for a session with peer now: it joined, or answers again after
// failed sends. It never blocks (memberlist's callbacks call it); an urge
// that does not fit is dropped, and the round robin gets there anyway.
func (d *syncDriver) urge(peer string) {
	select {
	case d.urges <- peer:
	default:
	}
}

// joinAttempted reports a join; it never blocks the join loop for long.
func (d *syncDriver) joinAttempted(ctx context.Context, reached bool) {
	select {
	case d.joins <- reached:
	case <-ctx.Done():
	}
}

func (d *syncDriver) run(ctx context.Context) {
	defer d.wg.Wait()
	defer func() {
		for _, s := range d.senders {
			s.stop()
		}
	}()
	d.checkKey()
	t := time.NewTicker(d.tick)
	defer t.Stop()
	var waiting []chan error // Close calls waiting for the hand-off
	for {
		select {
		case <-ctx.Done():
			for _, w := range waiting {
				w <- ctx.Err()
			}
			return
		case m := <-d.inbox.C():
			d.do(ctx, d.sy.Step(time.Now(), m))
		case reached := <-d.joins:
			d.sy.JoinAttempted(time.Now(), reached)
		case peer := <-d.fails:
			d.do(ctx, d.sy.Unreachable(time.Now(), peer))
		case peer := <-d.urges:
			d.refreshPeers(ctx)
			d.do(ctx, d.sy.Urge(time.Now(), peer))
		case w := <-d.leave:
			waiting = append(waiting, w)
			d.refreshPeers(ctx)
			d.do(ctx, d.sy.Leave(time.Now()))
		case <-t.C:
			d.checkKey()
			d.refreshPeers(ctx)
			d.do(ctx, d.sy.Tick(time.Now()))
		}
		if len(waiting) > 0 && d.sy.HandedOff() {
			for _, w := range waiting {
				w <- nil
			}
			waiting = nil
		}
	}
}

// primaryKey is the key the digest key derives from: the keyring's
// primary, which UseKey changes at run time; empty in plaintext mode.
func (n *Node) primaryKey() []byte {
	if n.keys == nil {
		return nil
	}
	return n.keys.ring.GetPrimaryKey()
}

// checkKey re-keys the replica when the primary key changed. It runs in
// the loop that owns the syncer, so no message is handled while the
// digests mix keys; the store re-keys shard by shard, so likes keep
// being taken. Until the peers re-key too, sessions with them end in a
// KeyMismatch and the fast path carries likes.
func (d *syncDriver) checkKey() {
	secret := d.primaryKey()
	if d.digestSecret != nil && bytes.Equal(secret, d.digestSecret) {
		return
	}
	first := d.digestSecret == nil
	d.digestSecret = append([]byte{}, secret...)
	k := gset.DeriveKey(secret)
	start := time.Now()
	d.replica.Rekey(k)
	if first {
		d.log.Debug().Str("key_id", fmt.Sprintf("%016x", k.ID())).Bool("plaintext", len(secret) == 0).
			Dur("took", time.Since(start)).Msg("digest key set")
		return
	}
	d.stats.rekeys.Add(1)
	d.log.Info().Str("key_id", fmt.Sprintf("%016x", k.ID())).Dur("took", time.Since(start)).
		Msg("primary key changed: digests re-keyed; sync pauses with peers on another primary until they re-key")
}

// refreshPeers gives the syncer the alive members and stops the senders of
// members that are gone.
func (d *syncDriver) refreshPeers(ctx context.Context) {
	peers := d.syncPeers()
	if slices.Equal(peers, d.peers) {
		return
	}
	d.peers = peers
	if len(peers) > 0 {
		d.sawPeer.Store(true)
	}
	for name, s := range d.senders {
		if !slices.Contains(peers, name) {
			s.stop()
			delete(d.senders, name)
			d.dropLink(name)
		}
	}
	for name := range d.unkeyedPeers {
		if !slices.Contains(peers, name) {
			delete(d.unkeyedPeers, name)
		}
	}
	d.do(ctx, d.sy.SetPeers(time.Now(), peers))
}

func (d *syncDriver) do(ctx context.Context, actions []antientropy.Action) {
	log := d.log
	for _, a := range actions {
		switch a := a.(type) {
		case antientropy.Send:
			d.send(ctx, a.To, a.Msg)
		case antientropy.BecameSynced:
			d.synced.Store(true)
			log.Info().Str("reason", a.Reason).Str("from", a.From).Msg("synced: ready")
		case antientropy.SessionEnded:
			d.stats.sessions.Add(1)
			d.stats.pulled.Add(a.Pulled)
			d.stats.pushed.Add(a.Pushed)
			ev := log.Debug()
			if a.Err != nil {
				d.stats.sessionsFailed.Add(1)
				ev = ev.Err(a.Err)
			} else if a.Pulled+a.Pushed > 0 {
				ev = log.Info() // a repair is news
			}
			ev.Str("peer", a.Peer).Stringer("mode", a.Mode).Uint64("pulled", a.Pulled).
				Uint64("pushed", a.Pushed).Dur("took", a.Duration).Msg("sync session ended")
		case antientropy.KeyMismatch:
			d.stats.keyMismatches.Add(1)
			switch {
			case a.Theirs == 0 && a.Mine != 0:
				if !d.unkeyedPeers[a.Peer] {
					d.unkeyedPeers[a.Peer] = true
					log.Warn().Str("peer", a.Peer).
						Msg("peer runs a version without digest key ids: no digest comparison with it (the fast path and its full syncs still work)")
				}
			case d.mismatchLog.allow():
				log.Warn().Str("peer", a.Peer).Str("key_id", fmt.Sprintf("%016x", a.Mine)).Str("peer_key_id", fmt.Sprintf("%016x", a.Theirs)).
					Uint64("refused", d.stats.keyMismatches.Load()).
					Msg("digest keys differ: not comparing digests with this peer (a key rotation in progress?); retrying later")
			}
		case antientropy.HandedOff:
			d.handedOff.Store(true)
			if a.Peer == "" {
				log.Info().Msg("hand-off: this node never had a peer, nothing to hand off")
			} else {
				log.Info().Str("peer", a.Peer).Msg("hand-off: a synced peer holds every like this node holds")
			}
		}
	}
}

// send queues an encoded message to peer's sender, starting it if needed. A
// full queue counts as a failed send.
func (d *syncDriver) send(ctx context.Context, to string, m *antientropy.Message) {
	s, ok := d.senders[to]
	if !ok {
		sctx, stop := context.WithCancel(ctx)
		s = &syncSender{q: dropq.New[[]byte](256, &d.stats.dropped), stop: stop}
		d.senders[to] = s
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.sendLoop(sctx, to, s.q.C()) }()
	}
	msg := m.Append([]byte{msgSync})
	if !s.q.Offer(msg) {
		if m.Kind.IsRequest() { // our own session cannot go on
			d.do(ctx, d.sy.Unreachable(time.Now(), to))
		} // a dropped answer times out the peer's session, not one of ours
	}
}

// sendsPerPeer is how many messages to one peer may be in flight at once.
// A dial to a peer that was cut off can hang for memberlist's TCPTimeout
// while its SYNs are retried: with several connections a session started
// after the network returned does not wait behind it.
const sendsPerPeer = 4

func (d *syncDriver) sendLoop(ctx context.Context, to string, q <-chan []byte) {
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
	slots := make(chan struct{}, sendsPerPeer)
	for {
		var msg []byte
		select {
		case <-ctx.Done():
			return
		case msg = <-q:
		}
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		inFlight.Add(1)
		go func() {
			defer inFlight.Done()
			defer func() { <-slots }()
			if err := d.sendTo(to, msg); err != nil {
				d.log.Debug().Err(err).Str("peer", to).Msg("sync message not sent")
				select {
				case d.fails <- to:
				case <-ctx.Done():
				}
				return
			}
			d.stats.bytesOut.Add(uint64(len(msg)))
		}()
	}
}

// handOff blocks until a synced peer holds every like this node holds, or
// ctx ends (counted). A node that was never part of a cluster waits at most
// alone: long enough for a cluster that probes its address to find it.
func (d *syncDriver) handOff(ctx context.Context, alone time.Duration) error {
	if !d.sawPeer.Load() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, alone)
		defer cancel()
	}
	done := make(chan error, 1)
	select {
	case d.leave <- done:
	case <-ctx.Done():
		d.stats.handoffTimeouts.Add(1)
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		d.stats.handoffTimeouts.Add(1)
		return ctx.Err()
	}
}
