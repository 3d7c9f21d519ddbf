package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

func TestErrorMessagesSayWhatIsWrong(t *testing.T) {
	tests := []struct {
		name, method, target, body, want string
	}{
		{"bad escape in the query", "GET", "/v1/counts?post=%zz", ``, `invalid URL escape "%zz"`},
		{"case of a field", "POST", "/v1/posts/p/likes", `{"User":"casey"}`, `unknown field "User": field names are case-sensitive (did you mean "user"?)`},
		{"not an object", "POST", "/v1/posts/p/likes", `"alice"`, `a like must be a JSON object like {"user":"alice"}`},
		{"wrong type", "POST", "/v1/posts/p/likes", `{"user":7}`, `field "user" must be a string, not a number`},
		{"surrogate", "POST", "/v1/posts/p/likes", `{"user":"a\ud800b"}`, `user is not valid UTF-8`},
		{"duplicate", "POST", "/v1/posts/p/likes", `{"user":"a","user":"b"}`, `field "user" appears more than once`},
		{"repeated post", "GET", "/likes?post=p1&post=p2", ``, `post is given 2 times; it takes one value`},
		{"empty detail", "GET", "/likes?post=p1&detail=", ``, `detail must be 1, true, 0 or false, got ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newFixture(t).do(t, tt.method, tt.target, tt.body)
			assert.Contains(t, got.body["error"].(map[string]any)["message"], tt.want)
		})
	}
}

func TestSurrogatePairsAndEscapesAreFine(t *testing.T) {
	f := newFixture(t)
	got := f.do(t, "POST", "/v1/posts/p/likes", `{"u\u0073er":"\ud83d\ude00 \u00fc"}`)
	require.Equal(t, http.StatusCreated, got.status, got.raw)
	assert.Equal(t, "😀 ü", got.body["user"])
	assert.True(t, f.store.Has("p", "😀 ü"))
}

// HEAD works wherever GET does: same status and headers, no body.
func TestHeadWhereverGet(t *testing.T) {
	f := newFixture(t)
	f.store.Like("p1", "alice")
	ts := httptest.NewServer(f.srv.Handler())
	defer ts.Close()
	for _, target := range []string{"/v1/posts/p1/likes", "/v1/posts/p1/likes/alice", "/v1/posts/p1/likers", "/v1/counts?post=p1",
		"/v1/cluster", "/healthz", "/readyz", "/likes?post=p1", "/v1/counts"} {
		t.Run(target, func(t *testing.T) {
			get := httptest.NewRecorder()
			f.srv.Handler().ServeHTTP(get, httptest.NewRequest("GET", target, nil))
			resp, err := http.Head(ts.URL + target)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, get.Code, resp.StatusCode)
			assert.Empty(t, body)
			assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
			assert.NotEmpty(t, resp.Header.Get("X-Request-Id"))
		})
	}
}

// rawExchange sends raw bytes to a real server (Serve, as likesd runs it)
// and returns its reply.
func rawExchange(t *testing.T, srv *Server, request string) *http.Response {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = io.WriteString(conn, request)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	return resp
}

// Requests net/http rejects before any handler runs are answered in JSON
// too, with a request id; so is OPTIONS *, which net/http would answer
// with an empty 200.
func TestEveryReplyIsJSONEvenFromNetHTTP(t *testing.T) {
	tests := []struct {
		name, request string
		wantStatus    int
		wantCode      string
		wantAllow     string
	}{
		{"bad escape in the path", "POST /v1/posts/a%zz/likes HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 400, "bad_request", ""},
		{"no Host header", "GET /healthz HTTP/1.1\r\n\r\n", 400, "bad_request", ""},
		{"garbage request line", "HELLO\r\n\r\n", 400, "bad_request", ""},
		{"headers too large", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431, "request_header_fields_too_large", ""},
		{"unknown transfer coding", "POST /like HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: zip\r\n\r\n", 501, "not_implemented", ""},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 405, codeMethodNotAllowed, "GET, HEAD, POST"},
		{"GET *", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawExchange(t, newFixture(t).srv, tt.request)
			defer resp.Body.Close()
			assert.Equal(t, tt.wantStatus, resp.StatusCode)
			assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
			assert.NotEmpty(t, resp.Header.Get("X-Request-Id"))
			assert.Equal(t, tt.wantAllow, resp.Header.Get("Allow"))
			var body errorBody
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
			assert.Equal(t, tt.wantCode, body.Error.Code)
			assert.NotEmpty(t, body.Error.Message)
		})
	}
}

// A handler's reply is never mistaken for one of net/http's.
func TestHandlerRepliesPassThrough(t *testing.T) {
	resp := rawExchange(t, newFixture(t).srv, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\r\n\r\n")
	defer resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "abc", resp.Header.Get("X-Request-Id"))
}

func TestParseNetHTTPError(t *testing.T) {
	tests := []struct {
		name, raw   string
		wantOK      bool
		wantStatus  int
		wantMessage string
	}{
		{"plain 400", "HTTP/1.1 400 Bad Request" + netHTTPErrorHeaders + "400 Bad Request", true, 400, "malformed HTTP request"},
		{"with a reason", "HTTP/1.1 400 Bad Request: missing required Host header" + netHTTPErrorHeaders + "400 Bad Request: missing required Host header", true, 400, "missing required Host header"},
		{"501", "HTTP/1.1 501 Not Implemented" + netHTTPErrorHeaders + "Unsupported transfer encoding", true, 501, "Unsupported transfer encoding"},
		{"a handler's text reply", "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nDate: x\r\n\r\nno", false, 0, ""},
		{"same two headers, then more", "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nDate: x\r\n\r\n", false, 0, ""},
		{"a body chunk", "HTTP/1.1 400 Bad Request", false, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, message, ok := parseNetHTTPError([]byte(tt.raw))
			require.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.wantStatus, status)
			assert.True(t, strings.HasPrefix(message, tt.wantMessage), message)
		})
	}
}

// Finding 1 of issue #20: net/http's own bound on headers is 1 MiB; the
// server's is Config.MaxHeaderBytes.
func TestHeadersAreBoundedByConfig(t *testing.T) {
	big := strings.Repeat("a", 100<<10) // over the 64 KiB default, far under 1 MiB
	resp := rawExchange(t, newFixture(t).srv, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+big+"\r\n\r\n")
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)

	cfg := DefaultConfig()
	cfg.MaxHeaderBytes = 256 << 10
	resp = rawExchange(t, newFixtureConfig(t, cfg).srv, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+big+"\r\n\r\n")
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a larger bound lets it through")
}

type methodsSeen struct {
	nopObserver
	mu      sync.Mutex
	methods map[string]bool
}

func (m *methodsSeen) ObserveRequest(_, method string, _ int, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.methods[method] = true
}

// The Observer is given methods from a closed set, whatever the client
// sends.
func TestObservedMethodsAreAClosedSet(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	seen := &methodsSeen{methods: map[string]bool{}}
	srv, err := New(DefaultConfig(), st, &fakeMembers{}, zerolog.Nop(), Options{Observer: seen})
	require.NoError(t, err)
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW", "X-1", "get"} {
		srv.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(m, "/v1/posts/p/likes", nil))
	}
	assert.Equal(t, map[string]bool{"GET": true, "HEAD": true, "POST": true, "other": true}, seen.methods)
}
