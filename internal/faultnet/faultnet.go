// Package faultnet is a network of memberlist transports on 127.0.0.1 that
// tests can cut: isolate a host, cut one direction of a link, lose a
// fraction of packets and streams, crash a host and start another process
// at the same address. Each host is a real memberlist NetTransport (real
// UDP and TCP on loopback) behind a wrapper that applies the faults, so
// what runs above it is the production code, unchanged.
//
// It imports memberlist, which the rest of likesd leaves to package
// cluster: it is test support, imported only by tests.
//
// Faults are applied where a sender hands bytes to the network:
//
//   - a packet (UDP) from A to B is lost when A→B is cut or A or B is
//     isolated, or with the loss probability;
//   - a host that is Down loses every packet and refuses every stream to
//     or from it at once, as a host whose process stopped;
//   - a stream (TCP) between A and B needs both directions, as TCP does: if
//     either is cut the dial is black-holed (it waits out its timeout and
//     fails, as a dial whose SYNs are dropped; unlike real TCP it does not
//     connect on a retransmitted SYN after the cut heals); with the loss
//     probability a dial fails at once (a reset);
//   - a stream already open stalls while either direction is cut: a write
//     waits (as TCP retransmits) until the cut heals or the write's
//     deadline passes; it is reset when either end goes Down or its
//     transport shuts down (a crash).
//
// A host whose memberlist shut down (a crash) keeps its sockets, owned by
// the Network: packets to it are dropped and streams to it refused, like a
// process that died, and Attach starts a new memberlist at the same address
// with no port-reuse race.
package faultnet

import (
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrDropped is returned by a dial the loss probability dropped, and
// ErrBlackholed by one on a cut link once its timeout passed.
var (
	ErrDropped    = errors.New("faultnet: stream dropped")
	ErrBlackholed = errors.New("faultnet: i/o timeout (link cut)")
	ErrRefused    = errors.New("faultnet: connection refused")
)

// Network is a set of hosts and the faults between them. The zero value is
// not usable: call New.
type Network struct {
	mu       sync.Mutex
	hosts    map[string]*host // by address
	cut      map[link]bool
	isolated map[string]bool
	down     map[string]bool
	loss     float64
	rng      *rand.Rand
	closed   bool
	conns    map[*conn]struct{}
	dialers  map[string]string // a dialed stream's local address → its host
}

type link struct{ from, to string }

// New returns an empty network; seed drives the loss draws.
func New(seed uint64) *Network {
	return &Network{
		hosts: map[string]*host{}, cut: map[link]bool{}, isolated: map[string]bool{}, down: map[string]bool{},
		conns: map[*conn]struct{}{}, dialers: map[string]string{},
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

// host is one address: its real sockets and the transport attached to them,
// if any.
type host struct {
	n      *Network
	addr   string
	nt     *memberlist.NetTransport
	stop   chan struct{} // closed by Close: deliver nothing more
	ntDone chan struct{} // closed once the sockets are shut
	done   sync.WaitGroup

	mu  sync.Mutex
	cur *Transport // nil while nothing is attached
}

// Reserve binds a new address on 127.0.0.1 (a free port) with nothing
// attached yet: dials to it are refused and packets lost until Attach.
func (n *Network) Reserve() (string, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		BindPort:  0,
		Logger:    nopLogger(),
	})
	if err != nil {
		return "", fmt.Errorf("faultnet: bind: %w", err)
	}
	h := &host{n: n, nt: nt, stop: make(chan struct{}), ntDone: make(chan struct{})}
	h.addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(nt.GetAutoBindPort()))
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		_ = nt.Shutdown()
		return "", errors.New("faultnet: network closed")
	}
	n.hosts[h.addr] = h
	n.mu.Unlock()
	h.done.Add(1)
	go h.pump()
	return h.addr, nil
}

// NewTransport reserves a new address and attaches a transport to it.
func (n *Network) NewTransport() (*Transport, error) {
	addr, err := n.Reserve()
	if err != nil {
		return nil, err
	}
	return n.Attach(addr)
}

// Attach returns a transport for a memberlist at addr (from Reserve, or a
// host whose previous memberlist shut down).
func (n *Network) Attach(addr string) (*Transport, error) {
	n.mu.Lock()
	h := n.hosts[addr]
	n.mu.Unlock()
	if h == nil {
		return nil, fmt.Errorf("faultnet: no host at %s", addr)
	}
	t := &Transport{
		h: h, packetCh: make(chan *memberlist.Packet), streamCh: make(chan net.Conn),
		shutdown: make(chan struct{}),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur != nil {
		return nil, fmt.Errorf("faultnet: %s already has a transport attached", addr)
	}
	h.cur = t
	return t, nil
}

// pump hands what the sockets receive to the attached transport, or drops
// it (packets) and refuses it (streams) while none is attached, until the
// sockets are shut.
func (h *host) pump() {
	defer h.done.Done()
	for {
		select {
		case <-h.ntDone:
			return
		case p := <-h.nt.PacketCh():
			if t := h.attached(); t != nil {
				select {
				case t.packetCh <- p:
				case <-t.shutdown:
				case <-h.stop:
				}
			}
		case raw := <-h.nt.StreamCh():
			t := h.attached()
			if t == nil {
				_ = raw.Close()
				continue
			}
			c := h.n.track(raw, h.addr, "")
			select {
			case t.streamCh <- c:
			case <-t.shutdown:
				_ = c.Close()
			case <-h.stop:
				_ = c.Close()
			}
		}
	}
}

func (h *host) attached() *Transport {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cur
}

// Close shuts every host's sockets. Call it after every memberlist on the
// network shut down.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	hosts := make([]*host, 0, len(n.hosts))
	for _, h := range n.hosts {
		hosts = append(hosts, h)
	}
	n.mu.Unlock()
	for _, h := range hosts {
		// The listeners may be blocked handing the pump a packet: it keeps
		// draining (and dropping) until they stopped.
		close(h.stop)
		_ = h.nt.Shutdown()
		close(h.ntDone)
		h.done.Wait()
	}
}

// Isolate cuts addr off from every other host, both ways; Heal undoes it.
func (n *Network) Isolate(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[addr] = true
}

// Down makes addr unreachable the way a host whose process stopped is:
// packets to and from it are lost and streams to and from it are refused at
// once (a reset), so senders learn it at their next send instead of waiting
// out a dial. Heal undoes it.
func (n *Network) Down(addr string) {
	n.mu.Lock()
	n.down[addr] = true
	n.mu.Unlock()
	n.resetStreams(addr)
}

// Cut loses everything sent from one address to another (one direction:
// packets the other way still pass, streams between them do not).
func (n *Network) Cut(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[link{from, to}] = true
}

// SetLoss loses each packet, and fails each dial, with probability p
// (0 ≤ p ≤ 1) on every link.
func (n *Network) SetLoss(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.loss = p
}

// Heal removes every cut, isolation and loss.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[link]bool{}
	n.isolated = map[string]bool{}
	n.down = map[string]bool{}
	n.loss = 0
}

// blockedLocked reports whether from→to is cut; n.mu held.
func (n *Network) blockedLocked(from, to string) bool {
	return n.isolated[from] || n.isolated[to] || n.down[from] || n.down[to] || n.cut[link{from, to}]
}

// packetLost decides the fate of one packet.
func (n *Network) packetLost(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.blockedLocked(from, to) || (n.loss > 0 && n.rng.Float64() < n.loss)
}

// streamFate decides the fate of one dial: open, black-holed or dropped.
func (n *Network) streamFate(from, to string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down[from] || n.down[to] {
		return ErrRefused
	}
	if n.blockedLocked(from, to) || n.blockedLocked(to, from) {
		return ErrBlackholed
	}
	if n.loss > 0 && n.rng.Float64() < n.loss {
		return ErrDropped
	}
	return nil
}

// Transport is one memberlist's view of its host. It implements
// memberlist.NodeAwareTransport.
type Transport struct {
	h        *host
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	once     sync.Once
	shutdown chan struct{}
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// Addr is the host's address, host:port.
func (t *Transport) Addr() string { return t.h.addr }

// FinalAdvertiseAddr advertises the host's address.
func (t *Transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.h.nt.FinalAdvertiseAddr(ip, port)
}

// WriteTo sends a packet unless the network loses it.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a packet unless the network loses it.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.closed() {
		return time.Time{}, errors.New("faultnet: transport shut down")
	}
	if t.h.n.packetLost(t.h.addr, a.Addr) {
		return time.Now(), nil // lost on the way: the sender cannot tell
	}
	return t.h.nt.WriteToAddress(b, a)
}

// PacketCh is what this host receives.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream unless the network cuts or drops it.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream unless the network cuts or drops it. A
// dial on a cut link waits out timeout (or this transport's shutdown).
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.closed() {
		return nil, errors.New("faultnet: transport shut down")
	}
	switch err := t.h.n.streamFate(t.h.addr, a.Addr); {
	case errors.Is(err, ErrBlackholed):
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-t.shutdown:
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	case err != nil:
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	t.h.n.mu.Lock()
	dest := t.h.n.hosts[a.Addr]
	t.h.n.mu.Unlock()
	if dest != nil && dest.attached() == nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: ErrRefused}
	}
	c, err := t.h.nt.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return t.h.n.track(c, t.h.addr, a.Addr), nil
}

// StreamCh is what streams this host accepts.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown detaches the transport, as if its process died: the host's
// sockets stay with the Network, so another memberlist can Attach there.
func (t *Transport) Shutdown() error {
	t.once.Do(func() {
		close(t.shutdown)
		t.h.mu.Lock()
		if t.h.cur == t {
			t.h.cur = nil
		}
		t.h.mu.Unlock()
		t.h.n.resetStreams(t.h.addr)
	})
	return nil
}

func (t *Transport) closed() bool {
	select {
	case <-t.shutdown:
		return true
	default:
		return false
	}
}

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// conn is a stream through the network (see the package doc).
type conn struct {
	net.Conn
	n      *Network
	local  string // this end's host
	remote string // the other end's host; "" on an accepted stream: looked up
	closed chan struct{}
	once   sync.Once

	mu        sync.Mutex
	wdeadline time.Time
}

// track wraps a stream between the hosts local and remote.
func (n *Network) track(c net.Conn, local, remote string) *conn {
	fc := &conn{Conn: c, n: n, local: local, remote: remote, closed: make(chan struct{})}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.conns[fc] = struct{}{}
	if remote != "" {
		n.dialers[c.LocalAddr().String()] = local
	}
	return fc
}

// resetStreams resets every open stream to or from addr.
func (n *Network) resetStreams(addr string) {
	n.mu.Lock()
	var reset []*conn
	for c := range n.conns {
		if c.local == addr || c.remoteLocked() == addr {
			reset = append(reset, c)
		}
	}
	n.mu.Unlock()
	for _, c := range reset {
		_ = c.Close()
	}
}

// remoteLocked is the other end's host, if known; n.mu held.
func (c *conn) remoteLocked() string {
	if c.remote != "" {
		return c.remote
	}
	return c.n.dialers[c.Conn.RemoteAddr().String()]
}

// stalled reports whether the stream's link is cut either way, and
// whether it is down (reset).
func (c *conn) stalled() (cut, down bool) {
	c.n.mu.Lock()
	defer c.n.mu.Unlock()
	remote := c.remoteLocked()
	if remote == "" {
		return false, false
	}
	if c.n.down[c.local] || c.n.down[remote] {
		return false, true
	}
	return c.n.blockedLocked(c.local, remote) || c.n.blockedLocked(remote, c.local), false
}

// Write waits while the link is cut, until it heals or the write deadline
// passes.
func (c *conn) Write(b []byte) (int, error) {
	for {
		cut, down := c.stalled()
		if down {
			_ = c.Close()
			return 0, &net.OpError{Op: "write", Net: "tcp", Err: ErrRefused}
		}
		if !cut {
			return c.Conn.Write(b)
		}
		c.mu.Lock()
		deadline := c.wdeadline
		c.mu.Unlock()
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return 0, &net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded}
		}
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (c *conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdeadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdeadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.n.mu.Lock()
		delete(c.n.conns, c)
		if c.remote != "" {
			delete(c.n.dialers, c.Conn.LocalAddr().String())
		}
		c.n.mu.Unlock()
	})
	return c.Conn.Close()
}
