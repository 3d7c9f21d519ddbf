package api

import (
	"context"
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
	st, err := store.New(store.DefaultConfig(), nil)
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
	st, err := store.New(store.DefaultConfig(), nil)
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
