package cluster

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Streams: the direct fast path keeps one TCP connection open to each peer,
// on memberlist's own port, for its frames; the peer sends its acks back on
// the same connection. memberlist's SendReliable dials a connection per
// message: at w=2 that was one per batch and one per ack, and the dials
// were 29% of a node's CPU (docs/benchmarks.md, "Write levels").
//
// The dialer owns a stream's life: it resets the stream when a send hung
// through an outage or the peer's breaker opens (on real TCP writes go
// into the socket's buffer while a partitioned or stopped peer reads
// nothing: missing acks are what tell), and a reset ends both directions,
// so acks never sit in a connection nobody watches. Anything unsent is
// left to anti-entropy, as a batch dropped from a queue is.
//
// A peer says in its member meta whether it takes streams (metaStreams)
// and whether they are sessions (metaSessions); one that takes none (an
// older version) gets its batches through memberlist, a connection each,
// as before.
//
// On the wire a stream opens with a magic byte no memberlist stream
// begins with (its message types are below 20; a label is 244), so the
// listener tells them apart by the first byte (muxTransport):
// streamMagicSession for version 2, streamMagic for version 1. Then come
// messages both ways, each a uvarint length and the message.
//
// Version 2, between nodes of this version, is a session (session.go): a
// handshake with a nonce from each side proves, with a key, that both
// hold a key of the cluster's keyring for this connection, and gives each
// direction its own key; every message after it is sealed with AES-GCM
// under its sequence number. So a recorded hello, frame or ack played
// again is refused. One key is shared by the cluster, so the handshake
// proves that the other end holds it, not which node it is: the acceptor
// takes a session only in the name of a member at the connection's
// address, and the dialer only from the node it dialed at the member's
// address. A stream's peer is that key holder at that address: its acks
// count for that peer whatever name they carry, and frames on it must be
// that peer's. Anti-entropy messages to a peer that speaks sessions ride
// the session this node opened to it, dialed for them when the fast path
// has none open (Node.sendTo), and are read as its peer's; through
// memberlist they are refused (Node.handle). Without a key the handshake
// still runs, unsealed, and authenticates nothing (plaintext mode, as
// memberlist's own).
//
// Version 1 is the previous version's, kept for rolling upgrades: a hello
// (version, label, the dialer's node name), then the bytes of memberlist
// user messages (msgLikes one way, msgAck the other), each sealed with
// AES-GCM under a random nonce and a key derived from the cluster's.
// Nothing in it is fresh, so a recorded hello or frame could be played
// again: this node dials version 1 only to a peer whose meta does not say
// metaSessions, and takes a version 1 hello only under the name of such a
// member.

const (
	streamMagic   byte = 0xC5
	streamVersion byte = 1
	// maxStreamName bounds the node name in a hello.
	maxStreamName = 1024
	// minStreamMessage is the least bound on one message; a node's bound is
	// this or its DirectBatchBytes and some, whichever is larger.
	minStreamMessage = 8 << 20
)

var (
	errStreamMessage = errors.New("cluster: stream message length out of bounds")
	errStreamHello   = errors.New("cluster: bad stream hello")
	errStreamOpen    = errors.New("cluster: stream message fails authentication")
	// errStreamReset is what a write returns when this node reset the
	// stream under it (a stall, a breaker opening, shutdown): the peer is
	// not to blame.
	errStreamReset = errors.New("cluster: stream reset")
	// errBreakerReset is what a write returns when the peer's breaker
	// opened under it: the write hung, which is the peer's (or the
	// network's) failure.
	errBreakerReset = errors.New("cluster: stream reset: the peer's breaker opened")
	errMuxClosed    = errors.New("cluster: transport shut down")
	// errPeerClosed is what a write returns when the peer ended the
	// stream under it: a failure, as a refused connection is.
	errPeerClosed = errors.New("cluster: stream closed by the peer")
)

// maxHello bounds the first message, read before anything is known of the
// dialer: a name, a label and the seal.
const maxHello = 2048

// streamIdle is how long an accepted stream may stay silent between
// messages before it is closed (its dialer opens another when it has
// frames again): a peer that went away without a FIN or RST holds no
// goroutine for long. It is long because a quiet peer is normal, and a
// redial costs a connection and a hello; what a silent stream holds is
// its goroutine and read buffer, and MaxStreams bounds how many. A message
// once begun has TCPTimeout to arrive whole, and the whole handshake, from
// the magic byte, as long.
const streamIdle = 2 * time.Minute

// streamLogEvery is the least time between two log lines of one kind about
// streams refused or cut: a flood of connections makes as many events,
// counted in the Stats, not a flood of lines.
const streamLogEvery = 10 * time.Second

// streamReadChunk is the first buffer of a message being read: no larger
// than the bufio.Reader a stream holds anyway.
const streamReadChunk = 4 << 10

// readStreamMessage reads one message of at most max bytes. Its buffer
// starts at streamReadChunk and doubles only when full, so it is never
// more than twice what has arrived: a length announced and not sent holds
// little. held, when not nil, counts the buffer while the message is read.
func readStreamMessage(r *bufio.Reader, max int, held *atomic.Int64) ([]byte, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if size == 0 || size > uint64(max) {
		return nil, fmt.Errorf("%w: %d", errStreamMessage, size)
	}
	n := int(size)
	b := make([]byte, 0, min(n, streamReadChunk))
	if held != nil {
		defer func() { held.Add(-int64(cap(b))) }()
		held.Add(int64(cap(b)))
	}
	for len(b) < n {
		if len(b) == cap(b) {
			grown := make([]byte, len(b), min(n, 2*cap(b)))
			copy(grown, b)
			if held != nil {
				held.Add(int64(cap(grown) - cap(b)))
			}
			b = grown
		}
		k, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+k]
		if err != nil && len(b) < n {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return b, nil
}

// appendStreamMessage appends msg with its length.
func appendStreamMessage(dst, msg []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(msg)))
	return append(dst, msg...)
}

// encodeHello is the hello's body: version, label, name.
func encodeHello(label, name string) []byte {
	b := []byte{streamVersion}
	b = binary.AppendUvarint(b, uint64(len(label)))
	b = append(b, label...)
	b = binary.AppendUvarint(b, uint64(len(name)))
	return append(b, name...)
}

// decodeHello returns the label and the dialer's name of a hello's body.
func decodeHello(b []byte) (label, name string, err error) {
	if len(b) < 1 || b[0] != streamVersion {
		return "", "", fmt.Errorf("%w: version", errStreamHello)
	}
	b = b[1:]
	str := func(limit int) (string, bool) {
		k, n := binary.Uvarint(b)
		if n <= 0 || k > uint64(limit) || uint64(len(b)-n) < k {
			return "", false
		}
		s := string(b[n : n+int(k)])
		b = b[n+int(k):]
		return s, true
	}
	var ok bool
	if label, ok = str(255); !ok {
		return "", "", fmt.Errorf("%w: label", errStreamHello)
	}
	if name, ok = str(maxStreamName); !ok || name == "" || len(b) != 0 {
		return "", "", fmt.Errorf("%w: name", errStreamHello)
	}
	return label, name, nil
}

// sealer seals and opens version 1 stream messages under one of the
// cluster's keys; a nil sealer leaves them plain.
type sealer struct {
	aead cipher.AEAD
	aad  []byte // the label
}

func newSealer(key []byte, label string) (*sealer, error) {
	if len(key) == 0 {
		return nil, nil
	}
	// The stream's key is derived from the cluster's, so that a sealed
	// stream message is never also a valid memberlist message.
	key, err := hkdf.Key(sha256.New, key, nil, "likesd stream v1", len(key))
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, aad: []byte(label)}, nil
}

// newGCM is AES-GCM under key (16, 24 or 32 bytes).
func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (s *sealer) seal(msg []byte) ([]byte, error) {
	if s == nil {
		return msg, nil
	}
	out := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(msg)+s.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return s.aead.Seal(out, out, msg, s.aad), nil
}

func (s *sealer) open(b []byte) ([]byte, error) {
	if s == nil {
		return b, nil
	}
	k := s.aead.NonceSize()
	if len(b) < k+s.aead.Overhead() {
		return nil, errStreamOpen
	}
	msg, err := s.aead.Open(nil, b[:k], b[k:], s.aad)
	if err != nil {
		return nil, errStreamOpen
	}
	return msg, nil
}

// streamCodec seals and opens a stream's messages: a *sealer (version 1)
// or a *session (version 2).
type streamCodec interface {
	seal(msg []byte) ([]byte, error)
	open(b []byte) ([]byte, error)
}

// stream is one open connection: writes are serialized and bounded by a
// deadline; one goroutine reads.
type stream struct {
	conn  net.Conn
	codec streamCodec
	max   int
	peer  string        // the other end's node name: with a key, a version 2 stream's is authenticated
	held  *atomic.Int64 // counts the buffer of a message being read; may be nil
	v2    bool          // a session (session.go)
	key   keyID         // a keyed session's key

	wmu    sync.Mutex
	wbuf   []byte
	closed atomic.Bool
	reason atomic.Pointer[error] // why this node reset it, if it did
}

func newStream(conn net.Conn, codec streamCodec, max int, peer string) *stream {
	return &stream{conn: conn, codec: codec, max: max, peer: peer}
}

// write sends msg within timeout. A failed write closes the stream.
func (s *stream) write(msg []byte, timeout time.Duration) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Load() {
		return s.resetReason()
	}
	// Sealed under the lock: a session's nonces follow the order of writes.
	body, err := s.codec.seal(msg)
	if err != nil {
		if s.closed.CompareAndSwap(false, true) {
			_ = s.conn.Close()
		}
		return err
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
	s.wbuf = appendStreamMessage(s.wbuf[:0], body)
	if _, err := s.conn.Write(s.wbuf); err != nil {
		if !s.closed.CompareAndSwap(false, true) {
			return s.resetReason()
		}
		_ = s.conn.Close()
		return err
	}
	if cap(s.wbuf) > 64<<10 { // a bulk frame's buffer is not kept
		s.wbuf = nil
	}
	return nil
}

// read returns the next message, opened.
func (s *stream) read(r *bufio.Reader) ([]byte, error) {
	b, err := readStreamMessage(r, s.max, s.held)
	if err != nil {
		return nil, err
	}
	return s.codec.open(b)
}

// close resets the stream: a write in progress returns errStreamReset.
func (s *stream) close() { s.reset(errStreamReset) }

// reset closes the stream; a write in progress returns reason. What the
// stream still buffers is discarded (a TCP reset, not a FIN): it is left
// to repair, and must not reach a peer that comes back long after.
func (s *stream) reset(reason error) bool {
	s.reason.CompareAndSwap(nil, &reason)
	if s.closed.CompareAndSwap(false, true) {
		if tc, ok := s.conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = s.conn.Close()
		return true
	}
	return false
}

// finish closes the stream gracefully (a FIN): what it buffers still goes.
func (s *stream) finish() {
	s.reason.CompareAndSwap(nil, &errStreamReset)
	if s.closed.CompareAndSwap(false, true) {
		_ = s.conn.Close()
	}
}

// resetReason is why the stream was closed under a write.
func (s *stream) resetReason() error {
	if r := s.reason.Load(); r != nil {
		return *r
	}
	return errStreamReset
}

// muxTransport is memberlist's transport with likesd's streams taken out
// of its listener: a stream that begins with streamMagic goes to accept,
// every other to memberlist, unchanged. It owns every stream it accepted
// or dialed and the goroutines that read them: its Shutdown (memberlist's,
// on Close or a crash in tests) closes them all and waits.
type muxTransport struct {
	memberlist.NodeAwareTransport
	streams     chan net.Conn
	accept      func(net.Conn, byte, time.Time) // with the stream's magic byte and its handshake's deadline
	sessions    bool                            // takes version 2 streams; false leaves their byte to memberlist (a node of version 1)
	sortTimeout time.Duration
	stop        chan struct{}
	stopOnce    sync.Once

	mu    sync.Mutex // guards conns and down
	conns map[net.Conn]struct{}
	down  bool
	wg    sync.WaitGroup
}

func newMuxTransport(inner memberlist.NodeAwareTransport, sortTimeout time.Duration, sessions bool, accept func(net.Conn, byte, time.Time)) *muxTransport {
	t := &muxTransport{
		NodeAwareTransport: inner, streams: make(chan net.Conn), accept: accept, sessions: sessions,
		sortTimeout: sortTimeout, stop: make(chan struct{}), conns: map[net.Conn]struct{}{},
	}
	t.wg.Add(1)
	go t.run()
	return t
}

// StreamCh is the streams that are memberlist's.
func (t *muxTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *muxTransport) run() {
	defer t.wg.Done()
	for {
		select {
		case <-t.stop:
			return
		case c := <-t.NodeAwareTransport.StreamCh():
			if !t.track(c) {
				_ = c.Close()
				continue
			}
			t.wg.Add(1)
			go t.sort(c)
		}
	}
}

// sort reads a stream's first byte and hands it on; a likesd stream is
// then served on this goroutine until it closes. The deadline for the
// first byte is the likesd handshake's too: one deadline, from the
// connection's accept, covers the magic byte, the hello and the confirm.
func (t *muxTransport) sort(c net.Conn) {
	defer t.wg.Done()
	var first [1]byte
	deadline := time.Now().Add(t.sortTimeout)
	_ = c.SetReadDeadline(deadline)
	if _, err := io.ReadFull(c, first[:]); err != nil {
		t.release(c)
		_ = c.Close()
		return
	}
	if first[0] == streamMagic || (first[0] == streamMagicSession && t.sessions) {
		defer func() { t.release(c); _ = c.Close() }()
		t.accept(c, first[0], deadline)
		return
	}
	t.release(c) // memberlist closes its own
	select {
	case t.streams <- &prefixedConn{Conn: c, first: first[0]}:
	case <-t.stop:
		_ = c.Close()
	}
}

// dial opens a likesd stream to addr, its magic byte already written.
func (t *muxTransport) dial(addr string, timeout time.Duration, magic byte) (net.Conn, error) {
	c, err := t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
	if err != nil {
		return nil, err
	}
	if !t.track(c) {
		_ = c.Close()
		return nil, errMuxClosed
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{magic}); err != nil {
		t.release(c)
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// serve runs fn on a goroutine the transport waits for; c is closed and
// forgotten when fn returns.
func (t *muxTransport) serve(c net.Conn, fn func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() { t.release(c); _ = c.Close() }()
		fn()
	}()
	return true
}

func (t *muxTransport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *muxTransport) release(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// Shutdown closes every likesd stream, waits for their readers, and shuts
// the transport under it.
func (t *muxTransport) Shutdown() error {
	t.closeAll()
	// run keeps draining the listener (closing what arrives) until the
	// transport under it has shut: its listener blocks handing over a
	// stream, and its Shutdown waits for the listener.
	err := t.NodeAwareTransport.Shutdown()
	t.detach()
	return err
}

// detach stops the mux's goroutines, leaving the transport under it to its
// owner (a failed start with a caller's transport).
func (t *muxTransport) detach() {
	t.closeAll()
	t.stopOnce.Do(func() { close(t.stop) })
	t.wg.Wait()
}

// closeAll closes every stream and refuses new ones.
func (t *muxTransport) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.down = true
	for c := range t.conns {
		_ = c.Close()
	}
}

// prefixedConn gives back the byte the mux read to sort it.
type prefixedConn struct {
	net.Conn
	first byte
	read  bool
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if !c.read && len(p) > 0 {
		c.read = true
		p[0] = c.first
		return 1, nil
	}
	return c.Conn.Read(p)
}

// newNetTransport is what memberlist.Create makes when given no transport,
// made here so that it can be wrapped: a NetTransport on the bind address,
// with a free port when the port is 0.
func newNetTransport(bindAddr string, bindPort int, logger *log.Logger) (*memberlist.NetTransport, error) {
	var err error
	for range 10 { // a free port may be taken between its TCP and UDP binds
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{bindAddr}, BindPort: bindPort, Logger: logger,
		})
		if err == nil {
			return nt, nil
		}
		if bindPort != 0 {
			break
		}
	}
	return nil, err
}

// inbound is the streams peers opened to this node: the handshakes in
// progress, bounded by MaxHandshakes (past it the oldest is closed); the
// streams whose handshake is done, bounded by MaxStreams (past it a new
// one is refused), and by the name their hello claims, bounded by
// MaxStreamsPerPeer (past it the peer's oldest from the same address is
// closed). A connection takes a MaxStreams place only once it proved the
// key (with one): anyone can open one that never finishes, and such ones
// only displace each other. Acks to a peer go back on its newest open
// stream. A peer has one, but two may overlap a moment (a reset and a new
// dial, or two dials racing), and one whose end the network lost stays
// until streamIdle: the newest is the peer as it is now, so it is the one
// kept. With a key, a session's or a version 1 stream's name is its
// member's at that member's address; a version 1 hello is not fresh, so
// an old peer's stream can be displaced by its recorded hello played
// again from its address.
type inbound struct {
	mu      sync.Mutex
	open    int                  // streams whose handshake is done, not yet ended
	byName  map[string][]*stream // oldest first
	pending []*handshake         // handshakes in progress, oldest first

	refused   atomic.Uint64 // new streams closed: MaxStreams were open
	cut       atomic.Uint64 // handshakes closed for a newer one: MaxHandshakes were in progress
	displaced atomic.Uint64 // old streams closed: their peer's newest made MaxStreamsPerPeer+1
	timedOut  atomic.Uint64 // streams closed: a hello or a message not whole within TCPTimeout
	// handshakes counts handshakes refused, both ways, by reason.
	handshakes refusedCounters
	// buffered is the buffers of stream messages being read, both ways.
	buffered atomic.Int64

	refusedLog, displacedLog, helloLog, timeoutLog, cutLog logEvery
}

// handshake is a connection whose handshake is in progress.
type handshake struct {
	conn net.Conn
	cut  bool // closed for a newer one; guarded by inbound.mu
}

// begin lists c's handshake, closing the oldest in progress when limit
// are: the flood a peer's handshake may meet is of connections that never
// finish, and a real peer's finishes in a round trip, so the oldest is the
// one least likely to be real. It reports whether one was cut.
func (in *inbound) begin(c net.Conn, limit int) (*handshake, bool) {
	h := &handshake{conn: c}
	in.mu.Lock()
	var oldest *handshake
	if len(in.pending) >= limit {
		oldest = in.pending[0]
		oldest.cut = true
		in.pending = slices.Delete(in.pending, 0, 1)
	}
	in.pending = append(in.pending, h)
	in.mu.Unlock()
	if oldest != nil {
		_ = oldest.conn.Close() // its handshake's reads and writes fail
		return h, true
	}
	return h, false
}

// end takes h off the handshakes in progress and reports whether it was
// cut meanwhile.
func (in *inbound) end(h *handshake) (cut bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.pending = slices.DeleteFunc(in.pending, func(x *handshake) bool { return x == h })
	return h.cut
}

// admit takes one of limit places for a stream just accepted; false when
// none is left.
func (in *inbound) admit(limit int) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.open >= limit {
		return false
	}
	in.open++
	return true
}

// release gives back an admitted stream's place once it ended.
func (in *inbound) release() {
	in.mu.Lock()
	in.open--
	in.mu.Unlock()
}

// add lists s under its peer's name and returns the peer's streams from
// s's address past its newest perPeer, oldest first, for the caller to
// close. A stream displaces only streams from its own address: one in a
// member's name from elsewhere is refused with a key (acceptSession), and
// without one must not close the member's own.
func (in *inbound) add(s *stream, perPeer int) (displaced []*stream) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.byName == nil {
		in.byName = map[string][]*stream{}
	}
	list := in.byName[s.peer]
	ip := remoteIP(s.conn)
	same := 0
	for _, x := range list {
		if remoteIP(x.conn).Equal(ip) {
			same++
		}
	}
	for k := same + 1 - perPeer; k > 0; k-- {
		i := slices.IndexFunc(list, func(x *stream) bool { return remoteIP(x.conn).Equal(ip) })
		displaced = append(displaced, list[i])
		list = slices.Delete(list, i, i+1)
	}
	in.byName[s.peer] = append(list, s)
	return displaced
}

// remoteIP is the IP address at c's other end; nil if c has none.
func remoteIP(c net.Conn) net.IP {
	if c == nil || c.RemoteAddr() == nil {
		return nil
	}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return nil
	}
	return net.ParseIP(host)
}

func (in *inbound) remove(s *stream) {
	in.mu.Lock()
	defer in.mu.Unlock()
	list := slices.DeleteFunc(in.byName[s.peer], func(x *stream) bool { return x == s })
	if len(list) == 0 {
		delete(in.byName, s.peer)
		return
	}
	in.byName[s.peer] = list
}

func (in *inbound) get(name string) *stream {
	in.mu.Lock()
	defer in.mu.Unlock()
	list := in.byName[name]
	for i := len(list) - 1; i >= 0; i-- {
		if !list[i].closed.Load() {
			return list[i]
		}
	}
	return nil
}

// stats fills st's stream counters.
func (in *inbound) stats(st *Stats) {
	in.mu.Lock()
	st.StreamsInbound = uint64(in.open)
	st.HandshakesPending = uint64(len(in.pending))
	in.mu.Unlock()
	st.StreamsRefused, st.StreamsDisplaced = in.refused.Load(), in.displaced.Load()
	st.HandshakesCut = in.cut.Load()
	st.StreamsTimedOut = in.timedOut.Load()
	st.HandshakesRefused = in.handshakes.stats()
	st.StreamBuffered = uint64(max(in.buffered.Load(), 0))
}

// logEvery lets one log line through per streamLogEvery.
type logEvery struct{ last atomic.Int64 }

func (l *logEvery) allow() bool {
	now, last := time.Now().UnixNano(), l.last.Load()
	return now-last >= int64(streamLogEvery) && l.last.CompareAndSwap(last, now)
}

// acceptStream serves a stream a peer opened: its handshake (a session,
// or a version 1 hello) by deadline, then its frames into the inbox, as
// memberlist's NotifyMsg would; the node's acks to that peer go back on
// it. It returns when the stream closes.
func (n *Node) acceptStream(c net.Conn, magic byte, deadline time.Time) {
	in := &n.inbound
	h, cut := in.begin(c, n.cfg.MaxHandshakes)
	if cut {
		k := in.cut.Add(1)
		if in.cutLog.allow() {
			n.log.Warn().Str("remote", c.RemoteAddr().String()).Int("max_handshakes", n.cfg.MaxHandshakes).Uint64("cut", k).
				Msg("the oldest stream handshake closed for a new one: --max-handshakes were in progress (a flood of connections that do not finish)")
		}
	}
	r := bufio.NewReader(c)
	_ = c.SetDeadline(deadline) // the one deadline of the whole handshake
	hello, err := readStreamMessage(r, maxHello, &in.buffered)
	var s *stream
	if err == nil {
		if magic == streamMagicSession {
			s, err = n.acceptV2(c, r, hello)
		} else {
			s, err = n.acceptV1(c, hello)
		}
	}
	if in.end(h) && err == nil {
		err = net.ErrClosed // cut as it finished: closed already
	}
	if err == nil && !in.admit(n.cfg.MaxStreams) {
		k := in.refused.Add(1)
		if in.refusedLog.allow() {
			n.log.Warn().Str("remote", c.RemoteAddr().String()).Int("max_streams", n.cfg.MaxStreams).Uint64("refused", k).
				Msg("stream refused: --max-streams are open (raise it if the cluster has as many peers)")
		}
		return
	}
	if err != nil {
		var ref *refusedError
		switch {
		case errors.As(err, &ref):
			in.handshakes[ref.why].Add(1)
		case errors.Is(err, os.ErrDeadlineExceeded):
			in.timedOut.Add(1)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
		default:
			n.stats.decodeErrors.Add(1)
		}
		if in.helloLog.allow() {
			n.log.Warn().Err(err).Str("remote", c.RemoteAddr().String()).Msg("stream refused")
		}
		return
	}
	defer in.release()
	_ = c.SetWriteDeadline(time.Time{}) // each write sets its own
	s.conn, s.max, s.held = c, n.streamMax(), &in.buffered
	n.stats.streamsAccepted.Add(1)
	for _, old := range in.add(s, n.cfg.MaxStreamsPerPeer) {
		old.close()
		k := in.displaced.Add(1)
		if in.displacedLog.allow() {
			n.log.Warn().Str("peer", s.peer).Int("max_streams_per_peer", n.cfg.MaxStreamsPerPeer).Uint64("displaced", k).
				Msg("a peer's oldest stream closed for its newest")
		}
	}
	defer in.remove(s)
	defer s.close()
	var renewed, checked time.Time // when the idle deadline was set (zero: a message's deadline is); when the key was checked
	for {
		// Between messages: streamIdle, renewed at most once a second,
		// as setting a deadline costs.
		now := time.Now()
		if now.Sub(renewed) > time.Second {
			_ = c.SetReadDeadline(now.Add(streamIdle))
			renewed = now
		}
		// A session under a key the keyring no longer holds ends (its
		// dialer redials under its primary): a removed key authorizes
		// nothing for long.
		if s.v2 && n.keys != nil && now.Sub(checked) > time.Second {
			checked = now
			if _, ok := n.keys.find(s.key); !ok {
				n.log.Info().Str("peer", s.peer).Msg("session closed: its key was removed from the keyring")
				return
			}
		}
		_, err := r.Peek(1)
		inMessage := false
		if err == nil && !messageBuffered(r) {
			// A message has begun and is not all here: it has TCPTimeout
			// to arrive. One read whole already costs no deadline.
			_ = c.SetReadDeadline(time.Now().Add(n.cfg.TCPTimeout))
			renewed, inMessage = time.Time{}, true
		}
		var msg []byte
		if err == nil {
			msg, err = s.read(r)
		}
		if err == nil {
			err = n.checkFrame(s, msg)
		}
		if err != nil {
			switch {
			case inMessage && errors.Is(err, os.ErrDeadlineExceeded):
				k := in.timedOut.Add(1)
				if in.timeoutLog.allow() {
					n.log.Warn().Str("peer", s.peer).Dur("tcp_timeout", n.cfg.TCPTimeout).Uint64("timed_out", k).
						Msg("stream closed: a message did not arrive whole within TCPTimeout")
				}
			case errors.Is(err, errStreamMessage) || errors.Is(err, errStreamOpen) || errors.Is(err, errSessionSeq):
				n.stats.decodeErrors.Add(1)
				n.log.Warn().Err(err).Str("peer", s.peer).Msg("stream closed: a message out of sequence, forged or malformed")
				return
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !s.closed.Load() {
				n.log.Debug().Err(err).Str("peer", s.peer).Msg("stream from peer ended")
			}
			return
		}
		n.receive(s.peer, msg)
	}
}

// checkFrame admits a message from an accepted stream: frames, and on a
// session anti-entropy messages (handle reads those as the session
// peer's). A frame travels only from its origin (nothing is forwarded on
// the direct path), so it must be the stream's peer's, never a name it
// wrote.
func (n *Node) checkFrame(s *stream, msg []byte) error {
	if s.v2 && len(msg) > 0 && msg[0] == msgSync {
		return nil
	}
	from, _, _, _, _, err := frameHeader(msg)
	if err != nil {
		return fmt.Errorf("%w: not a frame", errStreamMessage)
	}
	if from != s.peer {
		return fmt.Errorf("%w: a frame of %q on %s's stream", errStreamMessage, from, s.peer)
	}
	return nil
}

// acceptV2 runs a session's handshake (session.go).
func (n *Node) acceptV2(c net.Conn, r *bufio.Reader, hello []byte) (*stream, error) {
	name, sess, id, err := n.acceptSession(c, r, hello)
	if err != nil {
		return nil, err
	}
	s := newStream(c, sess, 0, name)
	s.v2, s.key = true, id
	return s, nil
}

// acceptV1 reads a version 1 hello on c, sealed under one of the keyring's
// keys with a random nonce: it proves nothing fresh, so it is taken only
// under the name of a member whose meta says it speaks version 1 only (a
// node of the previous version, during a rolling upgrade), and with a key
// only from that member's address. A node forced to version 1 in tests
// takes any, as that version did.
func (n *Node) acceptV1(c net.Conn, b []byte) (*stream, error) {
	var seal *sealer
	var hello []byte
	var err error
	if n.keys == nil {
		hello = b
	} else {
		err = errStreamOpen
		for _, key := range n.keys.ring.GetKeys() {
			if seal, err = newSealer(key, n.cfg.Label); err != nil {
				return nil, err
			}
			if hello, err = seal.open(b); err == nil {
				break
			}
		}
		if err != nil {
			return nil, refuse(refusedAuth, "version 1 hello: %v", err)
		}
	}
	label, name, err := decodeHello(hello)
	if err != nil {
		return nil, &refusedError{why: refusedMalformed, err: err}
	}
	if label != n.cfg.Label {
		return nil, refuse(refusedLabel, "label %q", label)
	}
	if !n.cfg.streamsV1Only {
		if m, ok := n.members.member(name); !ok || m.sessions {
			return nil, refuse(refusedDowngrade, "version 1 hello from %q, which is no member or speaks version 2", name)
		}
		if n.keys != nil {
			if err := n.atMembersAddress(name, c); err != nil {
				return nil, err
			}
		}
	}
	return newStream(nil, seal, 0, name), nil
}

// messageBuffered reports whether r holds a whole message already.
func messageBuffered(r *bufio.Reader) bool {
	b, _ := r.Peek(r.Buffered())
	size, k := binary.Uvarint(b)
	return k > 0 && uint64(len(b)-k) >= size
}

// streamMax bounds one stream message: a frame of DirectBatchBytes, an
// ack of many runs.
func (n *Node) streamMax() int { return max(minStreamMessage, 2*n.cfg.DirectBatchBytes) }

// peerStream returns p's open stream, dialing one if there is none, or if
// its session is under a key that is no longer the primary (a rotation).
func (n *Node) peerStream(p *peerSender) (*stream, error) {
	if s := p.out.Load(); s != nil {
		if !s.v2 || n.keys == nil || n.keys.isPrimary(s.key) {
			return s, nil
		}
		if p.out.CompareAndSwap(s, nil) {
			s.finish() // what it carries still goes
			n.log.Info().Str("peer", p.peer.name).Msg("session redialed under the new primary key")
		}
	}
	// No lock across the dial: a send left in flight on a dial that hangs
	// must not hold up the next one (direct.go). Two dials that race keep
	// the first stream.
	v2 := p.peer.sessions && !n.cfg.streamsV1Only
	magic := streamMagic
	if v2 {
		magic = streamMagicSession
	}
	c, err := n.mux.dial(p.peer.addr(), n.cfg.TCPTimeout, magic)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	s, err := n.openStream(c, r, p.peer.name, v2)
	if err != nil {
		var ref *refusedError
		if errors.As(err, &ref) {
			n.inbound.handshakes[ref.why].Add(1)
		}
		n.mux.release(c)
		_ = c.Close()
		return nil, err
	}
	// Its acks come back on it, read here until it closes.
	if !n.mux.serve(c, func() { n.readAcks(p, s, r) }) {
		s.close()
		return nil, errMuxClosed
	}
	n.stats.streamsDialed.Add(1)
	if !p.out.CompareAndSwap(nil, s) {
		s.close()
		return n.peerStream(p)
	}
	if p.stopped.Load() { // the sender ended during the dial
		p.resetStream(errStreamReset)
		return nil, errStreamReset
	}
	return s, nil
}

// openStream opens a stream on c to the node named peer: a session, or a
// version 1 hello under the primary key.
func (n *Node) openStream(c net.Conn, r *bufio.Reader, peer string, v2 bool) (*stream, error) {
	if v2 {
		sess, id, err := n.dialSession(c, r, peer)
		if err != nil {
			return nil, err
		}
		s := newStream(c, sess, n.streamMax(), peer)
		s.held, s.v2, s.key = &n.inbound.buffered, true, id
		return s, nil
	}
	var seal *sealer
	if n.keys != nil {
		p, err := n.keys.current()
		if err != nil {
			return nil, err
		}
		if seal, err = newSealer(p.key, n.cfg.Label); err != nil {
			return nil, err
		}
	}
	s := newStream(c, seal, n.streamMax(), peer)
	s.held = &n.inbound.buffered
	if err := s.write(encodeHello(n.cfg.Label, n.cfg.NodeName), n.cfg.TCPTimeout); err != nil {
		return nil, err
	}
	return s, nil
}

// readAcks applies the acks that come back on p's stream s: they count for
// p, the node the stream was opened to (a session's is authenticated),
// whatever name they carry. When the peer ends the stream, the next send
// dials again.
func (n *Node) readAcks(p *peerSender, s *stream, r *bufio.Reader) {
	for {
		msg, err := s.read(r)
		if err == nil && (len(msg) == 0 || (msg[0] != msgAck && (msg[0] != msgSync || !s.v2))) {
			err = fmt.Errorf("%w: not an ack", errStreamMessage)
		}
		if err != nil {
			if errors.Is(err, errStreamMessage) || errors.Is(err, errStreamOpen) || errors.Is(err, errSessionSeq) {
				n.stats.decodeErrors.Add(1)
				n.log.Warn().Err(err).Str("peer", p.peer.name).Msg("bad message on stream: reset")
			}
			p.out.CompareAndSwap(s, nil) // the next send dials anew
			s.reset(errPeerClosed)       // unless this node reset it first
			return
		}
		n.receive(p.peer.name, msg) // an ack, or on a session an anti-entropy message
	}
}

// resetStream closes p's stream, if open: the next send dials a new one,
// and a send in progress returns reason.
func (p *peerSender) resetStream(reason error) bool {
	if s := p.out.Swap(nil); s != nil {
		return s.reset(reason)
	}
	return false
}

// wrapTransport gives memberlist a transport whose listener hands likesd's
// streams to acceptStream: Config.Transport, or the NetTransport memberlist
// would have made itself. A transport that cannot dial by address (none of
// likesd's) is left as it is, and the fast path uses SendReliable.
func (n *Node) wrapTransport(mlc *memberlist.Config) error {
	inner := n.cfg.Transport
	if inner == nil {
		nt, err := newNetTransport(mlc.BindAddr, mlc.BindPort, mlc.Logger)
		if err != nil {
			return fmt.Errorf("cluster: listen on %s:%d: %w", mlc.BindAddr, mlc.BindPort, err)
		}
		if mlc.BindPort == 0 {
			mlc.BindPort = nt.GetAutoBindPort()
			mlc.AdvertisePort = mlc.BindPort
		}
		inner = nt
	}
	aware, ok := inner.(memberlist.NodeAwareTransport)
	if !ok {
		mlc.Transport = inner
		return nil
	}
	n.mux = newMuxTransport(aware, n.cfg.TCPTimeout, !n.cfg.streamsV1Only, n.acceptStream)
	mlc.Transport = n.mux
	return nil
}
