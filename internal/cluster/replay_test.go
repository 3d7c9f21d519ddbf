package cluster

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/faultnet"
)

// Issue #21, finding 2: what someone who captured cluster traffic (or who
// holds the key) can do with the streams. These tests use nothing but a
// node's own traffic, recorded on the wire, so they run against the stream
// code of any version.

// tapTransport records what its node writes on every connection it dials,
// and can play one write twice.
type tapTransport struct {
	*faultnet.Transport
	mu    sync.Mutex
	conns []*tapConn
}

func (t *tapTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.Transport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	tc := &tapConn{Conn: c}
	t.mu.Lock()
	t.conns = append(t.conns, tc)
	t.mu.Unlock()
	return tc, nil
}

// streams are the dialed connections that are likesd streams: their first
// write is one byte, a stream's magic (0xC5, or 0xC6 for a session).
func (t *tapTransport) streams() []*tapConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*tapConn
	for _, c := range t.conns {
		if w := c.written(); len(w) > 0 && len(w[0]) == 1 && (w[0][0] == 0xC5 || w[0][0] == 0xC6) {
			out = append(out, c)
		}
	}
	return out
}

type tapConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	dup    atomic.Bool // write the next message twice
}

func (c *tapConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(b))
	c.mu.Unlock()
	if c.dup.CompareAndSwap(true, false) { // set once the stream is open: a frame
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(b)
}

func (c *tapConn) written() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

// tapped starts a node whose dials are recorded.
func tapped(tap **tapTransport, tweak func(*Config)) func(*Config) {
	return func(c *Config) {
		if tweak != nil {
			tweak(c)
		}
		*tap = &tapTransport{Transport: c.Transport.(*faultnet.Transport)}
		c.Transport = *tap
	}
}

// keyed is a cluster with a key, patient on a busy machine.
func keyed(c *Config) {
	c.SecretKey = key(1)
	c.Writes.Timeout = 5 * time.Second
}

// twoTapped starts a (recorded) and b, and has a write at w=2 met, so that
// a's stream to b is open and recorded.
func twoTapped(t *testing.T) (a, b *testNode, stream *tapConn) {
	var tap *tapTransport
	a = startNode(t, "a", nil, tapped(&tap, keyed))
	b = startNode(t, "b", []string{a.Addr()}, keyed)
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 && len(b.syncPeers()) == 1 },
		waitLong, 10*time.Millisecond)
	require.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(a, acks.Count(2), "p", "first"))
	// a may have dialed before b listed it (refused for its address, then
	// dialed again): the stream open now is its last dial, and b holds one.
	s := tap.streams()
	require.NotEmpty(t, s, "a's stream to b")
	require.Eventually(t, func() bool { return b.Stats().StreamsInbound == 1 }, waitLong, 10*time.Millisecond,
		"b holds one stream from a")
	return a, b, s[len(s)-1]
}

// replay dials addr and writes msgs; the returned channel is closed once
// the node closes the connection.
func replay(t *testing.T, addr string, msgs [][]byte) (net.Conn, <-chan struct{}) {
	t.Helper()
	c, closed, err := dialWrite(t, addr, bytes.Join(msgs, nil))
	require.NoError(t, err)
	return c, closed
}

// A stream's opening recorded from a real session and played again to
// the same node is refused: it does not displace the live stream, and the
// acks of a's writes still reach a (before sessions it drew them: w=2
// writes went from all met to none).
func TestAReplayedHelloDrawsNoAcks(t *testing.T) {
	a, b, stream := twoTapped(t)
	w := stream.written()
	opening := w[:2] // the magic byte and the hello
	before := b.Stats().StreamsAccepted
	_, closed := replay(t, b.Addr(), opening)
	for i := range 10 {
		require.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(a, acks.Count(2), "p", fmt.Sprint("after", i)),
			"write %d after the replay", i)
	}
	assert.Equal(t, before, b.Stats().StreamsAccepted, "the replay was not accepted")
	require.Eventually(t, func() bool { return isClosed(closed) }, waitLong, 10*time.Millisecond,
		"b closes the replay once it proves nothing")
	assert.Equal(t, "closed", breakerOf(a, "b"))
}

// A whole stream recorded (opening and frames) and played again on a new
// connection brings nothing: no frame is applied, none acknowledged.
func TestAReplayedStreamIsRefused(t *testing.T) {
	_, b, stream := twoTapped(t)
	w := stream.written()
	require.Greater(t, len(w), 2, "a frame was recorded")
	before := b.Stats().FramesReceived
	_, closed := replay(t, b.Addr(), w)
	require.Eventually(t, func() bool { return isClosed(closed) || b.Stats().FramesReceived > before },
		waitLong, 10*time.Millisecond)
	assert.Equal(t, before, b.Stats().FramesReceived, "no frame of the replay applied")
}

// A frame played twice within its session is applied once: the second
// fails to open, the session ends, and a dials a fresh one, on which w=2
// is met again.
func TestAFrameReplayedWithinItsSessionIsRefused(t *testing.T) {
	a, b, stream := twoTapped(t)
	before := b.Stats()
	stream.dup.Store(true)
	write(a, acks.One, "p", "twice")
	require.Eventually(t, func() bool {
		st := b.Stats()
		return st.FramesReceived >= before.FramesReceived+2 || st.DecodeErrors > before.DecodeErrors
	}, waitLong, 10*time.Millisecond)
	st := b.Stats()
	assert.Equal(t, before.FramesReceived+1, st.FramesReceived, "the frame was applied once")
	assert.Equal(t, before.DecodeErrors+1, st.DecodeErrors, "the replay was refused")
	require.Eventually(t, func() bool {
		return write(a, acks.Count(2), "p", fmt.Sprint("again", time.Now().UnixNano())).Met()
	}, waitLong, 10*time.Millisecond, "a fresh session carries on")
}

// An ack that a key holder (c) writes in another node's name (b's) counts
// for nothing, on c's stream or through memberlist: a write at w=all is
// met only once b itself acknowledges, and b, which refuses the like (its
// ids are longer than b takes), never does. Before, c's forged acks met
// it.
func TestAnAckInAnotherNodesNameCountsForNothing(t *testing.T) {
	tweak := func(c *Config) {
		c.SecretKey = key(1)
		c.Writes.Timeout = 2 * time.Second
	}
	a := startNode(t, "a", nil, tweak)
	b := startNode(t, "b", []string{a.Addr()}, func(c *Config) { tweak(c); c.MaxIDBytes = 4 })
	c := startNode(t, "c", []string{a.Addr()}, tweak)
	waitReady(t, a, b, c)
	require.Eventually(t, func() bool {
		return len(a.syncPeers()) == 2 && len(b.syncPeers()) == 2 && len(c.syncPeers()) == 2
	}, waitLong, 10*time.Millisecond)
	require.Eventually(t, func() bool { return write(a, acks.All, "p", "ok").Met() },
		waitLong, 10*time.Millisecond, "warm: every stream open")

	forged := encodeAck("b", []ackRun{{origin: a.origin, first: 1, count: 1 << 30}})
	stop := make(chan struct{})
	var forgers sync.WaitGroup
	forgers.Add(1)
	go func() {
		defer forgers.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = c.sendAck("a", forged) // on a's stream to c
			if m, ok := c.members.member("a"); ok {
				_ = c.ml.SendReliable(m.node(), forged)
			}
		}
	}()
	res := write(a, acks.All, "p", "longer-than-b-takes")
	close(stop)
	forgers.Wait()
	assert.Equal(t, acks.Result{Replicas: 2, Want: 3}, res, "a and c hold it; b does not")
	assert.False(t, b.store.Has("p", "longer-than-b-takes"))
	assert.Positive(t, a.Stats().AcksRefused, "the forgeries through memberlist were refused as such")
}
