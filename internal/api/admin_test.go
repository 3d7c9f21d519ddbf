package api

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

var operatorPaths = []string{"/metrics", "/v1/cluster", "/healthz", "/readyz"}

func adminServer(t *testing.T, adminAddr string) *Server {
	t.Helper()
	st, err := store.New(store.DefaultConfig(), nil)
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
		defer resp.Body.Close()
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
