package cluster

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
)

// Review of #21 (sessions): the reviewer's reproductions, adopted.

// R1. A key holder opened a session to a in b's name from another
// address: the handshake proves only that the dialer holds a cluster key,
// and a sent the acks of b's frames on the newest stream under the name
// "b", the impostor's, so b's writes at w=2 were not met. A keyed hello is
// now taken only from the named member's address.
func TestSessionInAnotherNodesNameFromAnotherAddressIsRefused(t *testing.T) {
	a := startNode(t, "a", nil, keyed)
	b := startNode(t, "b", []string{a.Addr()}, keyed)
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 && len(b.syncPeers()) == 1 },
		waitLong, 10*time.Millisecond)
	require.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(b, acks.Count(2), "p", "before"))

	// mallory holds the key, and dials from an address of her own (b is at
	// 127.0.0.1), so that a fix binding the name to b's address is tested.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c, err := d.Dial("tcp", a.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Write([]byte{streamMagicSession})
	require.NoError(t, err)
	_, err = dialHandshake(c, bufio.NewReader(c), key(1), a.cfg.Label, "b", a.Self(), 5*time.Second, nil)
	if err == nil { // the reviewer's check: before the fix a took it
		go func() { _, _ = io.Copy(io.Discard, c) }()
		require.Eventually(t, func() bool {
			s := a.inbound.get("b")
			return s != nil && s.conn.RemoteAddr().String() == c.LocalAddr().String()
		}, waitLong, 10*time.Millisecond)
	}
	assert.Error(t, err, "a took a session in b's name from a connection that is not b's")
	assert.Equal(t, uint64(1), a.Stats().HandshakesRefused.Address)

	for i := range 3 {
		assert.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(b, acks.Count(2), "p", "after"+string(rune('0'+i))),
			"b's write %d: a holds it, but a's ack went to the impostor's session", i)
	}
}

// R2. Connections from anyone (no key needed) that send the magic byte and
// nothing more, redialed as soon as a closes them, took every MaxStreams
// place before the handshake, and a peer that needs a session (one that
// joins, restarts, or redials after a rotation) was refused. A place is
// now taken only once the handshake is done.
func TestPendingHandshakesDoNotTakeStreamPlaces(t *testing.T) {
	const maxStreams = 8
	caps := func(c *Config) {
		keyed(c)
		c.MaxStreams = maxStreams
	}
	a := startNode(t, "a", nil, caps)
	waitReady(t, a)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	for range maxStreams { // one connection per place, each redialed when a closes it
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", a.Addr())
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				_, _ = c.Write([]byte{streamMagicSession})
				_, _ = io.Copy(io.Discard, c) // until a closes it: its hello deadline
				_ = c.Close()
				time.Sleep(time.Millisecond)
			}
		}()
	}
	t.Cleanup(func() {
		close(stop)
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	// Every flooder's connection is open at a: before the fix each held a
	// MaxStreams place, now a handshake in progress.
	require.Eventually(t, func() bool {
		st := a.Stats()
		return st.StreamsInbound+st.HandshakesPending == maxStreams
	}, waitLong, 10*time.Millisecond)

	b := startNode(t, "b", []string{a.Addr()}, caps)
	waitReady(t, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 && len(b.syncPeers()) == 1 },
		waitLong, 10*time.Millisecond)
	met := 0
	for i := range 3 {
		if write(b, acks.Count(2), "p", "b"+string(rune('0'+i))).Met() {
			met++
		}
	}
	assert.Equal(t, 3, met, "b's writes at w=2 met while connections without the key hold a's places (a refused %d streams)",
		a.Stats().StreamsRefused)
}

// R3. A node in --fast-path gossip mode says metaSessions like any other
// (NodeMeta does not look at FastPath), so a direct-mode node counts it as
// a session peer and drops every frame it broadcasts through memberlist
// (handle: "another's in its name"), and acknowledges none: in a cluster
// rolling from one fast path to the other, the gossip-mode nodes' writes
// at w=2 are not met. Before #21 such frames were taken.
func TestGossipModePeersFramesReachADirectModeNode(t *testing.T) {
	a := startNode(t, "a", nil, keyed)
	b := startNode(t, "b", []string{a.Addr()}, func(c *Config) { keyed(c); c.FastPath = FastPathGossip })
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 && len(b.syncPeers()) == 1 },
		waitLong, 10*time.Millisecond)
	assert.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(b, acks.Count(2), "p", "from-b"))
	assert.Zero(t, a.Stats().FramesRefused, "a dropped b's broadcast frames")
}

// Past MaxHandshakes the oldest handshake in progress is closed for the
// newest, and counted: connections that never finish only displace each
// other, and a real peer's handshake, which takes a round trip, gets in
// while the cap is full.
func TestTheOldestPendingHandshakeIsCutForTheNewest(t *testing.T) {
	const maxHandshakes = 4
	caps := func(c *Config) {
		keyed(c)
		c.MaxHandshakes = maxHandshakes
		c.TCPTimeout = 30 * time.Second // the flood is cut by the cap, not by its deadline
	}
	a := startNode(t, "a", nil, caps)
	waitReady(t, a)
	const flood = 2 * maxHandshakes
	ends := make([]<-chan struct{}, flood)
	for i := range flood {
		_, ends[i] = openStream(t, a.Addr(), nil) // the magic byte only
		require.Eventually(t, func() bool {
			st := a.Stats()
			return st.HandshakesPending == uint64(min(i+1, maxHandshakes)) && st.HandshakesCut == uint64(max(0, i+1-maxHandshakes))
		}, waitLong, 5*time.Millisecond, "connection %d", i)
	}
	require.Eventually(t, func() bool {
		for _, ch := range ends[:flood-maxHandshakes] {
			if !isClosed(ch) {
				return false
			}
		}
		return true
	}, waitLong, 10*time.Millisecond, "the oldest are closed")
	for _, ch := range ends[flood-maxHandshakes:] {
		assert.False(t, isClosed(ch), "the newest are kept")
	}
	assert.Zero(t, a.Stats().StreamsInbound, "none took a stream place")
	assert.Zero(t, a.Stats().StreamsTimedOut)

	b := startNode(t, "b", []string{a.Addr()}, caps)
	waitReady(t, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 && len(b.syncPeers()) == 1 },
		waitLong, 10*time.Millisecond)
	require.Eventually(t, func() bool { return write(b, acks.Count(2), "p", "b").Met() },
		waitLong, 10*time.Millisecond, "b's write at w=2 is met while the handshake cap is full")
	st := a.Stats()
	assert.Equal(t, uint64(1), st.StreamsInbound, "b's session")
	assert.GreaterOrEqual(t, st.HandshakesCut, uint64(flood-maxHandshakes+1), "b's handshake cut the oldest of the flood")
	assert.Zero(t, st.StreamsRefused)
}

// A node that dials its first session before the acceptor lists it (a join
// racing its first frames: here a's table misses b, as if memberlist's
// event came late) is refused for its address, and its sender retries:
// b's writes at w=2 are met once a lists it.
func TestASessionRefusedBeforeTheAcceptorListsTheDialerIsRetried(t *testing.T) {
	a := startNode(t, "a", nil, func(c *Config) {
		keyed(c)
		c.RejoinInterval = time.Hour // no reconcile puts b back: the test does
	})
	b := startNode(t, "b", []string{a.Addr()}, func(c *Config) {
		keyed(c)
		c.Writes.Timeout = 500 * time.Millisecond
	})
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 && len(b.syncPeers()) == 1 },
		waitLong, 10*time.Millisecond)
	bAtA, ok := a.members.member("b")
	require.True(t, ok)
	a.members.gone("b", time.Now())
	// b's sessions to a, opened while a listed it (anti-entropy opens one
	// at once), end: b's next dial meets an a that does not list it.
	for s := a.inbound.get("b"); s != nil; s = a.inbound.get("b") {
		s.reset(errStreamReset)
	}

	i := 0
	next := func() string { i++; return fmt.Sprint("w", i) }
	require.Eventually(t, func() bool {
		write(b, acks.Count(2), "p", next())
		return a.Stats().HandshakesRefused.Address > 0
	}, waitLong, time.Millisecond, "b's session refused while a does not list it")
	assert.Zero(t, a.Stats().StreamsInbound)

	a.members.joined(bAtA, false, time.Now()) // memberlist's event, late
	require.Eventually(t, func() bool { return write(b, acks.Count(2), "p", next()).Met() },
		waitLong, time.Millisecond, "b's writes at w=2 once a lists it")
	for range 3 {
		assert.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(b, acks.Count(2), "p", next()))
	}
	assert.Zero(t, a.Stats().HandshakesRefused.Auth)
}

// And a node that joins and writes at once has its writes met.
func TestAJoiningNodesWritesAreMetSoonAfterItJoins(t *testing.T) {
	a := startNode(t, "a", nil, keyed)
	waitReady(t, a)
	b := startNode(t, "b", []string{a.Addr()}, keyed)
	i := 0
	next := func() string { i++; return fmt.Sprint("w", i) }
	require.Eventually(t, func() bool { return write(b, acks.Count(2), "p", next()).Met() },
		waitLong, time.Millisecond, "b's writes at w=2 right after it joined")
	for range 3 {
		assert.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(b, acks.Count(2), "p", next()))
	}
	assert.Zero(t, a.Stats().HandshakesRefused.Auth)
}
