package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/vclock"
)

// The repair path. Push/pull carries only version vectors. A node that sees
// a peer's vector ahead of its own waits RepairDelay (the fast path closes
// most gaps by itself), then asks each origin for exactly the ranges still
// missing; the origin answers from its log. When a range has left the log,
// or its origin is gone, or the node is new, it asks one peer for a
// snapshot instead, streamed in chunks.

var errEvicted = errors.New("cluster: range has left the log")

type repairWork struct {
	rangeReq    *rangeReq
	snapshotFor string
	check       *peerVV
	exchange    string // a member's address: push/pull with it now
}

// peerVV is a peer's version vector as of one push/pull.
type peerVV struct {
	name string
	vv   vclock.VV
	due  time.Time
}

type asked struct {
	to uint64
	at time.Time
}

type snapProgress struct {
	applied, total uint64 // total is known once the end arrives
	ended          bool
	vv             vclock.VV
	started        time.Time
}

type repairer struct {
	n       *Node
	work    chan repairWork
	serving chan struct{} // one token per snapshot being served
	senders sync.WaitGroup

	// Owned by loop.
	pending map[string]peerVV
	asked   map[uint64]asked

	// goneSince is when each origin was last carried by an alive member
	// (owned by loop).
	lastAlive map[uint64]time.Time

	mu          sync.Mutex
	remoteMax   vclock.VV            // the highest vector any peer reported
	peerMax     map[string]vclock.VV // per peer, the highest it ever reported
	snapAskedAt time.Time
	snaps       map[uint64]*snapProgress
}

func newRepairer(n *Node) *repairer {
	return &repairer{
		n: n, work: make(chan repairWork, 1024), serving: make(chan struct{}, n.cfg.MaxSnapshots),
		pending: map[string]peerVV{}, asked: map[uint64]asked{}, lastAlive: map[uint64]time.Time{},
		remoteMax: vclock.New(), peerMax: map[string]vclock.VV{}, snaps: map[uint64]*snapProgress{},
	}
}

// request hands work to the loop without blocking; when the queue is full
// the work is dropped: the next push/pull asks again.
func (r *repairer) request(w repairWork) {
	select {
	case r.work <- w:
	default:
		r.n.stats.repairDropped.Add(1)
	}
}

// noteRemote records a peer's vector from push/pull and schedules a check.
func (r *repairer) noteRemote(name string, vv vclock.VV) {
	r.mu.Lock()
	r.remoteMax.Merge(vv)
	if r.peerMax[name] == nil {
		r.peerMax[name] = vclock.New()
	}
	r.peerMax[name].Merge(vv)
	r.mu.Unlock()
	// RepairDelay lets likes in flight close a gap by themselves; a node that
	// has seen nothing of other origins yet (new, or restarted) has nothing in
	// flight, so it asks at once.
	due := time.Now().Add(r.n.cfg.RepairDelay)
	if r.isNew() {
		due = time.Now()
	}
	r.request(repairWork{check: &peerVV{name: name, vv: vv, due: due}})
}

// isNew reports whether this node has seen no likes of other origins.
func (r *repairer) isNew() bool {
	mine := r.covered()
	delete(mine, r.n.origin)
	return len(mine) == 0
}

func (r *repairer) behind(mine vclock.VV) map[uint64]uint64 {
	r.n.seenMu.Lock()
	mine.Merge(r.n.retired)
	r.n.seenMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[uint64]uint64{}
	for origin, seq := range r.remoteMax {
		if seq > mine[origin] {
			out[origin] = seq - mine[origin]
		}
	}
	return out
}

func (r *repairer) loop(ctx context.Context) {
	defer r.senders.Wait()
	tick := time.NewTicker(max(r.n.cfg.RepairDelay/2, time.Millisecond))
	defer tick.Stop()
	retire := time.NewTicker(max(r.n.cfg.RetireAfter/4, 10*time.Millisecond))
	defer retire.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-r.work:
			switch {
			case w.rangeReq != nil:
				r.serveRange(ctx, *w.rangeReq)
			case w.snapshotFor != "":
				r.serveSnapshot(ctx, w.snapshotFor)
			case w.check != nil:
				// The newest vector of a peer wins, but keeps the earliest
				// due time: frequent exchanges must not postpone a repair.
				if old, ok := r.pending[w.check.name]; ok && old.due.Before(w.check.due) {
					w.check.due = old.due
				}
				if !w.check.due.After(time.Now()) {
					delete(r.pending, w.check.name)
					r.check(*w.check) // due already: do not wait for the tick
					continue
				}
				r.pending[w.check.name] = *w.check
			case w.exchange != "":
				// A push/pull (memberlist calls it a join) with a member that
				// just joined or came back, instead of waiting up to a
				// push/pull interval to learn what it has.
				r.senders.Add(1)
				go func() {
					defer r.senders.Done()
					if _, err := r.n.ml.Join([]string{w.exchange}); err != nil {
						r.n.log.Debug().Err(err).Str("addr", w.exchange).Msg("exchange with a new member failed")
					}
				}()
			}
		case now := <-retire.C:
			r.retireGone(now)
		case now := <-tick.C:
			for name, p := range r.pending {
				if now.After(p.due) {
					delete(r.pending, name)
					r.check(p)
				}
			}
		}
	}
}

// retireGone retires the origins no alive member has carried for
// RetireAfter, of which this node holds, without gaps, all that any peer
// reported, and which every alive peer has reported holding as fully: until
// then a laggard could only see its gap in others' vectors.
func (r *repairer) retireGone(now time.Time) {
	n := r.n
	var peers []string
	for origin, m := range r.owners() {
		r.lastAlive[origin] = now
		if m.Name != n.cfg.NodeName {
			peers = append(peers, m.Name)
		}
	}
	r.mu.Lock()
	reported := r.remoteMax.Clone()
	peerMax := make(map[string]vclock.VV, len(peers))
	for _, p := range peers {
		peerMax[p] = r.peerMax[p].Clone()
	}
	for name := range r.peerMax { // forget peers that are gone
		if _, alive := peerMax[name]; !alive {
			delete(r.peerMax, name)
		}
	}
	r.mu.Unlock()
	allHold := func(origin, seq uint64) bool {
		for _, p := range peers {
			if peerMax[p][origin] < seq {
				return false
			}
		}
		return true
	}
	n.seenMu.Lock()
	defer n.seenMu.Unlock()
	for origin, at := range n.retiredAt {
		if now.Sub(at) >= n.cfg.RetireAfter {
			delete(n.retiredAt, origin) // grace over: no longer reported (its final seq stays in retired)
		}
	}
	for origin, seq := range n.seen.VV() {
		if at, ok := r.lastAlive[origin]; !ok {
			r.lastAlive[origin] = now // first noticed now: start the clock
			continue
		} else if now.Sub(at) < n.cfg.RetireAfter {
			continue
		}
		if reported[origin] > seq || n.seen.HasGap(origin) || !allHold(origin, seq) {
			continue // someone has more of it, or someone less: let repair finish first
		}
		n.retired[origin] = seq
		n.retiredAt[origin] = now
		n.seen.Forget(origin)
		delete(r.lastAlive, origin)
		n.log.Info().Str("origin", strconv.FormatUint(origin, 16)).Uint64("likes", seq).Msg("retired a gone origin from the version vector")
	}
}

// covered is this node's vector with retired origins counted as seen: what
// it must not ask for again.
func (r *repairer) covered() vclock.VV {
	mine := r.n.vv()
	r.n.seenMu.Lock()
	mine.Merge(r.n.retired)
	r.n.seenMu.Unlock()
	return mine
}

// check asks for what p has and this node still lacks, and checks again
// later until the gap is closed (a reply may be lost, or a snapshot already
// in flight may not cover it) or p is gone.
func (r *repairer) check(p peerVV) {
	n := r.n
	mine := r.covered()
	missing := mine.Missing(p.vv)
	if len(missing) == 0 || r.member(p.name) == nil {
		return
	}
	again := n.cfg.RepairTimeout
	defer func() {
		if _, newer := r.pending[p.name]; !newer {
			p.due = time.Now().Add(again)
			r.pending[p.name] = p
		}
	}()
	var total uint64
	for _, rg := range missing {
		total += rg.Len()
	}
	if r.isNew() || total > uint64(n.cfg.LogSize) {
		if !r.askSnapshot(p.name) { // new here, or too far behind for ranges
			again = n.cfg.RepairDelay // another snapshot is on its way: see what it leaves
		}
		return
	}
	owners := r.owners()
	for _, rg := range missing {
		if rg.Origin == n.origin {
			continue
		}
		owner, ok := owners[rg.Origin]
		if !ok { // the origin is gone: only a snapshot has its likes
			if !r.askSnapshot(p.name) {
				again = n.cfg.RepairDelay
			}
			return
		}
		if a, ok := r.asked[rg.Origin]; ok && a.to >= rg.To && time.Since(a.at) < n.cfg.RepairTimeout {
			continue // asked already
		}
		msg := encodeRangeReq(rangeReq{requester: n.cfg.NodeName, r: rg})
		if err := n.ml.SendReliable(owner, msg); err != nil {
			n.log.Warn().Err(err).Str("peer", owner.Name).Msg("range request failed")
			continue
		}
		r.asked[rg.Origin] = asked{to: rg.To, at: time.Now()}
		n.stats.rangeRequests.Add(1)
		n.log.Debug().Str("peer", owner.Name).Uint64("from", rg.From).Uint64("to", rg.To).Msg("asked for a range")
	}
}

// owners maps each alive or suspect member's origin to it (from the member
// table: members.go).
func (r *repairer) owners() map[uint64]*memberlist.Node {
	out := map[uint64]*memberlist.Node{}
	for origin, p := range r.n.members.owners() {
		out[origin] = p.node()
	}
	return out
}

// member returns the member called name if it is alive or suspect.
func (r *repairer) member(name string) *memberlist.Node {
	if p, ok := r.n.members.member(name); ok {
		return p.node()
	}
	return nil
}

// askSnapshot asks peer for a snapshot unless one is already on its way; it
// reports whether it asked.
func (r *repairer) askSnapshot(peer string) bool {
	r.mu.Lock()
	if time.Since(r.snapAskedAt) < 3*r.n.cfg.RepairTimeout {
		r.mu.Unlock()
		return false // one snapshot at a time
	}
	r.snapAskedAt = time.Now()
	r.mu.Unlock()
	m := r.member(peer)
	if m == nil {
		return false
	}
	if err := r.n.ml.SendReliable(m, encodeSnapReq(r.n.cfg.NodeName)); err != nil {
		r.n.log.Warn().Err(err).Str("peer", peer).Msg("snapshot request failed")
		return true // asked, and failed: the re-check retries after RepairTimeout
	}
	r.n.stats.snapshotsAsked.Add(1)
	r.n.log.Info().Str("peer", peer).Msg("asked for a snapshot")
	return true
}

// serveRange answers a request for this node's own likes from its log, or
// with a snapshot when the range has left the log.
func (r *repairer) serveRange(ctx context.Context, q rangeReq) {
	if q.r.Origin != r.n.origin {
		return // only an origin serves its ranges
	}
	m := r.member(q.requester)
	if m == nil {
		return
	}
	switch err := r.sendRange(m, q.r.From, q.r.To, false); {
	case errors.Is(err, errEvicted):
		r.serveSnapshot(ctx, q.requester)
	case err != nil:
		r.n.log.Warn().Err(err).Str("peer", q.requester).Msg("serving a range failed")
	default:
		r.n.stats.rangesServed.Add(1)
	}
}

// sendRange sends this node's likes from..to as msgRange frames. With clamp
// it sends what is left of the range; without, errEvicted if part is gone.
func (r *repairer) sendRange(to *memberlist.Node, from, through uint64, clamp bool) error {
	n := r.n
	n.logMu.Lock()
	size := uint64(len(n.ring))
	through = min(through, n.seq)
	oldest := uint64(1)
	if n.seq > size {
		oldest = n.seq - size + 1
	}
	if from < oldest {
		if !clamp {
			n.logMu.Unlock()
			return errEvicted
		}
		from = oldest
	}
	var likes []store.Like
	for s := from; s <= through; s++ {
		likes = append(likes, n.ring[s%size])
	}
	n.logMu.Unlock()
	if len(likes) == 0 {
		return nil
	}
	fb := newFrameBuilder(n.cfg.DirectBatchBytes, msgRange, n.origin)
	send := func() error {
		frame, _ := fb.take()
		n.stats.repairBytesOut.Add(uint64(len(frame)))
		return n.ml.SendReliable(to, frame)
	}
	for i, l := range likes {
		if !fb.fits(l) && fb.count > 0 {
			if err := send(); err != nil {
				return err
			}
		}
		fb.add(from+uint64(i), l)
	}
	return send()
}

// serveSnapshot streams the whole replica to requester in chunks, then the
// version vector it covers (taken first: everything it covers is already in
// the store). At most MaxSnapshots run at once; more are dropped and asked
// for again later.
func (r *repairer) serveSnapshot(ctx context.Context, requester string) {
	select {
	case r.serving <- struct{}{}:
	default:
		return
	}
	m := r.member(requester)
	if m == nil {
		<-r.serving
		return
	}
	r.senders.Add(1)
	go func() {
		defer r.senders.Done()
		defer func() { <-r.serving }()
		n := r.n
		start := time.Now()
		vv := r.covered() // retired origins too: the snapshot holds their likes
		var idb [8]byte
		_, _ = rand.Read(idb[:])
		c := &snapChunkBuilder{id: binary.BigEndian.Uint64(idb[:]), max: n.cfg.SnapshotChunkBytes}
		c.reset()
		var sent, bytes uint64
		var err error
		flush := func() {
			chunk := c.take()
			bytes += uint64(len(chunk))
			err = n.ml.SendReliable(m, chunk)
			sent++
		}
		n.replica.Snapshot(func(post string, users gset.Set) bool {
			c.add(post, users)
			if c.full() {
				flush()
			}
			return err == nil && ctx.Err() == nil
		})
		if err == nil && c.n > 0 {
			flush()
		}
		if err == nil {
			end := encodeSnapEnd(c.id, sent, vv)
			bytes += uint64(len(end))
			err = n.ml.SendReliable(m, end)
		}
		n.stats.repairBytesOut.Add(bytes)
		if err != nil {
			n.log.Warn().Err(err).Str("peer", requester).Msg("snapshot stream failed")
			return
		}
		n.stats.snapshotsServed.Add(1)
		n.log.Info().Str("peer", requester).Uint64("chunks", sent).Uint64("bytes", bytes).
			Dur("took", time.Since(start)).Msg("snapshot served")
	}()
}

// chunkApplied and snapshotEnded run on applyLoop. Chunks and the end travel
// on separate connections and may arrive in any order: the snapshot's vector
// is adopted only once every chunk is in.
func (r *repairer) chunkApplied(id uint64) {
	r.mu.Lock()
	p := r.progress(id)
	p.applied++
	r.mu.Unlock()
	r.finish(id)
}

func (r *repairer) snapshotEnded(id, chunks uint64, vv vclock.VV) {
	r.mu.Lock()
	p := r.progress(id)
	p.ended, p.total, p.vv = true, chunks, vv
	r.mu.Unlock()
	r.finish(id)
}

// progress needs r.mu held; it bounds the snapshots tracked.
func (r *repairer) progress(id uint64) *snapProgress {
	p, ok := r.snaps[id]
	if !ok {
		if len(r.snaps) >= 8 { // forget the oldest incomplete one
			var oldest uint64
			var at time.Time
			for k, v := range r.snaps {
				if at.IsZero() || v.started.Before(at) {
					oldest, at = k, v.started
				}
			}
			delete(r.snaps, oldest)
		}
		p = &snapProgress{started: time.Now()}
		r.snaps[id] = p
	}
	return p
}

func (r *repairer) finish(id uint64) {
	r.mu.Lock()
	p := r.snaps[id]
	if p == nil || !p.ended || p.applied < p.total {
		r.mu.Unlock()
		return
	}
	delete(r.snaps, id)
	r.snapAskedAt = time.Time{} // another may be asked for at once
	r.mu.Unlock()
	delete(p.vv, r.n.origin) // this node's own likes are counted by its log
	r.n.seenMu.Lock()
	for origin, seq := range p.vv {
		if seq <= r.n.retired[origin] {
			delete(p.vv, origin) // retired here already
		}
	}
	r.n.seen.Advance(p.vv)
	r.n.seenMu.Unlock()
	r.n.stats.snapshotsDone.Add(1)
	r.n.log.Info().Uint64("chunks", p.total).Dur("took", time.Since(p.started)).Msg("snapshot applied")
}
