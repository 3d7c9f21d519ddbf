package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/vclock"
)

type fakeMembers struct{ joined atomic.Bool }

func (f *fakeMembers) Self() string { return "n1" }
func (f *fakeMembers) Members() []Member {
	return []Member{{Name: "n1", Addr: "127.0.0.1:7946", State: "alive"}, {Name: "n2", Addr: "127.0.0.1:7947", State: "suspect"}}
}
func (f *fakeMembers) Ready() bool { return f.joined.Load() }

type fixture struct {
	srv     *Server
	store   *store.Store
	members *fakeMembers
}

func newFixture(t testing.TB) *fixture { return newFixtureConfig(t, DefaultConfig()) }

func newFixtureConfig(t testing.TB, cfg Config) *fixture {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	m := &fakeMembers{}
	m.joined.Store(true)
	srv, err := New(cfg, st, m, zerolog.Nop())
	require.NoError(t, err)
	return &fixture{srv: srv, store: st, members: m}
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (f *fixture) do(t testing.TB, method, target, body string, header ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	out := reply{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	require.Equal(t, "application/json; charset=utf-8", rec.Header().Get("Content-Type"), "every reply is JSON: %s %s", method, target)
	require.NotEmpty(t, rec.Header().Get("X-Request-Id"), "every reply has a request id: %s %s", method, target)
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out.body), "body %q", rec.Body.String())
	return out
}

func TestLikeFirstThenRepeat(t *testing.T) {
	f := newFixture(t)
	got := f.do(t, "POST", "/v1/posts/p1/likes", `{"user":"alice"}`, "Content-Type", "application/json")
	assert.Equal(t, http.StatusCreated, got.status)
	assert.Equal(t, map[string]any{"post": "p1", "user": "alice", "liked": true, "count": float64(1),
		"replicas": float64(1), "version": Version{Post: "p1", User: "alice"}.String()}, got.body)

	got = f.do(t, "POST", "/v1/posts/p1/likes", `{"user":"alice"}`)
	assert.Equal(t, http.StatusOK, got.status, "a retried like changes nothing")
	assert.Equal(t, map[string]any{"post": "p1", "user": "alice", "liked": true, "count": float64(1),
		"replicas": float64(1), "version": Version{Post: "p1", User: "alice"}.String()}, got.body)

	got = f.do(t, "POST", "/v1/posts/p1/likes", `{"user":"bob"}`)
	assert.Equal(t, http.StatusCreated, got.status)
	assert.Equal(t, float64(2), got.body["count"])
	assert.NotEmpty(t, got.header.Get("X-Request-Id"))
}

func TestReads(t *testing.T) {
	f := newFixture(t)
	for _, u := range []string{"carol", "alice", "bob"} {
		f.store.Like("p1", u)
	}
	tests := []struct {
		name   string
		target string
		want   map[string]any
	}{
		{"count", "/v1/posts/p1/likes", map[string]any{"post": "p1", "count": float64(3)}},
		{"count of a post never liked", "/v1/posts/nope/likes", map[string]any{"post": "nope", "count": float64(0)}},
		{"liked", "/v1/posts/p1/likes/alice", map[string]any{"post": "p1", "user": "alice", "liked": true}},
		{"not liked", "/v1/posts/p1/likes/zed", map[string]any{"post": "p1", "user": "zed", "liked": false}},
		{"likers first page", "/v1/posts/p1/likers?limit=2", map[string]any{"post": "p1", "count": float64(3), "users": []any{"alice", "bob"}, "next": "bob"}},
		{"likers next page", "/v1/posts/p1/likers?limit=2&after=bob", map[string]any{"post": "p1", "count": float64(3), "users": []any{"carol"}}},
		{"likers default limit", "/v1/posts/p1/likers", map[string]any{"post": "p1", "count": float64(3), "users": []any{"alice", "bob", "carol"}}},
		{"likers exact fit has no next", "/v1/posts/p1/likers?limit=3", map[string]any{"post": "p1", "count": float64(3), "users": []any{"alice", "bob", "carol"}}},
		{"likers of nothing", "/v1/posts/none/likers", map[string]any{"post": "none", "count": float64(0), "users": []any{}}},
		{"counts", "/v1/counts?post=p1&post=p2", map[string]any{"counts": map[string]any{"p1": float64(3), "p2": float64(0)}}},
		{"cluster", "/v1/cluster", map[string]any{"self": "n1", "members": []any{
			map[string]any{"name": "n1", "addr": "127.0.0.1:7946", "state": "alive"},
			map[string]any{"name": "n2", "addr": "127.0.0.1:7947", "state": "suspect"}}}},
		{"healthz", "/healthz", map[string]any{"status": "ok"}},
		{"readyz", "/readyz", map[string]any{"status": "ready"}},
		{"alias count", "/likes?post=p1", map[string]any{"post": "p1", "count": float64(3)}},
		{"alias detail", "/likes?post=p1&detail=1", map[string]any{"post": "p1", "count": float64(3), "users": []any{"alice", "bob", "carol"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := f.do(t, "GET", tt.target, "")
			assert.Equal(t, http.StatusOK, got.status, got.raw)
			assert.Equal(t, tt.want, got.body)
		})
	}
}

func TestIDsAreEscapedPathSegments(t *testing.T) {
	f := newFixture(t)
	got := f.do(t, "POST", "/v1/posts/a%2Fb%20c/likes", `{"user":"ü/ser"}`)
	require.Equal(t, http.StatusCreated, got.status, got.raw)
	assert.Equal(t, "a/b c", got.body["post"])
	assert.Equal(t, 1, f.store.Count("a/b c"))

	got = f.do(t, "GET", "/v1/posts/a%2Fb%20c/likes/%C3%BC%2Fser", "")
	assert.Equal(t, true, got.body["liked"])
	got = f.do(t, "GET", "/v1/posts/100%25/likes", "")
	assert.Equal(t, "100%", got.body["post"], "a literal percent sign round-trips")
}

func TestArticleAliasLike(t *testing.T) {
	f := newFixture(t)
	// The article's curl sent JSON with curl's default form Content-Type.
	got := f.do(t, "POST", "/like", `{"post":"p1","user":"alice"}`, "Content-Type", "application/x-www-form-urlencoded")
	assert.Equal(t, http.StatusCreated, got.status)
	assert.Equal(t, map[string]any{"post": "p1", "user": "alice", "liked": true, "count": float64(1),
		"replicas": float64(1), "version": Version{Post: "p1", User: "alice"}.String()}, got.body)
	got = f.do(t, "POST", "/like", `{"post":"p1","user":"alice"}`)
	assert.Equal(t, http.StatusOK, got.status)
	assert.Equal(t, 1, f.store.Count("p1"))
}

func TestBadInputIsRejectedAndStoresNothing(t *testing.T) {
	long := strings.Repeat("x", 257)
	tests := []struct {
		name       string
		method     string
		target     string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"malformed json", "POST", "/v1/posts/p/likes", `{"user":`, 400, codeBadJSON},
		{"not an object", "POST", "/v1/posts/p/likes", `"alice"`, 400, codeBadJSON},
		{"empty body", "POST", "/v1/posts/p/likes", ``, 400, codeBadJSON},
		{"user not a string", "POST", "/v1/posts/p/likes", `{"user":7}`, 400, codeBadJSON},
		{"two values", "POST", "/v1/posts/p/likes", `{"user":"a"}{"user":"b"}`, 400, codeBadJSON},
		{"trailing garbage", "POST", "/v1/posts/p/likes", `{"user":"a"} x`, 400, codeBadJSON},
		{"unknown field", "POST", "/v1/posts/p/likes", `{"user":"a","extra":1}`, 400, codeUnknownField},
		{"missing user", "POST", "/v1/posts/p/likes", `{}`, 400, codeInvalidID},
		{"null user", "POST", "/v1/posts/p/likes", `{"user":null}`, 400, codeInvalidID},
		{"empty user", "POST", "/v1/posts/p/likes", `{"user":""}`, 400, codeInvalidID},
		{"user too long", "POST", "/v1/posts/p/likes", `{"user":"` + long + `"}`, 400, codeInvalidID},
		{"post too long", "POST", "/v1/posts/" + long + "/likes", `{"user":"a"}`, 400, codeInvalidID},
		{"user not utf-8", "POST", "/v1/posts/p/likes", "{\"user\":\"\xff\"}", 400, codeInvalidID},
		{"post not utf-8", "POST", "/v1/posts/%FF/likes", `{"user":"a"}`, 400, codeInvalidID},
		{"user with control char", "POST", "/v1/posts/p/likes", `{"user":"a\u0007b"}`, 400, codeInvalidID},
		{"post with newline", "POST", "/v1/posts/a%0Ab/likes", `{"user":"a"}`, 400, codeInvalidID},
		{"body too large", "POST", "/v1/posts/p/likes", `{"user":"` + strings.Repeat("a", 70<<10) + `"}`, 413, codeBodyTooLarge},
		{"alias missing post", "POST", "/like", `{"user":"a"}`, 400, codeInvalidID},
		{"alias unknown field", "POST", "/like", `{"post":"p","user":"a","x":1}`, 400, codeUnknownField},
		{"alias get without post", "GET", "/likes", ``, 400, codeInvalidID},
		{"alias bad detail", "GET", "/likes?post=p&detail=maybe", ``, 400, codeInvalidParam},
		{"limit zero", "GET", "/v1/posts/p/likers?limit=0", ``, 400, codeInvalidParam},
		{"limit too big", "GET", "/v1/posts/p/likers?limit=1001", ``, 400, codeInvalidParam},
		{"limit not a number", "GET", "/v1/posts/p/likers?limit=ten", ``, 400, codeInvalidParam},
		{"after too long", "GET", "/v1/posts/p/likers?after=" + long, ``, 400, codeInvalidID},
		{"counts without posts", "GET", "/v1/counts", ``, 400, codeInvalidParam},
		{"counts with a bad post", "GET", "/v1/counts?post=ok&post=", ``, 400, codeInvalidID},
		{"field name in another case", "POST", "/v1/posts/p/likes", `{"User":"casey"}`, 400, codeUnknownField},
		{"field name in capitals", "POST", "/v1/posts/p/likes", `{"USER":"x"}`, 400, codeUnknownField},
		{"alias field name in another case", "POST", "/like", `{"Post":"p","user":"x"}`, 400, codeUnknownField},
		{"lone high surrogate", "POST", "/v1/posts/p/likes", `{"user":"a\ud800b"}`, 400, codeInvalidID},
		{"lone low surrogate", "POST", "/like", `{"post":"\udc00","user":"a"}`, 400, codeInvalidID},
		{"duplicate field", "POST", "/v1/posts/p/likes", `{"user":"a","user":"b"}`, 400, codeBadJSON},
		{"duplicate field, one null", "POST", "/like", `{"post":"p","user":null,"user":"b"}`, 400, codeBadJSON},
		{"array body", "POST", "/v1/posts/p/likes", `["alice"]`, 400, codeBadJSON},
		{"user an object", "POST", "/v1/posts/p/likes", `{"user":{"id":1}}`, 400, codeBadJSON},
		{"unterminated object", "POST", "/v1/posts/p/likes", `{"user":"a"`, 400, codeBadJSON},
		{"counts with a bad escape", "GET", "/v1/counts?post=%zz", ``, 400, codeInvalidParam},
		{"likers with a bad escape", "GET", "/v1/posts/p/likers?after=%zz", ``, 400, codeInvalidParam},
		{"alias with a bad escape", "GET", "/likes?post=%zz", ``, 400, codeInvalidParam},
		{"alias empty detail", "GET", "/likes?post=p&detail=", ``, 400, codeInvalidParam},
		{"alias two posts", "GET", "/likes?post=p1&post=p2", ``, 400, codeInvalidParam},
		{"alias two details", "GET", "/likes?post=p1&detail=1&detail=0", ``, 400, codeInvalidParam},
		{"likers two limits", "GET", "/v1/posts/p/likers?limit=1&limit=2", ``, 400, codeInvalidParam},
		{"likers two afters", "GET", "/v1/posts/p/likers?after=a&after=b", ``, 400, codeInvalidParam},
		{"unknown route", "GET", "/v2/nothing", ``, 404, codeNotFound},
		{"unknown route under v1", "GET", "/v1/posts/p/dislikes", ``, 404, codeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			got := f.do(t, tt.method, tt.target, tt.body)
			assert.Equal(t, tt.wantStatus, got.status, got.raw)
			errBody, ok := got.body["error"].(map[string]any)
			require.True(t, ok, "error shape: %s", got.raw)
			assert.Equal(t, tt.wantCode, errBody["code"])
			assert.NotEmpty(t, errBody["message"])
			assert.NotRegexp(t, `struct|\*string|json:|map\[|interface|api\.`, errBody["message"], "messages speak JSON, not Go")
			assert.Zero(t, f.store.Stats().Likes, "nothing is stored")
		})
	}
}

func TestCountsAtMostAThousandPosts(t *testing.T) {
	f := newFixture(t)
	q := strings.Repeat("post=p&", 1000)
	assert.Equal(t, http.StatusOK, f.do(t, "GET", "/v1/counts?"+q, "").status)
	got := f.do(t, "GET", "/v1/counts?"+q+"post=q", "")
	assert.Equal(t, http.StatusBadRequest, got.status)
}

func TestMethodNotAllowedListsAllowed(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		method, target, wantAllow string
	}{
		{"DELETE", "/v1/posts/p1/likes", "GET, HEAD, POST"},
		{"PUT", "/v1/posts/a%2Fb/likes", "GET, HEAD, POST"},
		{"POST", "/v1/counts", "GET, HEAD"},
		{"GET", "/like", "POST"},
		{"GET", "/v1/likes", "POST"},
		{"POST", "/healthz", "GET, HEAD"},
		{"OPTIONS", "/v1/cluster", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			got := f.do(t, tt.method, tt.target, "")
			assert.Equal(t, http.StatusMethodNotAllowed, got.status)
			assert.Equal(t, tt.wantAllow, got.header.Get("Allow"))
			assert.Equal(t, codeMethodNotAllowed, got.body["error"].(map[string]any)["code"])
		})
	}
}

func TestReadiness(t *testing.T) {
	f := newFixture(t)
	f.members.joined.Store(false)
	got := f.do(t, "GET", "/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, got.status)
	assert.Equal(t, "starting", got.body["status"])

	f.members.joined.Store(true)
	assert.Equal(t, http.StatusOK, f.do(t, "GET", "/readyz", "").status)

	f.srv.Drain()
	got = f.do(t, "GET", "/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, got.status)
	assert.Equal(t, "draining", got.body["status"])
	assert.Equal(t, http.StatusOK, f.do(t, "GET", "/healthz", "").status, "liveness is unaffected")
}

// panicky is a Likes whose writes panic: the server must answer, not die.
type panicky struct{ *store.Store }

func (panicky) Like(string, string) (bool, int) { panic("boom") }

func TestPanicBecomesJSON500(t *testing.T) {
	st, _ := store.New(store.DefaultConfig())
	srv, err := New(DefaultConfig(), panicky{st}, &fakeMembers{}, zerolog.Nop())
	require.NoError(t, err)
	f := &fixture{srv: srv, store: st}
	got := f.do(t, "POST", "/v1/posts/p/likes", `{"user":"a"}`)
	assert.Equal(t, http.StatusInternalServerError, got.status)
	assert.Equal(t, codeInternal, got.body["error"].(map[string]any)["code"])
}

func TestRequestIDIsEchoed(t *testing.T) {
	f := newFixture(t)
	got := f.do(t, "GET", "/healthz", "", "X-Request-Id", "abc-123")
	assert.Equal(t, "abc-123", got.header.Get("X-Request-Id"))
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	for _, d := range []time.Duration{0, time.Minute} {
		c := DefaultConfig()
		c.ReadWait = d
		require.NoError(t, c.Validate(), "ReadWait %v", d)
	}
	for name, tweak := range map[string]func(*Config){
		"addr":                      func(c *Config) { c.Addr = "" },
		"body":                      func(c *Config) { c.MaxBodyBytes = 0 },
		"id":                        func(c *Config) { c.MaxIDBytes = 0 },
		"page":                      func(c *Config) { c.DefaultPageSize = 2000 },
		"batch":                     func(c *Config) { c.MaxBatchPosts = 0 },
		"timeouts":                  func(c *Config) { c.WriteTimeout = 0 },
		"read wait negative":        func(c *Config) { c.ReadWait = -time.Millisecond },
		"read wait too long":        func(c *Config) { c.ReadWait = time.Minute + 1 },
		"headers too small":         func(c *Config) { c.MaxHeaderBytes = 1 << 10 },
		"headers too large":         func(c *Config) { c.MaxHeaderBytes = 2 << 20 },
		"body too large":            func(c *Config) { c.MaxBodyBytes = 2 << 20 },
		"id too long":               func(c *Config) { c.MaxIDBytes = 1 << 20 },
		"bulk too large":            func(c *Config) { c.MaxBulkBodyBytes = 1 << 30 },
		"bulk reading below a body": func(c *Config) { c.MaxBulkReadBytes = c.MaxBulkBodyBytes - 1 },
		"bulk reading too large":    func(c *Config) { c.MaxBulkReadBytes = MaxBulkReadLimit + 1 },
	} {
		c := DefaultConfig()
		tweak(&c)
		assert.ErrorIs(t, c.Validate(), ErrConfig, name)
	}
}

// FuzzHandler throws arbitrary methods, paths and bodies at the whole API:
// it must always answer with JSON, never 5xx, and store only valid ids.
func FuzzHandler(f *testing.F) {
	f.Add("POST", "/v1/posts/p1/likes", `{"user":"alice"}`)
	f.Add("POST", "/like", `{"post":"p1","user":"alice"}`)
	f.Add("GET", "/v1/posts/a%2Fb/likers?limit=2&after=x", ``)
	f.Add("GET", "/v1/counts?post=a&post=b", ``)
	f.Add("POST", "/v1/posts/%ff/likes", "{\"user\":\"\\u0000\"}")
	f.Add("DELETE", "/likes?post=p&detail=1", `[]`)
	f.Add("POST", "/v1/posts/p/likes", `{"User":"a","user":"a\ud800"}`)
	f.Add("POST", "/v1/likes", `{"likes":[{"post":"p1","user":"alice"},{"post":"p1","user":"bob"}]}`)
	f.Add("POST", "/v1/likes", `{"likes":[{"post":"p","user":"a","user":"b"},"x",{"Post":"p"},{"post":"\udc00","user":7},[]]}`)
	f.Add("POST", "/v1/likes", `{"likes":[{"post":"p","user":"a"}],"likes":[]}`)
	f.Add("POST", "/v1/likes", `{"likes":[{"post":"p","user":"a"},{"post":`)
	f.Add("HEAD", "/v1/counts?post=%zz&post=a", ``)
	f.Add("GET", "/v1/posts/p1/likes/alice?version="+Version{Dot: vclock.Dot{Origin: 1, Seq: 2}, Post: "p1", User: "alice"}.String(), ``)
	f.Add("GET", "/likes?post=p&version=AQAAAAAAAAAAAAFwAXU&version=x", ``)
	// A version this node has not seen is a 503 after ReadWait: no wait
	// here, so the fuzzer runs fast.
	cfg := DefaultConfig()
	cfg.ReadWait = 0
	fx := newFixtureConfig(f, cfg)
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		req, err := http.NewRequest(method, "http://x"+target, strings.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		rec := httptest.NewRecorder()
		fx.srv.Handler().ServeHTTP(rec, req)
		require.True(t, json.Valid(rec.Body.Bytes()), "reply is JSON: %q", rec.Body)
		if rec.Code == http.StatusServiceUnavailable && req.URL.Query().Has("version") {
			var got errorBody
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			require.Equal(t, codeVersionNotSeen, got.Error.Code)
			require.Equal(t, "1", rec.Header().Get("Retry-After"))
			return
		}
		require.Less(t, rec.Code, 500, "%s %s %q -> %d %s", method, target, body, rec.Code, rec.Body)
		if req.URL.Path == "/v1/likes" && rec.Code == http.StatusOK {
			var got bulkReply
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			require.LessOrEqual(t, got.Added+got.Existing+len(got.Errors), fx.srv.cfg.MaxBulkLikes)
		}
		if rec.Code == http.StatusCreated {
			var got likeReply
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			e1 := checkID("post", got.Post, fx.srv.cfg.MaxIDBytes)
			e2 := checkID("user", got.User, fx.srv.cfg.MaxIDBytes)
			require.Nil(t, e1, fmt.Sprint(got))
			require.Nil(t, e2, fmt.Sprint(got))
		}
	})
}
