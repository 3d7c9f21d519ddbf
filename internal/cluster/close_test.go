package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
)

// Finding 6 (#21): Close returns when its context ends, even while a send
// to a peer is stalled. Here b's link is cut with a's stream to it open: a
// write on it waits until the cut heals or its deadline passes, and
// TCPTimeout (the deadline) is an hour.
func TestCloseReturnsWhenItsContextEnds(t *testing.T) {
	stall := func(c *Config) { c.TCPTimeout = time.Hour }
	a := startNode(t, "a", nil, stall)
	b := startNode(t, "b", []string{a.Addr()}, stall)
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return write(a, acks.Count(2), "p", "warm").Replicas == 2 },
		waitLong, 10*time.Millisecond, "a's stream to b is open")

	testNet(t).Isolate(b.Addr())
	// Frames to b now stall on the stream; a sender blocked in a write
	// keeps its batches pending.
	i := 0
	require.Eventually(t, func() bool {
		i++
		write(a, acks.One, "p", fmt.Sprint("stalled", i))
		return a.writes.pending() > 1
	}, waitLong, 10*time.Millisecond, "a's sends to b stall")

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Close(ctx) }()
	select {
	case err := <-done:
		assert.True(t, errors.Is(err, context.DeadlineExceeded), "Close says its bound ended: %v", err)
	case <-time.After(waitLong):
		testNet(t).Heal() // lets the stalled Close finish
		require.FailNow(t, "Close did not return when its context ended")
	}
	// Told to stop, the rest of the shutdown ends without the link healing.
	require.Eventually(t, func() bool {
		select {
		case <-a.closeDone:
			return true
		default:
			return false
		}
	}, waitLong, 10*time.Millisecond, "the shutdown goes on to its end in the background")
}
