package cluster

import (
	"bufio"
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

// plainSession is what a dialer in plaintext mode may send in one write:
// a session hello under name, then its confirm (unsealed, so it needs
// nothing from the reply).
func plainSession(label, name string) []byte {
	out := appendStreamMessage(nil, sessionHello{label: label, name: name}.encode())
	return appendStreamMessage(out, []byte{sessionConfirm})
}

// dialAs opens a session to n as the node named name under key (nil:
// plaintext), the way a node would.
func dialAs(t *testing.T, n *testNode, key []byte, label, name string) (net.Conn, *session, error) {
	t.Helper()
	c, err := net.Dial("tcp", n.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Write([]byte{streamMagicSession})
	require.NoError(t, err)
	sess, err := dialHandshake(c, bufio.NewReader(c), key, label, name, n.Self(), 5*time.Second, nil)
	return c, sess, err
}

// sendSealed writes msg on an open session.
func sendSealed(t *testing.T, c net.Conn, sess *session, msg []byte) {
	t.Helper()
	body, err := sess.seal(msg)
	require.NoError(t, err)
	_, err = c.Write(appendStreamMessage(nil, body))
	require.NoError(t, err)
}

func likeFrame(from string, origin, seq uint64, l store.Like) []byte {
	fb := newFrameBuilder(4096, msgLikes, from, origin)
	fb.add(seq, l)
	frame, _ := fb.take()
	return frame
}

func TestSessionHelloAndReplyRoundTrip(t *testing.T) {
	id := keyIDOf(key(3))
	want := sessionHello{label: "lbl", name: "node-a", key: id[:]}
	want.nonce[0], want.nonce[31] = 1, 2
	got, err := decodeSessionHello(want.encode())
	require.NoError(t, err)
	assert.Equal(t, want, got)
	plain := sessionHello{label: "", name: "b"}
	got, err = decodeSessionHello(plain.encode())
	require.NoError(t, err)
	assert.Equal(t, plain, got, "plaintext mode: no key id")

	reply := sessionReply{name: "node-b"}
	reply.nonce[5] = 9
	gotReply, err := decodeSessionReply(reply.encode())
	require.NoError(t, err)
	assert.Equal(t, reply, gotReply)

	for name, in := range map[string][]byte{
		"empty":        nil,
		"version 1":    append([]byte{1}, want.encode()[1:]...),
		"no name":      sessionHello{label: "l"}.encode(),
		"short nonce":  want.encode()[:len(want.encode())-1],
		"trailing":     append(want.encode(), 0),
		"key id of 3":  {sessionVersion, 0, 1, 'a', 3, 1, 2, 3},
		"huge label":   append([]byte{sessionVersion, 0xff, 0x01}, make([]byte, 300)...),
		"huge varints": {sessionVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		_, err := decodeSessionHello(in)
		assert.ErrorIs(t, err, errSessionHello, name)
	}
	for name, in := range map[string][]byte{
		"empty":    nil,
		"no name":  sessionReply{}.encode(),
		"trailing": append(reply.encode(), 0),
		"short":    reply.encode()[:10],
	} {
		_, err := decodeSessionReply(in)
		assert.ErrorIs(t, err, errSessionHello, name)
	}
}

// Both ends of a handshake derive the same keys, a different one each
// way; a message opens once, in order, in its own session and direction.
func TestSessionMessagesOpenOnceInOrder(t *testing.T) {
	hello := sessionHello{label: "l", name: "a"}.encode()
	reply := sessionReply{name: "b"}.encode()
	d, err := newSession(key(1), "l", hello, reply, true)
	require.NoError(t, err)
	a, err := newSession(key(1), "l", hello, reply, false)
	require.NoError(t, err)

	m1, err := d.seal([]byte("one"))
	require.NoError(t, err)
	m2, err := d.seal([]byte("two"))
	require.NoError(t, err)
	_, err = a.open(bytes.Clone(m2))
	assert.ErrorIs(t, err, errStreamOpen, "out of order")

	a, _ = newSession(key(1), "l", hello, reply, false)
	got, err := a.open(bytes.Clone(m1))
	require.NoError(t, err)
	assert.Equal(t, "one", string(got))
	_, err = a.open(bytes.Clone(m1))
	assert.ErrorIs(t, err, errStreamOpen, "replayed in its session")

	back, err := a.seal([]byte("ack"))
	require.NoError(t, err)
	got, err = d.open(bytes.Clone(back))
	require.NoError(t, err)
	assert.Equal(t, "ack", string(got))

	// The same first message, sealed by the dialer, never opens as the
	// acceptor's (a reflection), nor in a session of other nonces.
	d2, _ := newSession(key(1), "l", hello, reply, true)
	reflected, _ := newSession(key(1), "l", hello, reply, true)
	m, _ := d2.seal([]byte("x"))
	_, err = reflected.open(bytes.Clone(m))
	assert.ErrorIs(t, err, errStreamOpen, "reflected")
	other := sessionReply{name: "b"}
	other.nonce[0] = 1
	a3, _ := newSession(key(1), "l", hello, other.encode(), false)
	_, err = a3.open(bytes.Clone(m))
	assert.ErrorIs(t, err, errStreamOpen, "another session")
	for _, k := range [][]byte{key(2)} {
		a4, _ := newSession(k, "l", hello, reply, false)
		_, err = a4.open(bytes.Clone(m))
		assert.ErrorIs(t, err, errStreamOpen, "another key")
	}
	a5, _ := newSession(key(1), "m", hello, reply, false)
	_, err = a5.open(bytes.Clone(m))
	assert.ErrorIs(t, err, errStreamOpen, "another label")
}

func TestKeyIDsNameKeysWithoutThem(t *testing.T) {
	assert.Equal(t, keyIDOf(key(1)), keyIDOf(key(1)))
	assert.NotEqual(t, keyIDOf(key(1)), keyIDOf(key(2)))
	id := keyIDOf(key(1))
	assert.False(t, bytes.Contains(key(1), id[:]))
}

// The handshake's decoders read what anyone may send: no input panics.
func FuzzSessionHello(f *testing.F) {
	id := keyIDOf(key(1))
	f.Add(sessionHello{label: "likesd", name: "a", key: id[:]}.encode())
	f.Add(sessionHello{label: "likesd", name: "a"}.encode())
	f.Add([]byte{sessionVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := decodeSessionHello(in)
		if err != nil {
			return
		}
		require.LessOrEqual(t, len(h.name), maxStreamName)
		require.LessOrEqual(t, len(h.label), 255)
		require.True(t, len(h.key) == 0 || len(h.key) == keyIDLen)
		require.Equal(t, in, h.encode(), "one encoding per hello")
	})
}

func FuzzSessionReply(f *testing.F) {
	f.Add(sessionReply{name: "b"}.encode())
	f.Add([]byte{sessionVersion, 0x80})
	hello := sessionHello{label: "l", name: "a"}.encode()
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := decodeSessionReply(in)
		if err == nil {
			require.Equal(t, in, r.encode(), "one encoding per reply")
		}
		// Whatever the reply, a session derived from it opens nothing it
		// did not seal.
		d, err := newSession(key(1), "l", hello, in, true)
		if err != nil {
			return
		}
		_, err = d.open(bytes.Clone(in))
		require.Error(t, err)
	})
}

// A stream's hello is checked like memberlist's own traffic: without the
// key, under a key the node does not hold, with another label, or a
// version 1 hello from a name that is no member, nothing is applied, and
// each refusal is counted by its reason. The control (a session under the
// node's key) is applied.
func TestStreamsFromIntrudersAreRefused(t *testing.T) {
	a := startNode(t, "a", nil, func(c *Config) { c.SecretKey = key(1) })
	waitReady(t, a)
	label := a.cfg.Label
	frame := func(user string) []byte { return likeFrame("x", 99, 1, store.Like{Post: "p", User: user}) }

	_, _, err := dialAs(t, a, nil, label, "x")
	assert.Error(t, err, "no key")
	_, _, err = dialAs(t, a, key(2), label, "x")
	assert.Error(t, err, "a key a does not hold")
	_, _, err = dialAs(t, a, key(1), "other", "x")
	assert.Error(t, err, "another label")
	// A version 1 hello sealed under the right key, from a name that is no
	// member: refused, as a replayed one would be.
	s, err := newSealer(key(1), label)
	require.NoError(t, err)
	out := []byte{streamMagic}
	for _, m := range [][]byte{encodeHello(label, "x"), frame("v1")} {
		body, err := s.seal(m)
		require.NoError(t, err)
		out = appendStreamMessage(out, body)
	}
	_, closed := openStreamMagic(t, a.Addr(), out)

	c, sess, err := dialAs(t, a, key(1), label, "x")
	require.NoError(t, err, "the friend")
	sendSealed(t, c, sess, frame("friend"))
	require.Eventually(t, func() bool {
		r := a.Stats().HandshakesRefused
		return a.store.Has("p", "friend") && isClosed(closed) &&
			r == HandshakeRefusals{Keying: 1, UnknownKey: 1, Label: 1, Downgrade: 1}
	}, waitLong, 10*time.Millisecond, "%+v", a.Stats().HandshakesRefused)
	assert.Equal(t, 1, a.logs.count("stream refused"), "one line for a burst (the rest are counted)")
	assert.Equal(t, 1, a.store.Count("p"), "only the friend's like")
	assert.Zero(t, a.Stats().DecodeErrors)
}

// openStreamMagic is openStream with out's own first byte.
func openStreamMagic(t *testing.T, addr string, out []byte) (net.Conn, <-chan struct{}) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, _ = c.Write(out)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	return c, closed
}

// A session after its handshake takes its peer's own frames only: a frame
// in another node's name ends it, and nothing of it is applied.
func TestASessionCarriesOnlyItsPeersFrames(t *testing.T) {
	a := startNode(t, "a", nil, func(c *Config) { c.SecretKey = key(1) })
	waitReady(t, a)
	c, sess, err := dialAs(t, a, key(1), a.cfg.Label, "x")
	require.NoError(t, err)
	sendSealed(t, c, sess, likeFrame("y", 98, 1, store.Like{Post: "p", User: "y"}))
	_, err = c.Read(make([]byte, 1))
	assert.Error(t, err, "a closed the session")
	assert.Eventually(t, func() bool { return a.Stats().DecodeErrors == 1 }, waitLong, 10*time.Millisecond)
	assert.False(t, a.store.Has("p", "y"))
}

// A keyring overrides SecretKey; a node without it (SecretKey alone) gets
// a one-key keyring that memberlist shares.
func TestAKeyringOverridesTheSecretKey(t *testing.T) {
	ring, err := memberlist.NewKeyring([][]byte{key(2)}, key(3))
	require.NoError(t, err)
	a := startNode(t, "a", nil, func(c *Config) { c.SecretKey = key(1); c.Keyring = ring })
	b := startNode(t, "b", []string{a.Addr()}, func(c *Config) { c.SecretKey = key(3) })
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 && len(b.syncPeers()) == 1 },
		waitLong, 10*time.Millisecond, "b joins under a's primary key")
	assert.Same(t, ring, a.keys.ring)
	assert.Equal(t, [][]byte{key(3)}, b.keys.ring.GetKeys())

	c := testConfig()
	c.NodeName = "c"
	c.Keyring = &memberlist.Keyring{}
	assert.ErrorIs(t, c.Validate(), ErrConfig, "a keyring without a key")
}
