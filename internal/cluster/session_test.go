package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
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

// memberX starts a node called x, at the address the tests dial from, in
// a's cluster under key(1): a keyed node takes a session only in the name
// of a member at the connection's address.
func memberX(t *testing.T, a *testNode) {
	t.Helper()
	x := startNode(t, "x", []string{a.Addr()}, func(c *Config) { c.SecretKey = key(1) })
	waitReady(t, x)
	require.Eventually(t, func() bool { _, ok := a.members.member("x"); return ok }, waitLong, 10*time.Millisecond)
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
// key, under a key the node does not hold, with another label, under the
// key in the name of no member, or a version 1 hello from a name that is
// no member, nothing is applied, and
// each refusal is counted by its reason. The control (a session under the
// node's key) is applied.
func TestStreamsFromIntrudersAreRefused(t *testing.T) {
	a := startNode(t, "a", nil, func(c *Config) { c.SecretKey = key(1) })
	waitReady(t, a)
	memberX(t, a)
	label := a.cfg.Label
	frame := func(user string) []byte { return likeFrame("x", 99, 1, store.Like{Post: "p", User: user}) }

	_, _, err := dialAs(t, a, nil, label, "x")
	assert.Error(t, err, "no key")
	_, _, err = dialAs(t, a, key(2), label, "x")
	assert.Error(t, err, "a key a does not hold")
	_, _, err = dialAs(t, a, key(1), "other", "x")
	assert.Error(t, err, "another label")
	_, _, err = dialAs(t, a, key(1), label, "nobody")
	assert.Error(t, err, "no member")
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
			r == HandshakeRefusals{Keying: 1, UnknownKey: 1, Label: 1, Address: 1, Downgrade: 1}
	}, waitLong, 10*time.Millisecond, "%+v", a.Stats().HandshakesRefused)
	assert.Equal(t, 1, a.logs.count("stream refused"), "one line for a burst (the rest are counted)")
	assert.Equal(t, 1, a.store.Count("p"), "only the friend's like")
	assert.Zero(t, a.Stats().DecodeErrors)
}

// openStreamMagic is openStream with out's own first byte.
func openStreamMagic(t *testing.T, addr string, out []byte) (net.Conn, <-chan struct{}) {
	t.Helper()
	c, closed, _ := dialWrite(t, addr, out)
	return c, closed
}

// A session after its handshake takes its peer's own frames only: a frame
// in another node's name ends it, and nothing of it is applied.
func TestASessionCarriesOnlyItsPeersFrames(t *testing.T) {
	a := startNode(t, "a", nil, func(c *Config) { c.SecretKey = key(1) })
	waitReady(t, a)
	memberX(t, a)
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

// outbound is the streams n has open to its peers now, by peer.
func outbound(n *testNode) map[string]*stream {
	n.sendersMu.Lock()
	defer n.sendersMu.Unlock()
	out := map[string]*stream{}
	for name, p := range n.senders {
		if s := p.out.Load(); s != nil && !s.closed.Load() {
			out[name] = s
		}
	}
	return out
}

// During a rolling upgrade a node of the previous version (stream version
// 1 only) and new ones replicate both ways at w=all: the new nodes speak
// version 1 with it and sessions with each other. A version 1 hello under
// a new node's name (what a recorded one would be) is refused; under the
// old node's name it is taken, as that version always did.
func TestARollingUpgradeMixesStreamVersionsBothWays(t *testing.T) {
	a := startNode(t, "a", nil, keyed)
	old := startNode(t, "old", []string{a.Addr()}, func(c *Config) { keyed(c); c.streamsV1Only = true })
	b := startNode(t, "b", []string{a.Addr()}, keyed)
	waitReady(t, a, old, b)
	require.Eventually(t, func() bool {
		return len(a.syncPeers()) == 2 && len(b.syncPeers()) == 2 && len(old.syncPeers()) == 2
	}, waitLong, 10*time.Millisecond)
	for i := range 10 {
		for _, n := range []*testNode{a, old, b} {
			require.Equal(t, acks.Result{Replicas: 3, Want: 3}, write(n, acks.All, "p", fmt.Sprint(n.Self(), i)),
				"%s's write %d", n.Self(), i)
		}
	}
	for _, n := range []*testNode{a, old, b} {
		for peer, s := range outbound(n) {
			assert.Equal(t, n != old && peer != "old", s.v2, "%s → %s is a session", n.Self(), peer)
		}
		assert.Len(t, outbound(n), 2, n.Self())
		assert.Zero(t, n.Stats().HandshakesRefused, n.Self())
	}

	v1 := func(name, user string) []byte {
		s, err := newSealer(key(1), b.cfg.Label)
		require.NoError(t, err)
		out := []byte{streamMagic}
		for _, m := range [][]byte{encodeHello(b.cfg.Label, name), likeFrame(name, 7, 1, store.Like{Post: "q", User: user})} {
			body, err := s.seal(m)
			require.NoError(t, err)
			out = appendStreamMessage(out, body)
		}
		return out
	}
	_, closed := openStreamMagic(t, b.Addr(), v1("a", "claims-a"))
	openStreamMagic(t, b.Addr(), v1("old", "claims-old"))
	require.Eventually(t, func() bool { return isClosed(closed) && b.store.Has("q", "claims-old") },
		waitLong, 10*time.Millisecond)
	assert.Equal(t, HandshakeRefusals{Downgrade: 1}, b.Stats().HandshakesRefused)
	assert.False(t, b.store.Has("q", "claims-a"))
}

// The key is rotated while likes flow at w=2 on three nodes: the new key
// added on every node, used on each in turn, the old one removed from
// every node. Every acknowledged like is on every node at the end (in
// fact every like), and every session runs under the new key.
func TestKeyRotationWhileLikesFlow(t *testing.T) {
	oldKey, newKey := key(1), key(2)
	var rings []*memberlist.Keyring
	tweak := func(c *Config) {
		ring, err := memberlist.NewKeyring(nil, oldKey)
		require.NoError(t, err)
		rings = append(rings, ring) // startNode runs tweak on the test's goroutine
		c.Keyring = ring
		c.Writes.Timeout = 5 * time.Second
	}
	a, b, c := threeNodes(t, tweak)
	nodes := []*testNode{a, b, c}

	type written struct {
		user string
		met  bool
	}
	var mu sync.Mutex
	wrote := map[string][]written{}
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for _, n := range nodes {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				user := fmt.Sprint(n.Self(), "-", i)
				res := write(n, acks.Count(2), "p", user)
				mu.Lock()
				wrote[n.Self()] = append(wrote[n.Self()], written{user, res.Met()})
				mu.Unlock()
			}
		}()
	}
	// progress waits until every node had more writes met.
	progress := func(step string) {
		t.Helper()
		mu.Lock()
		from := map[string]int{}
		for name, w := range wrote {
			from[name] = len(w)
		}
		mu.Unlock()
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, n := range nodes {
				met := 0
				for _, w := range wrote[n.Self()][from[n.Self()]:] {
					if w.met {
						met++
					}
				}
				if met < 5 {
					return false
				}
			}
			return true
		}, waitLong, 10*time.Millisecond, "writes met after %s", step)
	}
	progress("start")
	for _, r := range rings {
		require.NoError(t, r.AddKey(newKey))
	}
	progress("adding the new key")
	for i, r := range rings {
		require.NoError(t, r.UseKey(newKey))
		progress(fmt.Sprint("using it on ", nodes[i].Self()))
	}
	for _, r := range rings {
		require.NoError(t, r.RemoveKey(oldKey))
	}
	progress("removing the old key")
	newID := keyIDOf(newKey)
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			out := outbound(n)
			if len(out) != 2 {
				return false
			}
			for _, s := range out {
				if s.key != newID {
					return false
				}
			}
			n.inbound.mu.Lock()
			for _, list := range n.inbound.byName {
				for _, s := range list {
					if !s.closed.Load() && s.key != newID {
						n.inbound.mu.Unlock()
						return false
					}
				}
			}
			n.inbound.mu.Unlock()
		}
		return true
	}, waitLong, 10*time.Millisecond, "every session under the new key")
	progress("the sessions moved")
	close(stop)
	writers.Wait()

	mu.Lock()
	defer mu.Unlock()
	met, total := 0, 0
	for _, ws := range wrote {
		for _, w := range ws {
			total++
			if w.met {
				met++
			}
		}
	}
	t.Logf("%d writes, %d met at w=2", total, met)
	for _, n := range nodes {
		require.Eventually(t, func() bool { return n.store.Count("p") == total }, waitLong, 10*time.Millisecond,
			"%s holds every like", n.Self())
		for _, ws := range wrote {
			for _, w := range ws {
				if w.met {
					require.True(t, n.store.Has("p", w.user), "%s lost acknowledged like %s", n.Self(), w.user)
				}
			}
		}
	}
	for _, n := range nodes {
		assert.Zero(t, n.Stats().HandshakesRefused, n.Self())
	}
}

// A frame through memberlist in the name of a peer that sends its own on
// its session is not that peer's: it is dropped, counted, never applied
// nor acknowledged.
func TestAFrameThroughMemberlistInASessionPeersNameIsDropped(t *testing.T) {
	a := startNode(t, "a", nil, keyed)
	c := startNode(t, "c", []string{a.Addr()}, keyed)
	waitReady(t, a, c)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 && len(c.syncPeers()) == 1 },
		waitLong, 10*time.Millisecond)
	m, ok := c.members.member("a")
	require.True(t, ok)
	require.NoError(t, c.ml.SendReliable(m.node(), likeFrame("c", c.origin, 1<<40, store.Like{Post: "p", User: "sideways"})))
	require.Eventually(t, func() bool { return a.Stats().FramesRefused == 1 }, waitLong, 10*time.Millisecond)
	assert.False(t, a.store.Has("p", "sideways"))
	assert.Zero(t, a.Stats().FramesReceived)
}

// Anti-entropy rides the sessions once they are open (each node's own, to
// the other), and still repairs: a like only a holds (merged into its store, never sent
// on the fast path) reaches b.
func TestAntiEntropyRidesTheSessions(t *testing.T) {
	a := startNode(t, "a", nil, keyed)
	b := startNode(t, "b", []string{a.Addr()}, keyed)
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return len(a.syncPeers()) == 1 && len(b.syncPeers()) == 1 },
		waitLong, 10*time.Millisecond)
	require.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(a, acks.Count(2), "p", "a"))
	require.Equal(t, acks.Result{Replicas: 2, Want: 2}, write(b, acks.Count(2), "p", "b"))
	before := [2]uint64{a.Stats().SyncStreamed, b.Stats().SyncStreamed}
	a.store.Merge([]store.Like{{Post: "q", User: "only-a"}})
	require.Eventually(t, func() bool {
		return b.store.Has("q", "only-a") && a.Stats().SyncStreamed > before[0] && b.Stats().SyncStreamed > before[1]
	}, waitLong, 10*time.Millisecond)
	assert.Zero(t, a.Stats().DecodeErrors+b.Stats().DecodeErrors)
}
