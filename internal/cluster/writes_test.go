package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/store"
)

func breakerOf(n *testNode, peer string) string {
	for _, m := range n.Members() {
		if m.Name == peer {
			return m.Breaker
		}
	}
	return ""
}

func threeNodes(t *testing.T, tweak func(*Config)) (a, b, c *testNode) {
	a = startNode(t, "a", nil, tweak)
	b = startNode(t, "b", []string{a.Addr()}, tweak)
	c = startNode(t, "c", []string{a.Addr()}, tweak)
	waitReady(t, a, b, c)
	require.Eventually(t, func() bool {
		return len(a.syncPeers()) == 2 && len(b.syncPeers()) == 2 && len(c.syncPeers()) == 2
	},
		waitLong, 10*time.Millisecond, "every node lists the other two")
	return a, b, c
}

func TestW2IsAcknowledgedByAPeerAndTheLikeIsThere(t *testing.T) {
	a, b, c := threeNodes(t, func(c *Config) { c.Writes.Timeout = 5 * time.Second })
	res := write(a, acks.Level{}, "p", "u1")
	assert.True(t, res.Met(), "default w=2 in a healthy cluster: %+v", res)
	assert.GreaterOrEqual(t, res.Replicas, 2)
	held := 0
	for _, n := range []*testNode{b, c} {
		if n.store.Has("p", "u1") {
			held++
		}
	}
	assert.GreaterOrEqual(t, held, res.Replicas-1, "an acknowledging peer holds the like")

	res = write(a, acks.All, "p", "u2")
	assert.Equal(t, acks.Result{Replicas: 3, Want: 3}, res)
	assert.True(t, b.store.Has("p", "u2") && c.store.Has("p", "u2"))

	// A like already here and acknowledged by all, asked again at w=all:
	// answered from that (repeats.go), not sent again.
	res = write(a, acks.All, "p", "u2")
	assert.Equal(t, acks.Result{Replicas: 3, Want: 3}, res)
}

func TestW2WithOnePeerDownIsAcknowledgedByTheOther(t *testing.T) {
	a, _, c := threeNodes(t, func(c *Config) { c.Writes.Timeout = 5 * time.Second })
	crash(t, c)
	for i := range 20 {
		res := write(a, acks.Level{}, "p", fmt.Sprint("u", i))
		require.True(t, res.Met(), "like %d: %+v", i, res)
	}
}

// With every peer gone, w=2 answers 202 at once: the write timeout here is
// far longer than the test, so an answer proves nobody was waited for.
func TestEveryPeerDownAnswers202AtOnce(t *testing.T) {
	a := startNode(t, "a", nil, func(c *Config) { c.Writes.Timeout = 5 * time.Second })
	b := startNode(t, "b", []string{a.Addr()}, nil)
	waitReady(t, a, b)
	require.True(t, write(a, acks.Level{}, "p", "before").Met())
	crash(t, b)
	require.Eventually(t, func() bool { return stateOf(a, "b") == "dead" }, waitLong, 10*time.Millisecond)

	done := make(chan acks.Result, 1)
	go func() { done <- write(a, acks.Level{}, "p", "after") }()
	select {
	case res := <-done:
		assert.Equal(t, acks.Result{Replicas: 1, Want: 2}, res)
	case <-time.After(4 * time.Second):
		require.Fail(t, "a write with no reachable peer waited for one")
	}
	assert.True(t, write(a, acks.One, "p", "w1").Met(), "w=1 needs nobody")
}

// A peer that stops acknowledging (its acks are cut; our frames still reach
// it) trips its breaker: from then on w=all counts only the others and
// costs no wait. Once its acks flow again a half-open probe closes it.
func TestAPeerThatStopsAcknowledgingTripsItsBreakerAndAProbeBringsItBack(t *testing.T) {
	a, b, _ := threeNodes(t, func(c *Config) {
		c.Writes.Timeout = 300 * time.Millisecond
		c.Breaker.Cooldown = 2 * time.Second
	})
	require.Equal(t, acks.Result{Replicas: 3, Want: 3}, write(a, acks.All, "p", "u0"))
	assert.Equal(t, "closed", breakerOf(a, "b"))

	testNet(t).Cut(b.Addr(), a.Addr())
	i := 0
	require.Eventually(t, func() bool {
		i++
		write(a, acks.Level{}, "p", fmt.Sprint("cut", i)) // keeps frames flowing to b
		return breakerOf(a, "b") == "open"
	}, waitLong, 10*time.Millisecond, "b's breaker opens")
	// The opening is logged and counted just after the state turns open.
	require.Eventually(t, func() bool { return a.logs.count(`"peer":"b"`, "peer breaker open") >= 1 },
		waitLong, 10*time.Millisecond, "the opening is logged")
	require.Eventually(t, func() bool { return a.Stats().BreakerOpened >= 1 }, waitLong, 10*time.Millisecond,
		"the opening is counted")

	// Open, or half-open after the cool-down: either way b is not waited for.
	res := write(a, acks.All, "p", "while-open")
	assert.Equal(t, acks.Result{Replicas: 2, Want: 2}, res, "all is the members whose breaker is closed")

	testNet(t).Heal()
	require.Eventually(t, func() bool {
		i++
		write(a, acks.Level{}, "p", fmt.Sprint("healed", i)) // probes
		return breakerOf(a, "b") == "closed"
	}, waitLong, 10*time.Millisecond, "a probe closes b's breaker")
	require.Eventually(t, func() bool { return write(a, acks.All, "p", fmt.Sprint("after", i)).Replicas == 3 },
		waitLong, 10*time.Millisecond)
	// What b missed while open is repaired.
	require.Eventually(t, func() bool { return b.store.Has("p", "while-open") }, waitLong, 10*time.Millisecond)
}

// A standalone node (no seeds, never saw a peer) acknowledges at w=1 by
// default; asked for w=2 explicitly it answers 202 at once.
func TestAStandaloneNodeDefaultsToOne(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	waitReady(t, a)
	assert.Equal(t, acks.Result{Replicas: 1, Want: 1}, write(a, acks.Level{}, "p", "u"))
	assert.Equal(t, acks.Result{Replicas: 1, Want: 2}, write(a, acks.Count(2), "p", "v"))

	// Given explicitly (a seed started without --join), the level holds
	// before any peer is seen: a restarted seed does not acknowledge alone.
	seed := startNode(t, "seed", nil, func(c *Config) { c.Writes.Explicit = true })
	waitReady(t, seed)
	assert.Equal(t, acks.Result{Replicas: 1, Want: 2}, write(seed, acks.Level{}, "p", "u"))
	assert.Equal(t, acks.Result{Replicas: 1, Want: 2}, write(seed, acks.Quorum, "p", "q"))
}

// A write whose client went away is counted as abandoned, not as a 202
// nobody received.
func TestAWriteWhoseClientLeftIsAbandoned(t *testing.T) {
	a := startNode(t, "a", nil, func(c *Config) { c.Writes.Timeout = 5 * time.Second })
	b := startNode(t, "b", []string{a.Addr()}, nil)
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 }, waitLong, 10*time.Millisecond)
	testNet(t).Cut(b.Addr(), a.Addr()) // b's acks never arrive
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	added, _ := a.store.Like("p", "gone")
	res, _ := a.Replicate(ctx, acks.Level{}, []store.Like{{Post: "p", User: "gone"}}, []bool{added})
	assert.False(t, res.Met())
	st := a.Stats()
	assert.Equal(t, uint64(1), st.WritesAbandoned)
	assert.Zero(t, st.WritesAccepted)
}
