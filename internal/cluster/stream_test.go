package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
)

func TestStreamMessagesRoundTripPlainAndSealed(t *testing.T) {
	sealed, err := newSealer(key(7), "lbl")
	require.NoError(t, err)
	for name, s := range map[string]*sealer{"plain": nil, "sealed": sealed} {
		t.Run(name, func(t *testing.T) {
			var wire []byte
			msgs := [][]byte{encodeHello("lbl", "node-a"), {msgAck, 1, 2}, bytes.Repeat([]byte{msgLikes}, 70_000)}
			for _, m := range msgs {
				body, err := s.seal(m)
				require.NoError(t, err)
				wire = appendStreamMessage(wire, body)
			}
			r := bufio.NewReader(bytes.NewReader(wire))
			for _, want := range msgs {
				b, err := readStreamMessage(r, minStreamMessage, nil)
				require.NoError(t, err)
				got, err := s.open(b)
				require.NoError(t, err)
				assert.Equal(t, want, got)
			}
			_, err := readStreamMessage(r, minStreamMessage, nil)
			assert.Error(t, err, "end of stream")
		})
	}
	label, name, err := decodeHello(encodeHello("lbl", "node-a"))
	require.NoError(t, err)
	assert.Equal(t, "lbl", label)
	assert.Equal(t, "node-a", name)
}

func TestSealedMessagesNeedTheKeyAndTheLabel(t *testing.T) {
	s, err := newSealer(key(1), "l")
	require.NoError(t, err)
	b, err := s.seal([]byte("hello"))
	require.NoError(t, err)
	otherKey, _ := newSealer(key(2), "l")
	otherLabel, _ := newSealer(key(1), "m")
	_, err = otherKey.open(b)
	assert.ErrorIs(t, err, errStreamOpen)
	_, err = otherLabel.open(b)
	assert.ErrorIs(t, err, errStreamOpen)
	_, err = s.open(b[:10])
	assert.ErrorIs(t, err, errStreamOpen)
	got, err := s.open(b)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(got))
}

func TestStreamMessageLengthsAreBounded(t *testing.T) {
	for name, in := range map[string][]byte{
		"zero":      {0},
		"over max":  appendStreamMessage(nil, make([]byte, 101)),
		"huge":      {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"truncated": appendStreamMessage(nil, make([]byte, 50))[:20],
	} {
		_, err := readStreamMessage(bufio.NewReader(bytes.NewReader(in)), 100, nil)
		assert.Error(t, err, name)
	}
	for name, in := range map[string][]byte{
		"empty":         nil,
		"version":       {2, 0, 1, 'a'},
		"no name":       {streamVersion, 0, 0},
		"trailing":      append(encodeHello("", "a"), 0),
		"label too big": append([]byte{streamVersion, 0xff, 0x01}, make([]byte, 300)...),
	} {
		_, _, err := decodeHello(in)
		assert.ErrorIs(t, err, errStreamHello, name)
	}
}

// Everything a stream reads comes from outside: no input panics, and no
// message exceeds the bound.
func FuzzStreamMessages(f *testing.F) {
	f.Add(appendStreamMessage(nil, encodeHello("likesd", "a")))
	f.Add(appendStreamMessage(appendStreamMessage(nil, []byte{msgAck, 1}), []byte{msgLikes}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	s, _ := newSealer(key(1), "likesd")
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		for {
			b, err := readStreamMessage(r, 1<<10, nil)
			if err != nil {
				return
			}
			require.LessOrEqual(t, len(b), 1<<10)
			_, _, _ = decodeHello(b)
			_, _ = s.open(b)
		}
	})
}

// At w=2 frames and acks share one connection: the writes are
// acknowledged, a dialed one stream to b and b accepted one, and b sent
// every ack back on it.
func TestFramesAndAcksShareOneStreamPerPeer(t *testing.T) {
	patient := func(c *Config) { c.Writes.Timeout = 5 * time.Second } // a busy machine is slow, not silent
	a := startNode(t, "a", nil, patient)
	b := startNode(t, "b", []string{a.Addr()}, patient)
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 }, waitLong, 10*time.Millisecond)
	for i := range 200 {
		require.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(a, acks.Count(2), "p", fmt.Sprint("u", i)))
	}
	sa := a.Stats()
	assert.Equal(t, uint64(1), sa.StreamsDialed, "one stream from a to b")
	assert.Equal(t, uint64(1), b.Stats().StreamsAccepted)
	assert.Zero(t, sa.StreamResets)
	// AcksStreamed is counted as an ack is written, AcksSent after.
	require.Eventually(t, func() bool {
		sb := b.Stats()
		return sb.AcksSent > 0 && sb.AcksSent == sb.AcksStreamed
	}, waitLong, 10*time.Millisecond, "every ack went back on a's stream")
	assert.Equal(t, 200, b.store.Count("p"))
}

// plainTransport hides everything but memberlist.Transport: a node on it
// takes no streams, as a node of an older version.
type plainTransport struct{ memberlist.Transport }

// A peer that does not advertise streams (an older version during a
// rolling upgrade) gets its frames through memberlist and acknowledges
// them the same way: w=2 is met both ways, and no stream is dialed.
func TestAPeerWithoutStreamsGetsFramesThroughMemberlist(t *testing.T) {
	patient := func(c *Config) { c.Writes.Timeout = 5 * time.Second }
	a := startNode(t, "a", nil, patient)
	old := startNode(t, "old", []string{a.Addr()}, func(c *Config) {
		patient(c)
		c.Transport = plainTransport{c.Transport}
	})
	waitReady(t, a, old)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 && len(old.syncPeers()) == 1 },
		waitLong, 10*time.Millisecond)
	for i := range 20 {
		require.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(a, acks.Count(2), "p", fmt.Sprint("a", i)))
		require.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(old, acks.Count(2), "p", fmt.Sprint("old", i)))
	}
	assert.Zero(t, a.Stats().StreamsDialed+old.Stats().StreamsDialed)
	assert.Zero(t, a.Stats().StreamsAccepted+old.Stats().StreamsAccepted)
	assert.Positive(t, a.Stats().DirectSent)
	assert.Positive(t, old.Stats().DirectSent)
}

// A peer cut off long enough for its breaker to open has its stream reset
// (whatever the stream held was not reaching it); after the heal a fresh
// stream carries the probe, its ack closes the breaker, and w=2 is met on
// it again.
func TestAnOpenedBreakerResetsTheStreamAndAFreshOneCarriesOn(t *testing.T) {
	tweak := func(c *Config) {
		c.Writes.Timeout = 300 * time.Millisecond
		c.Breaker.Cooldown = 2 * time.Second
	}
	a := startNode(t, "a", nil, tweak)
	b := startNode(t, "b", []string{a.Addr()}, tweak)
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return write(a, acks.Count(2), "p", "warm").Replicas == 2 },
		waitLong, 10*time.Millisecond)
	require.Equal(t, uint64(1), a.Stats().StreamsDialed)

	testNet(t).Isolate(b.Addr())
	i := 0
	require.Eventually(t, func() bool {
		i++
		write(a, acks.Level{}, "p", fmt.Sprint("cut", i)) // keeps frames going to b
		return breakerOf(a, "b") == "open" && a.Stats().StreamResets > 0
	}, waitLong, 10*time.Millisecond, "b's breaker opens and its stream is reset")

	testNet(t).Heal()
	require.Eventually(t, func() bool {
		i++
		return write(a, acks.Count(2), "p", fmt.Sprint("healed", i)).Replicas == 2
	}, waitLong, 20*time.Millisecond, "w=2 is met again after the heal")
	assert.GreaterOrEqual(t, a.Stats().StreamsDialed, uint64(2), "on a fresh stream")
	assert.Equal(t, "closed", breakerOf(a, "b"))
}
