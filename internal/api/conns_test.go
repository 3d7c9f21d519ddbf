package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

// Connections past MaxConns wait in the kernel's accept queue: a client
// that hoards connections with half-sent headers holds no more than
// MaxConns of them in this process; once they go, others are served
// (review of #20: connections were unbounded).
func TestConnectionsPastTheCapAreNotTaken(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	m := &fakeMembers{}
	m.joined.Store(true)
	cfg := DefaultConfig()
	cfg.MaxConns = MinConns
	cfg.ReadHeaderTimeout = time.Minute // the hoarders are not cut: the cap must hold on its own
	srv, err := New(cfg, st, m, zerolog.Nop())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()); <-served })
	url := "http://" + ln.Addr().String() + "/healthz"

	var hoard []net.Conn
	for range MinConns {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		_, err = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "))
		require.NoError(t, err)
		hoard = append(hoard, c)
	}
	quick := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	// Until the hoard goes, a request is not even read: the cap holds.
	for range 3 {
		_, err := quick.Get(url)
		require.Error(t, err, "a connection past the cap was served")
	}
	for _, c := range hoard {
		c.Close()
	}
	require.Eventually(t, func() bool {
		resp, err := quick.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "served once the hoard is gone")
}

// A single like takes its write slot once its body is read: clients that
// send their bodies slowly hold connections, not slots, and another
// client's like is served meanwhile (review of #20).
func TestStalledLikeBodiesHoldNoWriteSlot(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	m := &fakeMembers{}
	m.joined.Store(true)
	cfg := DefaultConfig()
	cfg.MaxWrites = 2
	cfg.ReadTimeout = time.Minute // the stalled bodies are not cut: the slots must stay free on their own
	srv, err := New(cfg, st, m, zerolog.Nop())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()); <-served })

	for range 8 { // four times the slots, each with its body half sent
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = c.Write([]byte("POST /v1/posts/p/likes HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{\"user\":"))
		require.NoError(t, err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	require.Eventually(t, func() bool {
		resp, err := hc.Post("http://"+ln.Addr().String()+"/v1/posts/p/likes", "application/json", strings.NewReader(`{"user":"alice"}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusCreated
	}, 10*time.Second, 20*time.Millisecond, "a like is served beside the stalled bodies")
}

// serveBulkTest serves cfg on a real listener (bodies must arrive slowly,
// over a connection) and returns its address.
func serveBulkTest(t *testing.T, cfg Config) string {
	t.Helper()
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	m := &fakeMembers{}
	m.joined.Store(true)
	cfg.ReadTimeout = time.Minute // the stalled bodies are not cut: the bounds must hold on their own
	srv, err := New(cfg, st, m, zerolog.Nop())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()); <-served })
	return ln.Addr().String()
}

// stallBulk opens a bulk import that sends sent of its body and stalls.
func stallBulk(t *testing.T, addr, sent string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = fmt.Fprintf(c, "POST /v1/likes HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(sent)+1000, sent)
	require.NoError(t, err)
	return c
}

// postBulk posts a small bulk import and returns its status and error code.
func postBulk(addr, user string) (int, string) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Post("http://"+addr+"/v1/likes", "application/json",
		strings.NewReader(`{"likes":[{"post":"p","user":"`+user+`"}]}`))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var body errorBody
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		return resp.StatusCode, "no Retry-After"
	}
	return resp.StatusCode, body.Error.Code
}

// A bulk import takes its slot once its body is read: clients that stall
// their bodies hold connections, not the --max-concurrent-bulk slots, and
// another client's import is served meanwhile (review of #20).
func TestStalledBulkBodiesHoldNoBulkSlot(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBulk = 2
	addr := serveBulkTest(t, cfg)
	for range 4 * cfg.MaxBulk {
		stallBulk(t, addr, `{"likes":[{"post":"p","user":`)
	}
	require.Eventually(t, func() bool {
		status, _ := postBulk(addr, "alice")
		return status == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "a bulk import is served beside the stalled bodies")
}

// Bulk bodies being read count against MaxBulkReadBytes: past it a body
// is refused (429 overloaded, Retry-After) rather than held, so many slow
// bodies cannot hold unbounded memory; once the slow ones go, imports are
// read again.
func TestBulkBodiesBeingReadAreBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBulkBodyBytes = 64 << 10
	cfg.MaxBulkReadBytes = 64 << 10
	addr := serveBulkTest(t, cfg)
	var b strings.Builder
	b.WriteString(`{"likes":[`)
	for i := 0; int64(b.Len()) < cfg.MaxBulkReadBytes-30; i++ {
		fmt.Fprintf(&b, `{"post":"p","user":"u%d"},`, i)
	}
	slow := stallBulk(t, addr, b.String()) // nearly all MaxBulkReadBytes sent, then nothing
	require.Eventually(t, func() bool {
		status, code := postBulk(addr, "alice")
		return status == http.StatusTooManyRequests && code == codeOverloaded
	}, 10*time.Second, 20*time.Millisecond, "an import past the bytes being read is refused")
	slow.Close()
	require.Eventually(t, func() bool {
		status, _ := postBulk(addr, "alice")
		return status == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "served once the slow body is gone")
}
