package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

const (
	writeToken = "w-0123456789abcdef"
	readToken  = "r-0123456789abcdef"
)

func tokenServer(t *testing.T, file string) (*Server, *store.Store, *refusals) {
	t.Helper()
	tokens, err := ParseTokens(strings.NewReader(file))
	require.NoError(t, err)
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	m := &fakeMembers{}
	m.joined.Store(true)
	seen := &refusals{got: map[string]int{}}
	srv, err := New(DefaultConfig(), st, m, zerolog.Nop(), Options{Tokens: tokens, Observer: seen})
	require.NoError(t, err)
	return srv, st, seen
}

func withToken(h http.Handler, method, target, body, token string) *httptest.ResponseRecorder {
	req := newRequest(method, target, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestTokensGuardWrites(t *testing.T) {
	srv, st, seen := tokenServer(t, "# tokens\n\nwrite importer "+writeToken+"\n")
	h := srv.Handler()
	for _, w := range [][2]string{
		{"/v1/posts/p/likes", `{"user":"u"}`},
		{"/like", `{"post":"p","user":"u"}`},
		{"/v1/likes", `{"likes":[{"post":"p","user":"u"}]}`},
	} {
		rec := withToken(h, "POST", w[0], w[1], "")
		assertErrorCode(t, rec, codeUnauthorized)
		assert.Equal(t, http.StatusUnauthorized, rec.Code, w[0])
		assert.Equal(t, `Bearer realm="likesd"`, rec.Header().Get("WWW-Authenticate"))
		rec = withToken(h, "POST", w[0], w[1], writeToken+"x")
		assert.Equal(t, http.StatusUnauthorized, rec.Code, w[0])
		assertErrorCode(t, rec, codeUnauthorized)
		rec = withToken(h, "POST", w[0], w[1], strings.ToUpper(writeToken))
		assert.Equal(t, http.StatusUnauthorized, rec.Code, w[0])
	}
	assert.False(t, st.Has("p", "u"), "nothing stored without a token")
	assert.Equal(t, 9, seen.count(RefusedAuth))
	assert.Equal(t, http.StatusCreated, withToken(h, "POST", "/v1/posts/p/likes", `{"user":"u"}`, writeToken).Code)
	assert.Equal(t, http.StatusOK, withToken(h, "POST", "/v1/likes", `{"likes":[{"post":"p","user":"u"}]}`, writeToken).Code)

	// No read tokens: reads are open; the admin routes always are.
	for _, p := range []string{"/v1/posts/p/likes", "/v1/counts?post=p", "/likes?post=p", "/healthz", "/readyz", "/v1/cluster"} {
		assert.Equal(t, http.StatusOK, withToken(h, "GET", p, "", "").Code, p)
	}
}

func TestReadTokens(t *testing.T) {
	srv, st, _ := tokenServer(t, "write importer "+writeToken+"\nread dashboard "+readToken+"\n")
	h := srv.Handler()
	rec := withToken(h, "POST", "/v1/posts/p/likes", `{"user":"u"}`, readToken)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assertErrorCode(t, rec, codeForbidden)
	assert.False(t, st.Has("p", "u"))
	for _, p := range []string{"/v1/posts/p/likes", "/v1/posts/p/likes/u", "/v1/posts/p/likers", "/v1/counts?post=p", "/likes?post=p"} {
		assert.Equal(t, http.StatusUnauthorized, withToken(h, "GET", p, "", "").Code, p)
		assert.Equal(t, http.StatusOK, withToken(h, "GET", p, "", readToken).Code, p)
		assert.Equal(t, http.StatusOK, withToken(h, "GET", p, "", writeToken).Code, "a write token reads too: %s", p)
	}
	assert.Equal(t, http.StatusOK, withToken(h, "GET", "/readyz", "", "").Code, "probes carry no token")
}

func TestParseTokensRejects(t *testing.T) {
	for name, file := range map[string]string{
		"empty":          "# nothing\n",
		"two fields":     "write " + writeToken + "\n",
		"scope":          "admin x " + writeToken + "\n",
		"short":          "write x short\n",
		"name twice":     "write x " + writeToken + "\nread x " + readToken + "\n",
		"token twice":    "write x " + writeToken + "\nread y " + writeToken + "\n",
		"not printable":  "write x " + writeToken + "\u00e9\n",
		"four fields":    "write x " + writeToken + " extra\n",
		"bearer in file": "write x Bearer\n",
	} {
		_, err := ParseTokens(strings.NewReader(file))
		assert.ErrorIs(t, err, ErrTokens, name)
	}
	tok, err := ParseTokens(strings.NewReader("  write  a  " + writeToken + "  \n# c\nread b " + readToken))
	require.NoError(t, err)
	got, ok := tok.lookup(readToken)
	require.True(t, ok)
	assert.Equal(t, "b", got.name)
	assert.Equal(t, ScopeRead, got.scope)
	_, ok = tok.lookup(readToken[:len(readToken)-1])
	assert.False(t, ok)
}

// With tokens, bulk rate limits count by the token's name, whatever the
// address: two clients behind one proxy have their own buckets.
func TestBulkRateByToken(t *testing.T) {
	tokens, err := ParseTokens(strings.NewReader("write a " + writeToken + "\nwrite b " + readToken + "\n"))
	require.NoError(t, err)
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.BulkRate, cfg.BulkBurst = 0.001, 1
	srv, err := New(cfg, st, &fakeMembers{}, zerolog.Nop(), Options{Tokens: tokens})
	require.NoError(t, err)
	body := `{"likes":[{"post":"p","user":"u"}]}`
	assert.Equal(t, http.StatusOK, withToken(srv.Handler(), "POST", "/v1/likes", body, writeToken).Code)
	assert.Equal(t, http.StatusTooManyRequests, withToken(srv.Handler(), "POST", "/v1/likes", body, writeToken).Code)
	assert.Equal(t, http.StatusOK, withToken(srv.Handler(), "POST", "/v1/likes", body, readToken).Code, "token b has its own bucket on the same address")
}

// The scheme is case-insensitive (RFC 7235), the token is not (review of
// #20).
func TestTheBearerSchemeIsCaseInsensitive(t *testing.T) {
	srv, _, _ := tokenServer(t, "write importer "+writeToken+"\n")
	h := srv.Handler()
	for i, scheme := range []string{"bearer ", "BEARER ", "BeArEr "} {
		req := newRequest("POST", "/v1/posts/p/likes", fmt.Sprintf(`{"user":"u%d"}`, i))
		req.Header.Set("Authorization", scheme+writeToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusCreated, rec.Code, scheme)
	}
	for _, auth := range []string{"Bearer", "Bearer ", "Bearerx " + writeToken, "Basic " + writeToken} {
		req := newRequest("POST", "/v1/posts/p/likes", `{"user":"x"}`)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusUnauthorized, rec.Code, auth)
	}
}
