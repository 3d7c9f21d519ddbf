package faultnet

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// received reports whether t gets a packet within d.
func received(t *Transport, d time.Duration) bool {
	select {
	case <-t.PacketCh():
		return true
	case <-time.After(d):
		return false
	}
}

// twoHosts is a network of two hosts with transports attached; the
// network closes at the end of the test.
func twoHosts(t *testing.T) (n *Network, a, b *Transport) {
	t.Helper()
	n = New(1)
	t.Cleanup(n.Close)
	a, err := n.NewTransport()
	require.NoError(t, err)
	b, err = n.NewTransport()
	require.NoError(t, err)
	return n, a, b
}

func TestCutsAndCrashes(t *testing.T) {
	n, a, b := twoHosts(t)
	to := func(x *Transport) memberlist.Address { return memberlist.Address{Addr: x.Addr()} }

	_, err := a.WriteToAddress([]byte("hi"), to(b))
	require.NoError(t, err)
	assert.True(t, received(b, 5*time.Second), "a→b open")

	n.Cut(a.Addr(), b.Addr())
	_, _ = a.WriteToAddress([]byte("lost"), to(b))
	assert.False(t, received(b, 100*time.Millisecond), "a→b cut")
	_, _ = b.WriteToAddress([]byte("hi"), to(a))
	assert.True(t, received(a, 5*time.Second), "b→a still open for packets")
	start := time.Now()
	_, err = b.DialAddressTimeout(to(a), 50*time.Millisecond)
	assert.ErrorIs(t, err, ErrBlackholed, "a stream needs both directions")
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond, "a black-holed dial waits out its timeout")

	n.Heal()
	accepted := make(chan struct{})
	go func() { c := <-b.StreamCh(); _ = c.Close(); close(accepted) }()
	c, err := a.DialAddressTimeout(to(b), time.Second)
	require.NoError(t, err)
	_ = c.Close()
	<-accepted

	// b crashes: its address refuses streams until a new transport attaches.
	require.NoError(t, b.Shutdown())
	_, err = a.DialAddressTimeout(to(b), time.Second)
	assert.True(t, errors.Is(err, ErrRefused), "got %v", err)
	b2, err := n.Attach(b.Addr())
	require.NoError(t, err)
	_, err = a.WriteToAddress([]byte("hi"), to(b2))
	require.NoError(t, err)
	assert.True(t, received(b2, 5*time.Second), "the new process at b's address receives")
	_, err = n.Attach(b.Addr())
	assert.Error(t, err, "one transport per address at a time")

	n.Down(b2.Addr())
	start = time.Now()
	_, err = a.DialAddressTimeout(to(b2), 5*time.Second)
	assert.ErrorIs(t, err, ErrRefused)
	assert.Less(t, time.Since(start), time.Second, "a down host refuses at once")
	_, _ = a.WriteToAddress([]byte("lost"), to(b2))
	assert.False(t, received(b2, 100*time.Millisecond), "and loses packets")
	n.Heal()

	n.SetLoss(1)
	_, err = a.DialAddressTimeout(to(b2), time.Second)
	assert.ErrorIs(t, err, ErrDropped)
	require.NoError(t, a.Shutdown())
	require.NoError(t, b2.Shutdown())
}

// An open stream stalls while its link is cut (a write waits out its
// deadline, then passes once healed) and is reset when a host goes down.
func TestOpenStreamsStallOnCutsAndResetOnDown(t *testing.T) {
	n, a, b := twoHosts(t)
	accepted := make(chan net.Conn, 1)
	go func() { accepted <- <-b.StreamCh() }()
	c, err := a.DialAddressTimeout(memberlist.Address{Addr: b.Addr()}, time.Second)
	require.NoError(t, err)
	defer c.Close()
	bc := <-accepted
	defer bc.Close()

	n.Cut(b.Addr(), a.Addr()) // either direction stalls a stream
	for _, w := range []net.Conn{c, bc} {
		require.NoError(t, w.SetWriteDeadline(time.Now().Add(50*time.Millisecond)))
		_, err = w.Write([]byte("x"))
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout(), "a write on a cut link waits out its deadline")
	}

	n.Heal()
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(time.Second)))
	_, err = c.Write([]byte("y"))
	require.NoError(t, err)
	buf := make([]byte, 1)
	_, err = io.ReadFull(bc, buf)
	require.NoError(t, err)
	assert.Equal(t, "y", string(buf))

	n.Down(b.Addr())
	_, err = io.ReadFull(bc, buf)
	assert.Error(t, err, "b's end is reset")
	_, err = c.Write([]byte("z"))
	assert.Error(t, err, "and a's")
}
