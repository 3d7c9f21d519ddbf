package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
)

// Issue #21, finding 4: the gossip port took any number of likesd streams,
// each of which could hold a buffer as large as the length it announced,
// for two minutes. These are the floods it must survive.

// openStream dials addr and opens a likesd session stream with out (the
// magic byte is added); the returned channel is closed once the node
// closes it.
func openStream(t *testing.T, addr string, out []byte) (net.Conn, <-chan struct{}) {
	t.Helper()
	// A node that refuses the stream may have closed it already: the
	// write may fail, and the read tells.
	c, closed, _ := dialWrite(t, addr, append([]byte{streamMagicSession}, out...))
	return c, closed
}

// dialWrite dials addr and writes out as it is, first byte included; the
// channel is closed once the node closes the connection (what it answers
// is read and dropped). The error is the write's.
func dialWrite(t *testing.T, addr string, out []byte) (net.Conn, <-chan struct{}, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, werr := c.Write(out)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, c)
	}()
	return c, closed, werr
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A flood of connections to the gossip port, each opening a likesd stream
// (its magic byte and nothing more, a hello under a name of its own, or a
// hello under one shared name), gets at most MaxStreams places, and a name
// at most MaxStreamsPerPeer: the rest are closed and counted, and the node
// goes on serving its real peer both ways. (Plaintext: a hello needs no
// key, so the sessions finish. Those that send only the magic byte take
// no place: they wait, as handshakes in progress, for their deadline.)
func TestAFloodOfStreamsIsCapped(t *testing.T) {
	const maxStreams, perPeer, flood = 8, 2, 60
	caps := func(c *Config) {
		c.MaxStreams, c.MaxStreamsPerPeer = maxStreams, perPeer
		c.Writes.Timeout = 5 * time.Second // a busy machine is slow, not silent
	}
	a := startNode(t, "a", nil, caps)
	b := startNode(t, "b", []string{a.Addr()}, caps)
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 && len(b.syncPeers()) == 1 },
		waitLong, 10*time.Millisecond)
	require.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(b, acks.Count(2), "p", "before"))
	require.Equal(t, uint64(1), a.Stats().StreamsInbound, "b's stream to a")

	var peak uint64
	sample := func() Stats {
		st := a.Stats()
		peak = max(peak, st.StreamsInbound)
		return st
	}
	ends := make([]<-chan struct{}, 0, flood)
	for i := range flood {
		var hello []byte
		switch i % 3 {
		case 1:
			hello = plainSession(a.cfg.Label, fmt.Sprint("flood-", i))
		case 2:
			hello = plainSession(a.cfg.Label, "mallory")
		}
		_, closed := openStream(t, a.Addr(), hello)
		ends = append(ends, closed)
		sample()
	}
	open := func() int {
		k := 0
		for _, ch := range ends {
			if !isClosed(ch) {
				k++
			}
		}
		return k
	}
	// b's stream keeps its place: at most maxStreams-1 of the flood stay.
	const hellos = flood - flood/3 // the rest send the magic byte only
	assert.Eventually(t, func() bool {
		st := sample()
		return open() <= maxStreams-1 && st.StreamsRefused+st.StreamsDisplaced >= hellos-(maxStreams-1)
	}, waitLong, 10*time.Millisecond, "the flood beyond the cap is closed")
	st := sample()
	require.LessOrEqual(t, open(), maxStreams-1, "flood streams left open")
	require.GreaterOrEqual(t, st.StreamsRefused+st.StreamsDisplaced, uint64(hellos-(maxStreams-1)))
	assert.LessOrEqual(t, peak, uint64(maxStreams), "streams open at once")
	assert.LessOrEqual(t, st.StreamsInbound, uint64(maxStreams))
	a.inbound.mu.Lock()
	assert.LessOrEqual(t, len(a.inbound.byName["mallory"]), perPeer, "streams under one name")
	a.inbound.mu.Unlock()

	// The hellos that never came are closed within TCPTimeout, and the
	// real peer is served both ways on the streams it had.
	require.Eventually(t, func() bool {
		for i, ch := range ends {
			if i%3 == 0 && !isClosed(ch) {
				return false
			}
		}
		return sample().StreamsTimedOut > 0
	}, waitLong, 10*time.Millisecond, "streams without a hello are closed")
	for i := range 20 {
		require.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(b, acks.Count(2), "p", fmt.Sprint("b", i)))
		require.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(a, acks.Count(2), "p", fmt.Sprint("a", i)))
	}
	assert.Equal(t, 41, a.store.Count("p"))
	assert.Equal(t, uint64(1), b.Stats().StreamsDialed, "b's stream was never refused nor displaced")
	assert.LessOrEqual(t, peak, uint64(maxStreams), "streams open at once")
}

// A peer's newest stream is always let in: past MaxStreamsPerPeer the
// oldest ones under its name are closed, so a peer that redials (after a
// restart under the same name, or a cut its old streams never heard the
// end of) is never shut out by its own stale streams, and acks go back on
// the newest.
func TestAPeersNewestStreamDisplacesItsOldest(t *testing.T) {
	const perPeer, dials = 2, 5
	a := startNode(t, "a", nil, func(c *Config) { c.MaxStreams, c.MaxStreamsPerPeer = 8, perPeer })
	waitReady(t, a)
	hello := plainSession(a.cfg.Label, "b")
	conns := make([]net.Conn, dials)
	ends := make([]<-chan struct{}, dials)
	for i := range dials {
		conns[i], ends[i] = openStream(t, a.Addr(), hello)
		require.Eventually(t, func() bool { return a.Stats().StreamsAccepted == uint64(i+1) },
			waitLong, 5*time.Millisecond, "stream %d let in", i)
	}
	require.Eventually(t, func() bool {
		for _, ch := range ends[:dials-perPeer] {
			if !isClosed(ch) {
				return false
			}
		}
		st := a.Stats()
		return st.StreamsDisplaced == dials-perPeer && st.StreamsInbound == perPeer
	}, waitLong, 10*time.Millisecond, "the oldest streams are closed")
	assert.Zero(t, a.Stats().StreamsRefused)
	a.inbound.mu.Lock()
	var kept []string
	for _, s := range a.inbound.byName["b"] {
		kept = append(kept, s.conn.RemoteAddr().String())
	}
	a.inbound.mu.Unlock()
	var newest []string
	for _, c := range conns[dials-perPeer:] {
		newest = append(newest, c.LocalAddr().String())
	}
	assert.Equal(t, newest, kept, "the newest are kept, oldest first")
	require.NotNil(t, a.inbound.get("b"))
	assert.Equal(t, conns[dials-1].LocalAddr().String(), a.inbound.get("b").conn.RemoteAddr().String(), "acks go on the newest")
}

// A message that announces a large body and sends it a byte at a time
// holds a buffer the size of what arrived, not of what it announced, and
// is cut once it has taken TCPTimeout.
func TestATrickledMessageHoldsLittleAndIsCutAtItsDeadline(t *testing.T) {
	a := startNode(t, "a", nil, func(c *Config) { c.TCPTimeout = time.Second })
	waitReady(t, a)
	const announced = 256 << 10
	out := plainSession(a.cfg.Label, "slow")
	c, closed := openStream(t, a.Addr(), binary.AppendUvarint(out, announced))
	require.Eventually(t, func() bool { return a.Stats().StreamsAccepted == 1 }, waitLong, 5*time.Millisecond)

	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range announced - 1 { // never the whole message
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte{1}); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-trickled })

	var peak uint64
	require.Eventually(t, func() bool {
		st := a.Stats()
		peak = max(peak, st.StreamBuffered)
		return st.StreamBuffered > 0
	}, waitLong, 5*time.Millisecond, "the message is being read")
	cut := assert.Eventually(t, func() bool {
		st := a.Stats()
		peak = max(peak, st.StreamBuffered)
		return st.StreamsTimedOut == 1 && st.StreamsInbound == 0 && isClosed(closed)
	}, 30*time.Second, 10*time.Millisecond, "the stream is cut at its message's deadline")
	assert.LessOrEqual(t, peak, uint64(streamReadChunk), "the buffer held is what arrived, not what was announced")
	require.True(t, cut)
	assert.Zero(t, a.Stats().StreamBuffered)
	assert.Zero(t, a.Stats().DecodeErrors)
}

// readStreamMessage's buffer is never more than twice what has arrived
// (or its first streamReadChunk), whatever the length announced, and is
// given back when the read ends.
func TestAStreamMessageBufferGrowsAsItArrives(t *testing.T) {
	const announced = 1 << 20
	pr, pw := io.Pipe()
	var held atomic.Int64
	done := make(chan error, 1)
	go func() {
		_, err := readStreamMessage(bufio.NewReader(pr), announced, &held)
		done <- err
	}()
	_, err := pw.Write(binary.AppendUvarint(nil, announced))
	require.NoError(t, err)
	chunk := make([]byte, 1000)
	for written := 1000; written <= 100_000; written += 1000 {
		_, err := pw.Write(chunk) // returns once the reader took it all
		require.NoError(t, err)
		assert.LessOrEqual(t, held.Load(), int64(max(streamReadChunk, 2*written)), "after %d bytes", written)
	}
	stopped := errors.New("peer went away")
	_ = pw.CloseWithError(stopped)
	require.ErrorIs(t, <-done, stopped)
	assert.Zero(t, held.Load())
}
