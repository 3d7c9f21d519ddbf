package cluster

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/likesd/likesd/internal/stat"
)

// Sessions: stream version 2 (see the top of stream.go). A stream opens
// with an authenticated handshake, in the manner of Noise's NN pattern
// over a pre-shared key:
//
//	dialer → acceptor  hello {2, label, dialer's name, key id, nonce_d}
//	acceptor → dialer  reply {2, acceptor's name, nonce_a}, then ok
//	dialer → acceptor  confirm, then frames; acks come back
//
// The key id names which of the cluster's keys the dialer used (its
// primary): keyIDLen bytes of HKDF output from the key, never the key, so
// the acceptor picks it from its keyring without trial decryption. Each
// direction gets its own AES-256-GCM key, HKDF-SHA256 of the cluster key
// with nonce_d‖nonce_a as salt and, as info, the direction and a hash of
// the hello and the reply (so the label, both names, the key id and both
// nonces). Every message after the reply is sealed under its direction's
// key with its sequence number as the nonce (a 64-bit counter from 0,
// never sent, never reused) and the label and direction as additional
// data: ok and confirm are each side's first message, so the acceptor
// knows the dialer holds the key for its fresh nonce_a, and the dialer
// that the acceptor holds it for its nonce_d, before anything else is
// believed. A message replayed, reordered, dropped or from another session
// fails to open, and ends the session. Nothing recorded can be played
// again: a hello draws a reply whose nonce it cannot confirm.
//
// Without a key (plaintext mode) the same messages go unsealed: names and
// nonces are exchanged, nothing is authenticated, as with memberlist's own
// plaintext gossip.

const (
	// streamMagicSession opens a version 2 stream; streamMagic a version 1
	// one. Neither is a byte a memberlist stream begins with.
	streamMagicSession byte = 0xC6
	sessionVersion     byte = 2
	// keyIDLen is the length of a key id.
	keyIDLen = 8
	// sessionNonceLen is each side's handshake nonce.
	sessionNonceLen = 32
	// sessionKeyLen makes each direction's key AES-256.
	sessionKeyLen = 32

	// The handshake's own messages, each side's first sealed one.
	sessionOK      byte = 0xA1 // acceptor → dialer
	sessionConfirm byte = 0xA2 // dialer → acceptor
)

var (
	errSessionHello  = errors.New("cluster: bad session hello")
	errSessionRefuse = errors.New("cluster: session refused")
)

// refusal is why a handshake was refused, the label of its counter: a
// closed set.
type refusal int

const (
	refusedMalformed  refusal = iota // a hello or reply that does not decode
	refusedLabel                     // another cluster's label
	refusedKeying                    // one side has keys, the other none
	refusedUnknownKey                // a key id this node does not hold
	refusedAuth                      // the confirm or the ok did not open: no key, or a replay
	refusedDowngrade                 // a version 1 hello under the name of a node that speaks 2, or of no member
	refusedPeer                      // the node that answered is not the one dialed
	refusedAddress                   // a hello naming no alive or suspect member, or one at another address
	refusals
)

// HandshakeRefusals counts stream handshakes refused, by reason (stream.go,
// session.go).
type HandshakeRefusals struct {
	Malformed  uint64 // a hello or reply that does not decode, or an unknown version
	Label      uint64 // another cluster's label
	Keying     uint64 // one side has a key and the other none
	UnknownKey uint64 // a key id this node's keyring does not hold
	Auth       uint64 // the other side proved no key for this session (no key, or a replayed hello)
	Downgrade  uint64 // a version 1 hello naming a node that speaks version 2, or no member
	Peer       uint64 // the node that answered a dial is not the one dialed
	Address    uint64 // a keyed hello naming this node, no alive or suspect member, or one whose address is not the connection's
}

func (r refusal) String() string {
	return [...]string{"malformed", "label", "keying", "unknown_key", "auth", "downgrade", "peer", "address"}[r]
}

// refusedCounters counts refusals by reason.
type refusedCounters [refusals]atomic.Uint64

// refusalMetrics describes the handshake refusals, one series per reason
// (refusal's closed set), each read from read at scrape time.
func refusalMetrics(read func() HandshakeRefusals) []stat.Desc {
	const help = "Stream handshakes refused, either way, by reason: malformed (a hello or reply that does not decode), label (another cluster's), " +
		"keying (one side has a key, the other none), unknown_key (a key id not in this node's keyring), auth (no proof of the key for this " +
		"session: a wrong key or a replayed hello), downgrade (a version 1 hello naming a node that speaks version 2, or no member), " +
		"peer (the node that answered a dial is not the one dialed), address (a keyed hello naming no alive or suspect member, or one at another address)."
	by := [refusals]func(HandshakeRefusals) uint64{
		refusedMalformed:  func(r HandshakeRefusals) uint64 { return r.Malformed },
		refusedLabel:      func(r HandshakeRefusals) uint64 { return r.Label },
		refusedKeying:     func(r HandshakeRefusals) uint64 { return r.Keying },
		refusedUnknownKey: func(r HandshakeRefusals) uint64 { return r.UnknownKey },
		refusedAuth:       func(r HandshakeRefusals) uint64 { return r.Auth },
		refusedDowngrade:  func(r HandshakeRefusals) uint64 { return r.Downgrade },
		refusedPeer:       func(r HandshakeRefusals) uint64 { return r.Peer },
		refusedAddress:    func(r HandshakeRefusals) uint64 { return r.Address },
	}
	ds := make([]stat.Desc, 0, refusals)
	for reason, f := range by {
		ds = append(ds, stat.NewCounter("likesd_stream_handshakes_refused_total", help,
			func() uint64 { return f(read()) }).With("reason", refusal(reason).String()))
	}
	return ds
}

func (c *refusedCounters) stats() HandshakeRefusals {
	return HandshakeRefusals{
		Malformed: c[refusedMalformed].Load(), Label: c[refusedLabel].Load(), Keying: c[refusedKeying].Load(),
		UnknownKey: c[refusedUnknownKey].Load(), Auth: c[refusedAuth].Load(), Downgrade: c[refusedDowngrade].Load(),
		Peer: c[refusedPeer].Load(), Address: c[refusedAddress].Load(),
	}
}

// refused is a handshake refusal with its reason.
type refusedError struct {
	why refusal
	err error
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("%v (%s): %v", errSessionRefuse, e.why, e.err)
}
func (e *refusedError) Unwrap() []error {
	return []error{errSessionRefuse, e.err}
}

func refuse(why refusal, format string, args ...any) error {
	return &refusedError{why: why, err: fmt.Errorf(format, args...)}
}

// keyID names a key without revealing it.
type keyID [keyIDLen]byte

func keyIDOf(key []byte) keyID {
	out, err := hkdf.Key(sha256.New, key, nil, "likesd key id", keyIDLen)
	if err != nil { // only for lengths HKDF cannot give
		panic(err)
	}
	return keyID(out)
}

// sessionHello is the dialer's first message.
type sessionHello struct {
	label, name string
	key         []byte // its key id; empty in plaintext mode
	nonce       [sessionNonceLen]byte
}

func (h sessionHello) encode() []byte {
	b := []byte{sessionVersion}
	b = appendShortString(b, h.label)
	b = appendShortString(b, h.name)
	b = append(b, byte(len(h.key)))
	b = append(b, h.key...)
	return append(b, h.nonce[:]...)
}

// sessionReply is the acceptor's answer.
type sessionReply struct {
	name  string
	nonce [sessionNonceLen]byte
}

func (r sessionReply) encode() []byte {
	b := []byte{sessionVersion}
	b = appendShortString(b, r.name)
	return append(b, r.nonce[:]...)
}

func appendShortString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// handshakeReader reads a handshake message's fields; the first failure
// sticks.
type handshakeReader struct {
	b  []byte
	ok bool
}

func (r *handshakeReader) str(limit int) string {
	if !r.ok {
		return ""
	}
	k, n := binary.Uvarint(r.b)
	// One encoding per message: a length in more bytes than it needs is
	// refused.
	if n <= 0 || n != len(binary.AppendUvarint(nil, k)) || k > uint64(limit) || uint64(len(r.b)-n) < k {
		r.ok = false
		return ""
	}
	s := string(r.b[n : n+int(k)])
	r.b = r.b[n+int(k):]
	return s
}

func (r *handshakeReader) bytes(n int) []byte {
	if !r.ok || len(r.b) < n {
		r.ok = false
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func decodeSessionHello(b []byte) (h sessionHello, err error) {
	if len(b) < 1 || b[0] != sessionVersion {
		return h, fmt.Errorf("%w: version", errSessionHello)
	}
	r := handshakeReader{b: b[1:], ok: true}
	h.label = r.str(255)
	h.name = r.str(maxStreamName)
	if k := r.bytes(1); k != nil {
		if k[0] != 0 && k[0] != keyIDLen {
			return sessionHello{}, fmt.Errorf("%w: key id of %d bytes", errSessionHello, k[0])
		}
		if k[0] > 0 {
			h.key = bytes.Clone(r.bytes(keyIDLen))
		}
	}
	copy(h.nonce[:], r.bytes(sessionNonceLen))
	if !r.ok || h.name == "" || len(r.b) != 0 {
		return sessionHello{}, errSessionHello
	}
	return h, nil
}

func decodeSessionReply(b []byte) (r sessionReply, err error) {
	if len(b) < 1 || b[0] != sessionVersion {
		return r, fmt.Errorf("%w: reply version", errSessionHello)
	}
	rd := handshakeReader{b: b[1:], ok: true}
	r.name = rd.str(maxStreamName)
	copy(r.nonce[:], rd.bytes(sessionNonceLen))
	if !rd.ok || r.name == "" || len(rd.b) != 0 {
		return sessionReply{}, fmt.Errorf("%w: reply", errSessionHello)
	}
	return r, nil
}

// Directions, in a session key's info and every message's additional data.
const (
	dialerToAcceptor byte = 'd'
	acceptorToDialer byte = 'a'
)

// sessionCipher seals (or opens) one direction's messages in order.
type sessionCipher struct {
	aead cipher.AEAD
	aad  []byte // the label, then the direction
	seq  uint64 // the next message's
}

// errSessionSeq ends a session whose counter ran out (2^64 messages).
var errSessionSeq = errors.New("cluster: session sequence exhausted")

func (c *sessionCipher) nonce() ([]byte, error) {
	if c.seq == ^uint64(0) {
		return nil, errSessionSeq
	}
	nonce := make([]byte, c.aead.NonceSize())
	binary.BigEndian.PutUint64(nonce[len(nonce)-8:], c.seq)
	c.seq++
	return nonce, nil
}

// session is a version 2 stream's two ciphers; nil ones (plaintext mode)
// leave messages as they are. seal is called under the stream's write
// lock, open by its one reader.
type session struct {
	send, recv *sessionCipher
}

func (s *session) seal(msg []byte) ([]byte, error) {
	if s.send == nil {
		return msg, nil
	}
	nonce, err := s.send.nonce()
	if err != nil {
		return nil, err
	}
	return s.send.aead.Seal(make([]byte, 0, len(msg)+s.send.aead.Overhead()), nonce, msg, s.send.aad), nil
}

func (s *session) open(b []byte) ([]byte, error) {
	if s.recv == nil {
		return b, nil
	}
	nonce, err := s.recv.nonce()
	if err != nil {
		return nil, err
	}
	msg, err := s.recv.aead.Open(b[:0], nonce, b, s.recv.aad)
	if err != nil {
		return nil, errStreamOpen
	}
	return msg, nil
}

// newSession derives a session's ciphers from the cluster key and the
// handshake's two messages; dialer says which end this is. A nil key is
// plaintext mode.
func newSession(key []byte, label string, hello, reply []byte, dialer bool) (*session, error) {
	if key == nil {
		return &session{}, nil
	}
	h, err := decodeSessionHello(hello)
	if err != nil {
		return nil, err
	}
	r, err := decodeSessionReply(reply)
	if err != nil {
		return nil, err
	}
	salt := append(h.nonce[:len(h.nonce):len(h.nonce)], r.nonce[:]...)
	transcript := sha256.New()
	transcript.Write(hello)
	transcript.Write(reply)
	sum := transcript.Sum(nil)
	dir := func(d byte) (*sessionCipher, error) {
		info := append([]byte("likesd session v2 "), d)
		k, err := hkdf.Key(sha256.New, key, salt, string(append(info, sum...)), sessionKeyLen)
		if err != nil {
			return nil, err
		}
		aead, err := newGCM(k)
		if err != nil {
			return nil, err
		}
		return &sessionCipher{aead: aead, aad: append([]byte(label), d)}, nil
	}
	out, err := dir(dialerToAcceptor)
	if err != nil {
		return nil, err
	}
	in, err := dir(acceptorToDialer)
	if err != nil {
		return nil, err
	}
	if dialer {
		return &session{send: out, recv: in}, nil
	}
	return &session{send: in, recv: out}, nil
}

func randomNonce() (n [sessionNonceLen]byte, err error) {
	_, err = rand.Read(n[:])
	return n, err
}

// keyring is the node's keys: Config.Keyring, or one built from SecretKey;
// nil in plaintext mode. It is read only through its locked methods.
type keyring struct {
	ring    *memberlist.Keyring
	primary atomic.Pointer[primaryKey] // the last primary seen, with its id
}

type primaryKey struct {
	key []byte
	id  keyID
}

// current is the primary key and its id.
func (k *keyring) current() (*primaryKey, error) {
	key := k.ring.GetPrimaryKey()
	if len(key) == 0 {
		return nil, errors.New("cluster: the keyring has no primary key")
	}
	if p := k.primary.Load(); p != nil && bytes.Equal(p.key, key) {
		return p, nil
	}
	p := &primaryKey{key: bytes.Clone(key), id: keyIDOf(key)}
	k.primary.Store(p)
	return p, nil
}

// isPrimary reports whether id names the primary key.
func (k *keyring) isPrimary(id keyID) bool {
	p, err := k.current()
	return err == nil && p.id == id
}

// find returns the key id names, if the keyring holds it.
func (k *keyring) find(id keyID) ([]byte, bool) {
	for _, key := range k.ring.GetKeys() {
		if keyIDOf(key) == id {
			return key, true
		}
	}
	return nil, false
}

// dialSession runs the dialer's half of the handshake on c (its magic byte
// written) with the node named want, under the primary key: it returns the
// session and the id of its key.
func (n *Node) dialSession(c net.Conn, r *bufio.Reader, want string) (*session, keyID, error) {
	var id keyID
	var key []byte
	if n.keys != nil {
		p, err := n.keys.current()
		if err != nil {
			return nil, id, err
		}
		key, id = p.key, p.id
	}
	sess, err := dialHandshake(c, r, key, n.cfg.Label, n.cfg.NodeName, want, n.cfg.TCPTimeout, &n.inbound.buffered)
	return sess, id, err
}

// dialHandshake is the dialer's half of the handshake under key (nil:
// plaintext), as the node named name, with the node named want; timeout
// bounds it. held counts the buffers of messages being read.
func dialHandshake(c net.Conn, r *bufio.Reader, key []byte, label, name, want string, timeout time.Duration, held *atomic.Int64) (*session, error) {
	hello := sessionHello{label: label, name: name}
	if key != nil {
		id := keyIDOf(key)
		hello.key = id[:]
	}
	var err error
	if hello.nonce, err = randomNonce(); err != nil {
		return nil, err
	}
	hb := hello.encode()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(appendStreamMessage(nil, hb)); err != nil {
		return nil, err
	}
	rb, err := readStreamMessage(r, maxHello, held)
	if err != nil {
		return nil, err
	}
	reply, err := decodeSessionReply(rb)
	if err != nil {
		return nil, &refusedError{why: refusedMalformed, err: err}
	}
	if reply.name != want {
		return nil, refuse(refusedPeer, "dialed %s, %s answered", want, reply.name)
	}
	sess, err := newSession(key, label, hb, rb, true)
	if err != nil {
		return nil, err
	}
	ok, err := readStreamMessage(r, maxHello, held)
	if err == nil {
		ok, err = sess.open(ok)
	}
	if errors.Is(err, errStreamOpen) || (err == nil && !bytes.Equal(ok, []byte{sessionOK})) {
		return nil, refuse(refusedAuth, "%s's ok does not open", want)
	}
	if err != nil {
		return nil, err
	}
	confirm, err := sess.seal([]byte{sessionConfirm})
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(appendStreamMessage(nil, confirm)); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return sess, nil
}

// acceptSession runs the acceptor's half of the handshake on c, whose
// hello hb was read: it returns the dialer's name, the session and the id
// of the key it is under. c's deadline, the whole handshake's, bounds it.
//
// With a key, the hello's name must be an alive or suspect member's whose
// address is the connection's (checked before anything is answered): the
// handshake proves that the dialer holds a cluster key, and this that it
// is at the member's address, so one key holder cannot take a session, and
// the acks that go on it, in another node's name from elsewhere. With one
// key shared by the cluster that is all it can prove: any key holder on
// the member's own host, or able to spoof its address on a TCP handshake,
// is not told apart (see docs/deploy.md). A node that dials before this
// one listed it (a join racing its first frames) is refused, and its
// sender retries once this node answers its pings.
func (n *Node) acceptSession(c net.Conn, r *bufio.Reader, hb []byte) (string, *session, keyID, error) {
	var id keyID
	hello, err := decodeSessionHello(hb)
	if err != nil {
		return "", nil, id, &refusedError{why: refusedMalformed, err: err}
	}
	if hello.label != n.cfg.Label {
		return "", nil, id, refuse(refusedLabel, "label %q", hello.label)
	}
	var key []byte
	switch {
	case n.keys == nil && len(hello.key) > 0:
		return "", nil, id, refuse(refusedKeying, "%s has a key, this node none", hello.name)
	case n.keys != nil && len(hello.key) == 0:
		return "", nil, id, refuse(refusedKeying, "%s has no key", hello.name)
	case n.keys != nil:
		id = keyID(hello.key)
		var ok bool
		if key, ok = n.keys.find(id); !ok {
			return "", nil, id, refuse(refusedUnknownKey, "%s used key id %x", hello.name, hello.key)
		}
	}
	if n.keys != nil {
		if err := n.atMembersAddress(hello.name, c); err != nil {
			return "", nil, id, err
		}
	}
	reply := sessionReply{name: n.cfg.NodeName}
	if reply.nonce, err = randomNonce(); err != nil {
		return "", nil, id, err
	}
	rb := reply.encode()
	sess, err := newSession(key, n.cfg.Label, hb, rb, false)
	if err != nil {
		return "", nil, id, err
	}
	ok, err := sess.seal([]byte{sessionOK})
	if err != nil {
		return "", nil, id, err
	}
	if _, err := c.Write(appendStreamMessage(appendStreamMessage(nil, rb), ok)); err != nil {
		return "", nil, id, err
	}
	cb, err := readStreamMessage(r, maxHello, &n.inbound.buffered)
	if err != nil {
		return "", nil, id, err
	}
	confirm, err := sess.open(cb)
	if err != nil || !bytes.Equal(confirm, []byte{sessionConfirm}) {
		return "", nil, id, refuse(refusedAuth, "%s's confirm does not open", hello.name)
	}
	return hello.name, sess, id, nil
}

// atMembersAddress checks that name is an alive or suspect member, not
// this node, whose address is c's other end.
func (n *Node) atMembersAddress(name string, c net.Conn) error {
	if name == n.cfg.NodeName {
		return refuse(refusedAddress, "a hello in this node's own name")
	}
	m, ok := n.members.member(name)
	if !ok {
		return refuse(refusedAddress, "%s is no alive or suspect member", name)
	}
	if ip := remoteIP(c); ip == nil || !ip.Equal(m.ip) {
		return refuse(refusedAddress, "%s is at %s, the connection from %v", name, m.ip, ip)
	}
	return nil
}
