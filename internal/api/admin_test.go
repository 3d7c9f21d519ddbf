package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

var operatorPaths = []string{"/metrics", "/v1/cluster", "/healthz", "/readyz", "/admin/keyring"}

func adminServer(t *testing.T, adminAddr string) *Server {
	t.Helper()
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	m := &fakeMembers{}
	m.joined.Store(true)
	cfg := DefaultConfig()
	cfg.Addr, cfg.AdminAddr = "127.0.0.1:0", adminAddr
	srv, err := New(cfg, st, m, zerolog.Nop(), Options{Metrics: promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{})})
	require.NoError(t, err)
	return srv
}

func status(h http.Handler, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code
}

// Finding 4 of issue #20: with an admin listener, the operator's routes are
// there and not on the API's port; pprof is never on the API's port.
func TestAdminListenerTakesTheOperatorRoutes(t *testing.T) {
	srv := adminServer(t, "127.0.0.1:1")
	for _, p := range operatorPaths {
		assert.Equal(t, http.StatusNotFound, status(srv.Handler(), p), "API port: %s", p)
		assert.Equal(t, http.StatusOK, status(srv.AdminHandler(), p), "admin port: %s", p)
	}
	assert.Equal(t, http.StatusNotFound, status(srv.Handler(), "/debug/pprof/"))
	assert.Equal(t, http.StatusOK, status(srv.AdminHandler(), "/debug/pprof/"))
	assert.Equal(t, http.StatusNotFound, status(srv.AdminHandler(), "/v1/posts/p/likes"), "the API is not on the admin port")
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	assert.Contains(t, rec.Body.String(), "served on the admin listener", "the 404 says where to look")

	// Without one, everything but pprof stays on the API's port, as before.
	old := adminServer(t, "")
	for _, p := range operatorPaths {
		assert.Equal(t, http.StatusOK, status(old.Handler(), p), "API port: %s", p)
	}
	assert.Equal(t, http.StatusNotFound, status(old.Handler(), "/debug/pprof/"))
	require.ErrorIs(t, old.ServeAdmin(nil), ErrNoAdmin)
}

// The admin listener over loopback, and its part in a drain.
func TestServeAdmin(t *testing.T) {
	srv := adminServer(t, "127.0.0.1:1")
	api, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	admin, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 2)
	go func() { done <- srv.Serve(api) }()
	go func() { done <- srv.ServeAdmin(admin) }()

	get := func(ln net.Listener, path string) (int, map[string]any) {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		return resp.StatusCode, body
	}
	code, body := get(admin, "/readyz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ready", body["status"])
	code, _ = get(api, "/readyz")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = get(api, "/v1/posts/p/likes")
	assert.Equal(t, http.StatusOK, code)

	srv.Drain()
	code, body = get(admin, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "draining", body["status"])

	require.NoError(t, srv.Shutdown(context.Background()))
	require.NoError(t, <-done)
	require.NoError(t, <-done)
}

func TestAdminAddrIsNotAddr(t *testing.T) {
	c := DefaultConfig()
	c.AdminAddr = c.Addr
	assert.ErrorIs(t, c.Validate(), ErrConfig)
}

// The access log line names the request (its id, as the reply gave it),
// its route pattern and status; a 5xx's error line carries the id too.
func TestAccessLog(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	var logs syncBuf
	srv, err := New(DefaultConfig(), panicky{st}, &fakeMembers{}, zerolog.New(&logs))
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/posts/p%2Fq/likes", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	id := rec.Header().Get("X-Request-Id")
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(logs.lines()[0]), &line))
	assert.Equal(t, map[string]any{"level": "info", "component": "api", "req_id": id, "method": "GET", "path": "/v1/posts/p/q/likes",
		"route": "/v1/posts/{post}/likes", "status": float64(200), "bytes": line["bytes"], "duration_ms": line["duration_ms"],
		"remote": "192.0.2.1:1234", "message": "request"}, line)

	rec = httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/posts/p/likes", strings.NewReader(`{"user":"u"}`))
	req.Header.Set("X-Request-Id", "client-id-1")
	srv.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	assert.Equal(t, "client-id-1", rec.Header().Get("X-Request-Id"))
	all := strings.Join(logs.lines(), "\n")
	assert.Contains(t, all, `"req_id":"client-id-1","panic":"boom","message":"handler panicked"`)
	assert.Contains(t, all, `"req_id":"client-id-1","method":"POST"`)

	// Nothing is written below the logger's level.
	logs.reset()
	quiet, err := New(DefaultConfig(), st, &fakeMembers{}, zerolog.New(&logs).Level(zerolog.WarnLevel))
	require.NoError(t, err)
	quiet.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/posts/p/likes", nil))
	assert.Empty(t, logs.lines())
}

type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuf) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() == 0 {
		return nil
	}
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

func (b *syncBuf) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

type fakeKeyring struct{ primary string }

func (k fakeKeyring) Fingerprints() (string, []string) {
	return k.primary, []string{k.primary, "0123456789abcdef"}
}

// GET /admin/keyring shows the keys by fingerprint, the primary apart, and
// says when gossip is not encrypted.
func TestAdminKeyringShowsFingerprints(t *testing.T) {
	get := func(srv *Server) map[string]any {
		rec := httptest.NewRecorder()
		srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/admin/keyring", nil))
		require.Equal(t, http.StatusOK, rec.Code)
		var got map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
		return got
	}
	assert.Equal(t, map[string]any{"encrypted": false, "primary": "", "keys": []any{}}, get(adminServer(t, "127.0.0.1:1")))

	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.AdminAddr = "127.0.0.1:1"
	srv, err := New(cfg, st, &fakeMembers{}, zerolog.Nop(), Options{Keyring: fakeKeyring{"fedcba9876543210"}})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"encrypted": true, "primary": "fedcba9876543210", "keys": []any{"fedcba9876543210", "0123456789abcdef"}}, get(srv))
}
