package cluster

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/antientropy"
	"github.com/likesd/likesd/internal/faultnet"
)

// recTransport records what its node writes on every connection it dials,
// with the address dialed.
type recTransport struct {
	*faultnet.Transport
	mu    sync.Mutex
	conns []*recConn
}

type recConn struct {
	net.Conn
	to     string
	mu     sync.Mutex
	writes [][]byte
}

func (t *recTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.Transport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	rc := &recConn{Conn: c, to: a.Addr}
	t.mu.Lock()
	t.conns = append(t.conns, rc)
	t.mu.Unlock()
	return rc, nil
}

// memberlistDials are the writes on each connection dialed to addr that
// was memberlist's, not a likesd stream (whose first write is its magic).
func (t *recTransport) memberlistDials(addr string) [][][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out [][][]byte
	for _, c := range t.conns {
		c.mu.Lock()
		w := c.writes
		c.mu.Unlock()
		if c.to == addr && len(w) > 0 && !(len(w[0]) == 1 && (w[0][0] == streamMagic || w[0][0] == streamMagicSession)) {
			out = append(out, w)
		}
	}
	return out
}

func (c *recConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(b))
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// Issue #21 review, R4: anti-entropy messages through memberlist (what a node sends to a peer
// it has no session to: every sync before the first frame, gossip mode, a
// hand-off once the senders stopped) are sealed under the keyring with a
// random nonce and nothing fresh: recorded on the wire and played again,
// they are delivered to the syncer under the name they carry, without the
// key. The issue asked that nothing recorded be replayable. Now they go on
// sessions, and one through memberlist in a session peer's name is refused.
func TestARecordedSyncMessageThroughMemberlistIsRefused(t *testing.T) {
	var rec *recTransport
	a := startNode(t, "a", nil, func(c *Config) {
		keyed(c)
		c.SyncInterval = 200 * time.Millisecond
		rec = &recTransport{Transport: c.Transport.(*faultnet.Transport)}
		c.Transport = rec
	})
	b := startNode(t, "b", []string{a.Addr()}, keyed)
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return a.Stats().SyncSessions >= 2 }, waitLong, 10*time.Millisecond,
		"a ran sync sessions with b (no write: no session is open, so through memberlist)")
	crash(t, a) // nothing fresh from a from now on
	recorded := rec.memberlistDials(b.Addr())
	t.Logf("a dialed b %d times for memberlist traffic in %d sync sessions (sync messages on sessions: %d)", len(recorded), a.Stats().SyncSessions, a.Stats().SyncStreamed)

	var before uint64
	require.Eventually(t, func() bool { // b's intake from a has settled
		x := b.Stats().SyncBytesIn
		time.Sleep(500 * time.Millisecond)
		before = b.Stats().SyncBytesIn
		return x == before
	}, waitLong, 10*time.Millisecond)
	for _, w := range recorded {
		_, closed := replay(t, b.Addr(), w)
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
		}
	}
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, before, b.Stats().SyncBytesIn,
		"anti-entropy messages played again from a recording (%d connections) were delivered to b's syncer as a's", len(recorded))
}

// What a recording played through memberlist would deliver, were anything
// of a's still sent there: an anti-entropy request in a's name, which b
// must neither scan for nor answer, since a speaks sessions. One in the
// name of no member is refused too.
func TestASyncMessageThroughMemberlistInASessionPeersNameIsRefused(t *testing.T) {
	a := startNode(t, "a", nil, keyed)
	b := startNode(t, "b", []string{a.Addr()}, keyed)
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(b.syncPeers()) == 1 }, waitLong, 10*time.Millisecond)
	crash(t, a) // a stays listed for a while (suspect), and sends nothing more

	in := b.Stats().SyncBytesIn
	refused := b.Stats().SyncRefused
	for _, from := range []string{"a", "nobody"} {
		m := &antientropy.Message{Kind: antientropy.KindPull, From: from, Session: 1, Req: 1}
		b.receive("", m.Append([]byte{msgSync})) // as delegate.NotifyMsg hands it over
	}
	require.Eventually(t, func() bool { return b.Stats().SyncRefused == refused+2 }, waitLong, 10*time.Millisecond,
		"b took anti-entropy through memberlist in the name of a session peer")
	assert.Equal(t, in, b.Stats().SyncBytesIn, "a refused message reached b's syncer")
}

// In a keyed cluster with no writes (so the fast path dials nothing), the
// anti-entropy of both nodes, a joining node's full sync and the hand-off
// at Close travel on sessions: memberlist carries none of it, a
// connection each, as it did (1,017 to 2,616 dials in 30 to 62 sessions
// of a 2-node cluster, #21 review R4). Push/pull is off, so memberlist
// dials only for a probe's TCP fallback.
func TestAntiEntropyOfAnIdleClusterRidesSessions(t *testing.T) {
	var recA, recB *recTransport
	recorded := func(rec **recTransport) func(*Config) {
		return func(c *Config) {
			keyed(c)
			c.PushPullInterval = time.Hour // memberlist's own dials
			c.RejoinInterval = time.Hour   // a re-join is a push/pull too
			*rec = &recTransport{Transport: c.Transport.(*faultnet.Transport)}
			c.Transport = *rec
		}
	}
	a := startNode(t, "a", nil, recorded(&recA))
	b := startNode(t, "b", []string{a.Addr()}, recorded(&recB))
	waitReady(t, a, b)
	assert.NotZero(t, b.Stats().SyncStreamed, "b's full sync from a went on its session")

	start := [2]uint64{a.Stats().SyncSessions, b.Stats().SyncSessions}
	require.Eventually(t, func() bool {
		return a.Stats().SyncSessions >= start[0]+20 && b.Stats().SyncSessions >= start[1]+20
	}, waitLong, 10*time.Millisecond)
	sessions := a.Stats().SyncSessions + b.Stats().SyncSessions
	dials := len(recA.memberlistDials(b.Addr())) + len(recB.memberlistDials(a.Addr()))
	t.Logf("%d sync sessions, %d+%d sync messages on sessions, %d memberlist dials between a and b",
		sessions, a.Stats().SyncStreamed, b.Stats().SyncStreamed, dials)
	assert.NotZero(t, a.Stats().SyncStreamed)
	assert.NotZero(t, b.Stats().SyncStreamed)
	// Through memberlist, each session cost a dial per message at least.
	assert.Less(t, dials, int(sessions/4), "memberlist dials between a and b (push/pull off)")
	assert.Zero(t, a.Stats().SyncRefused+b.Stats().SyncRefused)

	// The hand-off at Close, after the fast path's senders stopped: a's
	// write makes a's sender to b take over the session, which Close ends.
	require.True(t, write(a, acks.Count(2), "p", "x").Met())
	streamed, dialsBefore := a.Stats().SyncStreamed, len(recA.memberlistDials(b.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	require.NoError(t, a.Close(ctx))
	assert.True(t, a.sync.handedOff.Load(), "a handed off")
	assert.Greater(t, a.Stats().SyncStreamed, streamed, "a's hand-off went on a session")
	assert.LessOrEqual(t, len(recA.memberlistDials(b.Addr()))-dialsBefore, 2, "memberlist dials of a's close (its leave goes by UDP)")
}
