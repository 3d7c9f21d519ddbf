package link_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/breaker"
	"github.com/likesd/likesd/internal/link"
)

var t0 = time.Unix(1_700_000_000, 0)

// at is t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// frame is a frame carrying seq s alone, size bytes long.
func frame(s uint64, size int) link.Frame {
	return link.Frame{Data: bytes.Repeat([]byte{byte(s)}, size), First: s, Last: s, Count: 1}
}

// concat joins any two frames whose bytes fit the limit.
func concat(a, b []byte, limit int) ([]byte, bool) {
	if len(a)+len(b) > limit {
		return nil, false
	}
	return append(append([]byte(nil), a...), b...), true
}

// rig is one machine with peer b at address b1, its first actions taken.
type rig struct {
	t    *testing.T
	m    *link.Machine
	link uint64 // b's link
}

func newRig(t *testing.T, cfg link.Config) *rig {
	t.Helper()
	require.NoError(t, cfg.Validate())
	r := &rig{t: t, m: link.New(cfg)}
	r.m.SetMembers([]string{"b"}, []link.Target{{Name: "b", Addr: "b1"}}, t0)
	acts := r.take()
	require.Len(t, acts, 1)
	require.Equal(t, link.Open, acts[0].Kind)
	assert.Equal(t, "b1", acts[0].Addr)
	r.link = acts[0].Link
	return r
}

func (r *rig) take() []link.Action {
	a, _ := r.m.Take()
	return a
}

// of keeps the actions of kind k.
func of(acts []link.Action, k link.Kind) []link.Action {
	var out []link.Action
	for _, a := range acts {
		if a.Kind == k {
			out = append(out, a)
		}
	}
	return out
}

// send takes the actions and requires exactly one of them to be a Send,
// of seqs first..last.
func (r *rig) send(first, last uint64) link.Action {
	r.t.Helper()
	s := of(r.take(), link.Send)
	require.Len(r.t, s, 1, "one send at a time")
	assert.Equal(r.t, [2]uint64{first, last}, [2]uint64{s[0].Frame.First, s[0].Frame.Last})
	return s[0]
}

// stall ticks until the send in flight since since is stalled and
// returns its probe.
func (r *rig) stall(since time.Time) link.Action {
	r.t.Helper()
	cfg := link.DefaultConfig()
	r.m.Tick(since.Add(cfg.RetryInterval - time.Nanosecond))
	assert.Empty(r.t, of(r.take(), link.Probe), "not stalled yet")
	r.m.Tick(since.Add(cfg.RetryInterval))
	acts := r.take()
	require.Len(r.t, of(acts, link.Note), 1)
	assert.Equal(r.t, link.NoteStalled, of(acts, link.Note)[0].Note)
	p := of(acts, link.Probe)
	require.Len(r.t, p, 1)
	return p[0]
}

func TestOneSendAtATimeInQueueOrder(t *testing.T) {
	r := newRig(t, link.DefaultConfig())
	for s := uint64(1); s <= 3; s++ {
		assert.Equal(t, 1, r.m.Queue(frame(s, 10), t0))
	}
	s := r.send(1, 1)
	assert.Equal(t, r.link, s.Link)
	assert.Equal(t, 3, r.m.Pending())
	assert.Equal(t, link.PeerState{Breaker: breaker.Closed, Phase: "sending", Queued: 2, Unacked: 3, Inflight: 1}, r.m.State("b", t0))
	for want := uint64(2); want <= 3; want++ {
		r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
		s = r.send(want, want)
	}
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	assert.Empty(t, r.take())
	assert.Equal(t, 0, r.m.Pending())
	assert.Equal(t, "idle", r.m.State("b", t0).Phase)
	r.m.Acked("b", 1, 3, t0)
	assert.Zero(t, r.m.State("b", t0).Unacked)
	assert.Equal(t, link.Stats{Queued: 3, Sent: 3}, r.m.Stats())
}

func TestQueuedFramesAreJoinedUpToBatchBytes(t *testing.T) {
	cfg := link.DefaultConfig()
	cfg.BatchBytes = 1024
	cfg.Join = concat
	r := newRig(t, cfg)
	r.m.Queue(frame(1, 400), t0)
	s := r.send(1, 1)
	for q := uint64(2); q <= 6; q++ {
		r.m.Queue(frame(q, 400), t0)
	}
	assert.Equal(t, 6, r.m.Pending())
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	s = r.send(2, 3) // 800 bytes; a third would be 1200
	assert.Len(t, s.Frame.Data, 800)
	assert.Equal(t, 2, s.Frame.Count)
	assert.Equal(t, 4, r.m.Pending(), "two joined are one in flight")
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	s = r.send(4, 5)
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	s = r.send(6, 6)
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	assert.Equal(t, 0, r.m.Pending())

	// A frame with no likes (Count 0) joins without moving First..Last.
	r.m.Queue(frame(7, 10), t0)
	s = r.send(7, 7)
	r.m.Queue(link.Frame{Data: []byte("x")}, t0)
	r.m.Queue(frame(8, 10), t0)
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	s = r.send(8, 8)
	assert.Equal(t, 1, s.Frame.Count)
	assert.Len(t, s.Frame.Data, 11)
}

func TestAStalledSendProbesEveryRetryInterval(t *testing.T) {
	cfg := link.DefaultConfig()
	r := newRig(t, cfg)
	r.m.Queue(frame(1, 10), t0)
	r.send(1, 1)
	assert.Equal(t, at(cfg.RetryInterval), r.m.NextDeadline())
	p := r.stall(t0)
	assert.Equal(t, r.link, p.Link)
	assert.Equal(t, "stalled", r.m.State("b", t0).Phase)
	for i := 2; i <= 4; i++ {
		next := at(time.Duration(i) * cfg.RetryInterval)
		assert.Equal(t, next, r.m.NextDeadline())
		r.m.Tick(next.Add(-time.Millisecond))
		assert.Empty(t, r.take())
		r.m.Tick(next)
		ps := of(r.take(), link.Probe)
		require.Len(t, ps, 1, "probe %d", i)
		assert.Equal(t, p.ID, ps[0].ID, "the same stall")
	}
	// Unanswered probes alone drop nothing and open nothing.
	for range 4 {
		r.m.ProbeDone("b", p.Link, p.ID, false, false, at(4*cfg.RetryInterval))
	}
	assert.Empty(t, r.take())
	assert.Equal(t, 1, r.m.Pending())
	assert.Equal(t, breaker.Closed, r.m.State("b", t0).Breaker)
}

// A peer that answers after probes went unanswered was away: the send is
// abandoned (its stream reset), fresh frames go first, and what queued
// meanwhile follows, newest first.
func TestAProbeAnsweredAfterUnansweredOnesAbandonsAndSendsTheBacklogNewestFirst(t *testing.T) {
	cfg := link.DefaultConfig()
	r := newRig(t, cfg)
	r.m.Queue(frame(1, 10), t0)
	s1 := r.send(1, 1)
	p := r.stall(t0)
	r.m.ProbeDone("b", p.Link, p.ID, false, true, at(cfg.RetryInterval))
	for q := uint64(2); q <= 4; q++ {
		r.m.Queue(frame(q, 10), at(cfg.RetryInterval))
	}
	assert.Empty(t, r.take())
	now := at(2 * cfg.RetryInterval)
	r.m.Tick(now)
	p2 := of(r.take(), link.Probe)
	require.Len(t, p2, 1)
	r.m.ProbeDone("b", p2[0].Link, p2[0].ID, true, true, now)
	acts := r.take()
	require.Len(t, of(acts, link.Reset), 1)
	reset := of(acts, link.Reset)[0]
	assert.Equal(t, r.link, reset.Link)
	assert.False(t, reset.Breaker)
	assert.Equal(t, link.NoteResumed, of(acts, link.Note)[0].Note)
	s := of(acts, link.Send)
	require.Len(t, s, 1)
	assert.Equal(t, uint64(4), s[0].Frame.First, "the backlog goes newest first")
	assert.Equal(t, link.PeerState{Breaker: breaker.Closed, Phase: "sending", Queued: 2, Unacked: 4, Inflight: 2}, r.m.State("b", now))

	r.m.Queue(frame(5, 10), now) // fresh: ahead of the backlog
	r.m.SendDone("b", s[0].Link, s[0].ID, link.Sent, now)
	s5 := r.send(5, 5)
	r.m.SendDone("b", s5.Link, s5.ID, link.Sent, now)
	s3 := r.send(3, 3)
	// The abandoned send ends: its frame is dropped, the peer not blamed.
	r.m.SendDone("b", s1.Link, s1.ID, link.ResetHere, now)
	assert.Empty(t, r.take())
	assert.Equal(t, 1, r.m.State("b", now).Inflight)
	r.m.SendDone("b", s3.Link, s3.ID, link.Sent, now)
	s2 := r.send(2, 2)
	r.m.SendDone("b", s2.Link, s2.ID, link.Sent, now)
	assert.Equal(t, 0, r.m.Pending())
	assert.Equal(t, breaker.Closed, r.m.State("b", now).Breaker)
	assert.Equal(t, uint64(1), r.m.Stats().Resets)
	assert.Equal(t, uint64(1), r.m.Stats().Dropped)
}

// A probe answered while a write on an open stream is in flight says the
// peer is there and the write slow: it is waited for. The same answer
// while a dial is in flight abandons the dial and sends the next frame.
func TestAProbeAnsweredWhileWritingWaitsAndWhileDialingMovesOn(t *testing.T) {
	cfg := link.DefaultConfig()
	r := newRig(t, cfg)
	r.m.Queue(frame(1, 10), t0)
	r.send(1, 1)
	r.m.Queue(frame(2, 10), t0)
	p := r.stall(t0)
	r.m.ProbeDone("b", p.Link, p.ID, true, true, at(cfg.RetryInterval))
	assert.Empty(t, r.take(), "a slow write is waited for")
	assert.Equal(t, "stalled", r.m.State("b", t0).Phase)
	r.m.Tick(at(2 * cfg.RetryInterval))
	p2 := of(r.take(), link.Probe)
	require.Len(t, p2, 1, "and probing goes on")
	r.m.ProbeDone("b", p2[0].Link, p2[0].ID, true, false, at(2*cfg.RetryInterval))
	acts := r.take()
	require.Len(t, of(acts, link.Reset), 1)
	s := of(acts, link.Send)
	require.Len(t, s, 1)
	assert.Equal(t, uint64(2), s[0].Frame.First)
	assert.Empty(t, of(acts, link.Note), "no outage: nothing to log")
}

// At most MaxAbandoned sends are left in flight: past it the slow one is
// waited for.
func TestAbandonedSendsAreBounded(t *testing.T) {
	cfg := link.DefaultConfig()
	r := newRig(t, cfg)
	now := t0
	for q := uint64(1); q <= link.MaxAbandoned+2; q++ {
		r.m.Queue(frame(q, 10), now)
	}
	r.send(1, 1)
	for i := 0; ; i++ {
		now = now.Add(cfg.RetryInterval)
		r.m.Tick(now)
		ps := of(r.take(), link.Probe)
		require.Len(t, ps, 1)
		r.m.ProbeDone("b", ps[0].Link, ps[0].ID, true, false, now)
		acts := r.take()
		st := r.m.State("b", now)
		require.LessOrEqual(t, st.Inflight, 1+link.MaxAbandoned)
		if i == link.MaxAbandoned {
			assert.Empty(t, acts, "past the bound the send is waited for")
			assert.Equal(t, 1+link.MaxAbandoned, st.Inflight)
			break
		}
		require.Len(t, of(acts, link.Send), 1)
	}
}

// A failed send means the peer is gone: what is queued is dropped, and so
// is every frame until a probe is answered; then repair is urged and
// frames flow again.
func TestAFailedSendDropsTheQueueUntilAProbeIsAnswered(t *testing.T) {
	cfg := link.DefaultConfig() // 3 failures open the breaker
	r := newRig(t, cfg)
	r.m.Queue(frame(1, 10), t0)
	s := r.send(1, 1)
	r.m.Queue(frame(2, 10), t0)
	r.m.Queue(frame(3, 10), t0)
	r.m.SendDone("b", s.Link, s.ID, link.Failed, t0)
	acts := r.take()
	assert.Equal(t, link.NoteDown, of(acts, link.Note)[0].Note)
	p := of(acts, link.Probe)
	require.Len(t, p, 1, "probed at once")
	assert.Empty(t, of(acts, link.Send))
	assert.Equal(t, 0, r.m.Pending())
	assert.Equal(t, link.PeerState{Breaker: breaker.Closed, Phase: "down", Unacked: 3}, r.m.State("b", t0))

	assert.Equal(t, 1, r.m.Queue(frame(4, 10), t0), "recorded as sent: its ack may never come")
	assert.Empty(t, r.take(), "dropped: older than the answer it waits for")
	r.m.ProbeDone("b", p[0].Link, p[0].ID, false, false, t0)
	r.m.Tick(at(cfg.RetryInterval))
	p = of(r.take(), link.Probe)
	require.Len(t, p, 1, "probed every RetryInterval")
	r.m.ProbeDone("b", p[0].Link, p[0].ID, true, false, at(cfg.RetryInterval))
	acts = r.take()
	assert.Equal(t, link.NoteUp, of(acts, link.Note)[0].Note)
	require.Len(t, of(acts, link.Urge), 1)
	assert.Equal(t, "b", of(acts, link.Urge)[0].Peer)
	r.m.Queue(frame(5, 10), at(cfg.RetryInterval))
	r.send(5, 5)
	st := r.m.Stats()
	assert.Equal(t, uint64(3), st.Dropped)
	assert.Equal(t, uint64(1), st.Failed)
}

// With the breaker opened by a failed send, the answered probe turns it
// half-open at once: frames go, the peer is not waited for, and its ack
// closes it.
func TestAProbeAnsweredAfterAFailureTurnsTheBreakerHalfOpen(t *testing.T) {
	cfg := link.DefaultConfig()
	cfg.Breaker.Failures = 1
	r := newRig(t, cfg)
	r.m.Queue(frame(1, 10), t0)
	s := r.send(1, 1)
	r.m.SendDone("b", s.Link, s.ID, link.Failed, t0)
	acts, trs := r.m.Take()
	require.Len(t, trs, 1)
	assert.Equal(t, breaker.Open, trs[0].To)
	assert.Equal(t, "b", trs[0].Peer)
	assert.Empty(t, r.m.Eligible(t0))
	assert.Equal(t, 0, r.m.Queue(frame(2, 10), t0), "an open breaker stops frames")
	assert.Equal(t, uint64(1), r.m.Stats().Skipped)
	p := of(acts, link.Probe)
	require.Len(t, p, 1)
	now := at(time.Millisecond) // long before the cool-down
	r.m.ProbeDone("b", p[0].Link, p[0].ID, true, false, now)
	acts, trs = r.m.Take()
	require.Len(t, trs, 1)
	assert.Equal(t, breaker.HalfOpen, trs[0].To)
	require.Len(t, of(acts, link.Urge), 1)
	assert.Empty(t, r.m.Eligible(now), "half-open: sent to, not waited for")
	assert.Equal(t, 1, r.m.Queue(frame(3, 10), now))
	s = r.send(3, 3)
	r.m.SendDone("b", s.Link, s.ID, link.Sent, now)
	r.m.Acked("b", 3, 3, now)
	_, trs = r.m.Take()
	require.Len(t, trs, 1)
	assert.Equal(t, breaker.Closed, trs[0].To)
	assert.Equal(t, []string{"b"}, r.m.Eligible(now))
}

// A peer that acknowledges nothing for Timeout counts a failure; the
// breaker that opens resets the stream, as a failure (Breaker), and the
// send on it then fails.
func TestABreakerOpenedByUnackedFramesResetsTheStream(t *testing.T) {
	cfg := link.DefaultConfig()
	cfg.Breaker.Failures = 1
	r := newRig(t, cfg)
	r.m.Queue(frame(1, 10), t0)
	s := r.send(1, 1)
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	r.m.Queue(frame(2, 10), at(10*time.Millisecond))
	s = r.send(2, 2) // hangs
	var resets []link.Action
	var opened []link.Transition
	tick := 20 * time.Millisecond // the driver's cadence
	for d := tick; d <= cfg.Timeout; d += tick {
		assert.Empty(t, resets, "no failure before Timeout")
		r.m.Tick(at(d))
		acts, trs := r.m.Take()
		resets = append(resets, of(acts, link.Reset)...)
		opened = append(opened, trs...)
	}
	require.Len(t, resets, 1)
	assert.True(t, resets[0].Breaker)
	assert.Equal(t, r.link, resets[0].Link)
	require.Len(t, opened, 1)
	assert.Equal(t, breaker.Open, opened[0].To)
	assert.Empty(t, r.m.Eligible(at(cfg.Timeout)))
	assert.Zero(t, r.m.State("b", at(cfg.Timeout)).Unacked)
	r.m.SendDone("b", s.Link, s.ID, link.Failed, at(cfg.Timeout))
	assert.Equal(t, "down", r.m.State("b", at(cfg.Timeout)).Phase)
}

// A tick long after the last one is this node stalling (a starved CPU), not
// the peer: it counts no failure.
func TestATickAfterALongGapCountsNoFailure(t *testing.T) {
	cfg := link.DefaultConfig()
	cfg.Breaker.Failures = 1
	r := newRig(t, cfg)
	r.m.Tick(t0)
	r.m.Queue(frame(1, 10), t0)
	s := r.send(1, 1)
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	r.m.Tick(at(time.Second))
	_, trs := r.m.Take()
	assert.Empty(t, trs)
	assert.Equal(t, []string{"b"}, r.m.Eligible(at(time.Second)))
}

// A peer that moved gets a new link at once; the old one finishes its
// send and is forgotten.
func TestAMovedPeerGetsANewLinkAndTheOldOneIsForgotten(t *testing.T) {
	r := newRig(t, link.DefaultConfig())
	r.m.Queue(frame(1, 10), t0)
	old := r.send(1, 1)
	r.m.SetMembers([]string{"b"}, []link.Target{{Name: "b", Addr: "b2"}}, t0)
	acts := r.take()
	assert.Equal(t, link.NoteMoved, of(acts, link.Note)[0].Note)
	opens := of(acts, link.Open)
	require.Len(t, opens, 1)
	assert.Equal(t, "b2", opens[0].Addr)
	assert.NotEqual(t, r.link, opens[0].Link)
	assert.Empty(t, of(acts, link.Forget), "not while its send is in flight")

	r.m.Queue(frame(2, 10), t0)
	s := r.send(2, 2)
	assert.Equal(t, opens[0].Link, s.Link)
	r.m.SendDone("b", old.Link, old.ID, link.Sent, t0)
	acts = r.take()
	require.Len(t, acts, 1)
	assert.Equal(t, link.Action{Kind: link.Forget, Peer: "b", Link: r.link}, acts[0])
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	assert.Equal(t, 0, r.m.Pending())

	// A peer that is no longer a target is forgotten whole.
	r.m.SetMembers(nil, nil, t0)
	acts = r.take()
	require.Len(t, acts, 1)
	assert.Equal(t, link.Forget, acts[0].Kind)
	assert.Equal(t, "none", r.m.State("b", t0).Phase)
}

// The answer to a probe of a stall that ended is ignored: it says
// nothing about the send in flight now.
func TestAStaleProbeAnswerIsIgnored(t *testing.T) {
	cfg := link.DefaultConfig()
	r := newRig(t, cfg)
	r.m.Queue(frame(1, 10), t0)
	s := r.send(1, 1)
	r.m.Queue(frame(2, 10), t0)
	old := r.stall(t0)
	now := at(cfg.RetryInterval)
	r.m.SendDone("b", s.Link, s.ID, link.Sent, now)
	r.send(2, 2)
	cur := r.stall(now)
	assert.NotEqual(t, old.ID, cur.ID)
	later := now.Add(cfg.RetryInterval)
	r.m.ProbeDone("b", old.Link, old.ID, true, false, later)
	assert.Empty(t, r.take(), "stale: the dial it would abandon is not this one")
	r.m.ProbeDone("b", r.link+100, cur.ID, true, false, later)
	assert.Empty(t, r.take(), "no such link")
	r.m.ProbeDone("b", cur.Link, cur.ID, true, false, later)
	assert.Len(t, of(r.take(), link.Reset), 1)
}

// Close lets each link finish its queue; Done once every send ended.
func TestCloseFinishesTheQueueThenIsDone(t *testing.T) {
	r := newRig(t, link.DefaultConfig())
	r.m.Queue(frame(1, 10), t0)
	s := r.send(1, 1)
	r.m.Queue(frame(2, 10), t0)
	r.m.Close(t0)
	assert.False(t, r.m.Done())
	assert.Equal(t, 0, r.m.Queue(frame(3, 10), t0), "closed: nothing more")
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	s = r.send(2, 2)
	assert.False(t, r.m.Done())
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	assert.Equal(t, []link.Action{{Kind: link.Forget, Peer: "b", Link: r.link}}, r.take())
	assert.True(t, r.m.Done())
	assert.Equal(t, 0, r.m.Pending())
}

// Queue and backlog are bounded: past Queue the oldest frame is dropped.
func TestTheQueueIsBounded(t *testing.T) {
	cfg := link.DefaultConfig()
	cfg.Queue = 2
	r := newRig(t, cfg)
	for q := uint64(1); q <= 5; q++ {
		r.m.Queue(frame(q, 10), t0)
	}
	s := r.send(1, 1)
	assert.Equal(t, 2, r.m.State("b", t0).Queued)
	assert.Equal(t, uint64(2), r.m.Stats().Dropped)
	assert.Equal(t, 3, r.m.Pending())
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	r.send(4, 4) // 2 and 3 were the oldest
}

func TestConfigValidateNamesFlags(t *testing.T) {
	require.NoError(t, link.DefaultConfig().Validate())
	with := func(f func(*link.Config)) link.Config { c := link.DefaultConfig(); f(&c); return c }
	for _, tt := range []struct {
		name    string
		cfg     link.Config
		wantErr string // "" for valid; else the flag and bound named
	}{
		{"queue at lower bound", with(func(c *link.Config) { c.Queue = link.MinQueue }), ""},
		{"queue below", with(func(c *link.Config) { c.Queue = link.MinQueue - 1 }), "--peer-queue must be at least 1, got 0"},
		{"batch at lower bound", with(func(c *link.Config) { c.BatchBytes = link.MinBatchBytes }), ""},
		{"batch below", with(func(c *link.Config) { c.BatchBytes = link.MinBatchBytes - 1 }), "--direct-batch-bytes must be at least 1024, got 1023"},
		{"retry at lower bound", with(func(c *link.Config) { c.RetryInterval = link.MinRetryInterval }), ""},
		{"retry at upper bound", with(func(c *link.Config) { c.RetryInterval = link.MaxRetryInterval }), ""},
		{"retry zero", with(func(c *link.Config) { c.RetryInterval = 0 }), "--peer-retry-interval must be from 1ms to 1s, got 0s"},
		{"retry below", with(func(c *link.Config) { c.RetryInterval = link.MinRetryInterval - 1 }), "--peer-retry-interval must be from 1ms to 1s, got 999.999µs"},
		{"retry above", with(func(c *link.Config) { c.RetryInterval = link.MaxRetryInterval + 1 }), "--peer-retry-interval must be from 1ms to 1s, got 1.000000001s"},
		// The timeout's bounds are acks' (--write-timeout sets both), which
		// the cases at and past them pin.
		{"timeout at lower bound", with(func(c *link.Config) { c.Timeout = acks.MinTimeout }), ""},
		{"timeout at upper bound", with(func(c *link.Config) { c.Timeout = acks.MaxTimeout }), ""},
		{"timeout zero", with(func(c *link.Config) { c.Timeout = 0 }), "--write-timeout must be from 1ms to 5s, got 0s"},
		{"timeout below", with(func(c *link.Config) { c.Timeout = acks.MinTimeout - 1 }), "--write-timeout must be from 1ms to 5s, got 999.999µs"},
		{"timeout above", with(func(c *link.Config) { c.Timeout = acks.MaxTimeout + 1 }), "--write-timeout must be from 1ms to 5s, got 5.000000001s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, link.ErrConfig)
			assert.EqualError(t, err, "link: invalid config: "+tt.wantErr)
		})
	}
	// The breaker's own bounds, named by its flags, come through.
	c := link.DefaultConfig()
	c.Breaker.Failures = 0
	assert.ErrorIs(t, c.Validate(), breaker.ErrConfig)
	assert.ErrorContains(t, c.Validate(), "--breaker-failures")
}

// A breaker that opens resets every stream to its peer, a link finishing
// its queue (closed, or its peer moved) included: else Close waits out a
// TCP timeout on a peer already known gone.
func TestABreakerThatOpensResetsALinkFinishingItsQueue(t *testing.T) {
	cfg := link.DefaultConfig()
	cfg.Breaker.Failures = 1
	r := newRig(t, cfg)
	r.m.Queue(frame(1, 10), t0)
	s := r.send(1, 1)
	r.m.SendDone("b", s.Link, s.ID, link.Sent, t0)
	r.m.Queue(frame(2, 10), t0)
	s = r.send(2, 2) // hangs: b is gone
	r.m.Close(t0)
	assert.False(t, r.m.Done())
	var resets []link.Action
	for d := 20 * time.Millisecond; d <= cfg.Timeout; d += 20 * time.Millisecond {
		r.m.Tick(at(d))
		resets = append(resets, of(r.take(), link.Reset)...)
	}
	require.Len(t, resets, 1, "the breaker opened: the send on the closing link is reset")
	assert.Equal(t, link.Action{Kind: link.Reset, Peer: "b", Link: r.link, Breaker: true}, resets[0])
	r.m.SendDone("b", s.Link, s.ID, link.Failed, at(cfg.Timeout))
	assert.Equal(t, []link.Action{{Kind: link.Forget, Peer: "b", Link: r.link}}, r.take())
	assert.True(t, r.m.Done())
}

// A peer in neither list is forgotten whole: the late failure of a send
// its old link left in flight does not bring it back with a breaker
// open, to shut it out when it returns.
func TestAForgottenPeerIsNotBroughtBackByItsOldLinksFailure(t *testing.T) {
	cfg := link.DefaultConfig()
	cfg.Breaker.Failures = 1
	r := newRig(t, cfg)
	r.m.Queue(frame(1, 10), t0)
	s := r.send(1, 1) // hangs: b's host is gone
	r.m.SetMembers(nil, nil, t0)
	assert.Empty(t, r.take(), "its send is in flight: not forgotten yet")
	r.m.SendDone("b", s.Link, s.ID, link.Failed, at(time.Second))
	acts, trs := r.m.Take()
	assert.Equal(t, []link.Action{{Kind: link.Forget, Peer: "b", Link: r.link}}, acts)
	assert.Empty(t, trs, "no breaker for a peer that is no more")
	assert.Equal(t, link.PeerState{Breaker: breaker.Closed, Phase: "none"}, r.m.State("b", at(time.Second)))

	// It comes back: frames go to it and writes wait for it at once.
	now := at(time.Second + time.Millisecond)
	r.m.SetMembers([]string{"b"}, []link.Target{{Name: "b", Addr: "b1"}}, now)
	require.Len(t, of(r.take(), link.Open), 1)
	assert.Equal(t, []string{"b"}, r.m.Eligible(now))
	assert.Equal(t, 1, r.m.Queue(frame(2, 10), now))
}
