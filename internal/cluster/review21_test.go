package cluster

import (
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
