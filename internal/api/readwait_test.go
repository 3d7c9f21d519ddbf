package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/vclock"
)

// signalingLikes is a store that says when a read starts to wait.
type signalingLikes struct {
	*store.Store
	waiting chan store.Like
}

func (l signalingLikes) WaitHas(ctx context.Context, post, user string) bool {
	l.waiting <- store.Like{Post: post, User: user}
	return l.Store.WaitHas(ctx, post, user)
}

// aliceLikesP1 is the version of the like every read below waits for.
var aliceLikesP1 = Version{Dot: vclock.Dot{Origin: 42, Seq: 7}, Post: "p1", User: "alice"}.String()

// versionReads is every read that takes a version, with the body it gives
// once alice's like of p1 is held (and nothing else).
var versionReads = []struct {
	name, target string
	want         map[string]any
}{
	{"count", "/v1/posts/p1/likes", map[string]any{"post": "p1", "count": float64(1)}},
	{"liked", "/v1/posts/p1/likes/alice", map[string]any{"post": "p1", "user": "alice", "liked": true}},
	{"likers", "/v1/posts/p1/likers?limit=10", map[string]any{"post": "p1", "count": float64(1), "users": []any{"alice"}}},
	{"counts", "/v1/counts?post=p1&post=p2", map[string]any{"counts": map[string]any{"p1": float64(1), "p2": float64(0)}}},
	{"alias count", "/likes?post=p1", map[string]any{"post": "p1", "count": float64(1)}},
	{"alias detail", "/likes?post=p1&detail=true", map[string]any{"post": "p1", "count": float64(1), "users": []any{"alice"}}},
	// A session's version names its last like, whichever post is read.
	{"count of another post", "/v1/posts/p2/likes", map[string]any{"post": "p2", "count": float64(0)}},
}

// withVersion adds version=token to target's query.
func withVersion(target, token string) string {
	sep := "?"
	if u, _ := url.Parse(target); u.RawQuery != "" {
		sep = "&"
	}
	return target + sep + "version=" + token
}

// A read with the version of a like this node does not hold yet waits for
// it and answers once a peer's merge brings it.
func TestReadWaitsForItsVersion(t *testing.T) {
	for _, tt := range versionReads {
		t.Run(tt.name, func(t *testing.T) {
			st, err := store.New(store.DefaultConfig())
			require.NoError(t, err)
			likes := signalingLikes{st, make(chan store.Like, 1)}
			cfg := DefaultConfig()
			cfg.ReadWait = time.Minute // what releases the read is the merge
			srv, err := New(cfg, likes, &fakeMembers{}, zerolog.Nop())
			require.NoError(t, err)

			done := make(chan *httptest.ResponseRecorder, 1)
			go func() { // no require here: it must run on the test's goroutine
				rec := httptest.NewRecorder()
				srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", withVersion(tt.target, aliceLikesP1), nil))
				done <- rec
			}()
			select {
			case l := <-likes.waiting:
				assert.Equal(t, store.Like{Post: "p1", User: "alice"}, l)
			case <-time.After(10 * time.Second):
				require.FailNow(t, "the read never waited")
			}
			select {
			case got := <-done:
				require.FailNow(t, "answered before the like arrived", got.Body.String())
			default:
			}
			st.Merge([]store.Like{{Post: "p1", User: "alice"}}) // from a peer
			select {
			case got := <-done:
				require.Equal(t, http.StatusOK, got.Code, got.Body.String())
				var body map[string]any
				require.NoError(t, json.Unmarshal(got.Body.Bytes(), &body))
				assert.Equal(t, tt.want, body, "the read sees the like it waited for")
			case <-time.After(10 * time.Second):
				require.FailNow(t, "the read was not released")
			}
		})
	}
}

// Every read takes a version: with a like already held it answers as
// without one; with one never held it is a 503 version_not_seen once
// ReadWait is over.
func TestEveryReadTakesAVersion(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadWait = 0
	unseen := Version{Dot: vclock.Dot{Origin: 42, Seq: 8}, Post: "p1", User: "zed"}.String()
	for _, tt := range versionReads {
		for _, method := range []string{"GET", "HEAD"} {
			t.Run(method+" "+tt.name, func(t *testing.T) {
				f := newFixtureConfig(t, cfg)
				f.store.Like("p1", "alice")
				got := doMethod(t, f, method, withVersion(tt.target, aliceLikesP1))
				assert.Equal(t, http.StatusOK, got.Code, got.Body.String())
				if method == "GET" {
					var body map[string]any
					require.NoError(t, json.Unmarshal(got.Body.Bytes(), &body))
					assert.Equal(t, tt.want, body)
				}

				got = doMethod(t, f, method, withVersion(tt.target, unseen))
				assert.Equal(t, http.StatusServiceUnavailable, got.Code)
				assert.Equal(t, "1", got.Header().Get("Retry-After"))
				assertErrorCode(t, got, codeVersionNotSeen)
			})
		}
	}
}

func doMethod(t *testing.T, f *fixture, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	require.Equal(t, "application/json; charset=utf-8", rec.Header().Get("Content-Type"))
	return rec
}

func assertErrorCode(t *testing.T, rec *httptest.ResponseRecorder, want string) {
	t.Helper()
	var body errorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	assert.Equal(t, want, body.Error.Code)
	assert.NotEmpty(t, body.Error.Message)
}

// A read whose wait runs out is told so, with when to retry.
func TestReadVersionNotSeen(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadWait = 20 * time.Millisecond
	f := newFixtureConfig(t, cfg)
	start := time.Now()
	got := f.do(t, "GET", withVersion("/v1/posts/p1/likes/alice", aliceLikesP1), "")
	assert.GreaterOrEqual(t, time.Since(start), cfg.ReadWait, "it waited ReadWait")
	assert.Equal(t, http.StatusServiceUnavailable, got.status)
	assert.Equal(t, "1", got.header.Get("Retry-After"))
	assert.Equal(t, map[string]any{"error": map[string]any{
		"code":    codeVersionNotSeen,
		"message": "this node has not yet seen the like this version names (waited 20ms): retry, here or on another node",
	}}, got.body)

	f.store.Like("p1", "alice")
	got = f.do(t, "GET", withVersion("/v1/posts/p1/likes/alice", aliceLikesP1), "")
	assert.Equal(t, http.StatusOK, got.status, "seen now")
	assert.Empty(t, got.header.Get("Retry-After"))
}

// A client that goes away stops the wait.
func TestReadVersionClientGone(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	likes := signalingLikes{st, make(chan store.Like, 1)}
	cfg := DefaultConfig()
	cfg.ReadWait = time.Minute
	srv, err := New(cfg, likes, &fakeMembers{}, zerolog.Nop())
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequest("GET", withVersion("/v1/posts/p1/likes", aliceLikesP1), nil).WithContext(ctx)
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Handler().ServeHTTP(rec, req)
	}()
	select {
	case <-likes.waiting:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the read never waited")
	}
	cancel()
	select {
	case <-done:
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the wait outlived its client")
	}
}

// A bad or repeated version is a 400, at once: so is any other bad input of
// a read with a version, before any wait.
func TestReadVersionBadInput(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadWait = time.Minute // a test that waited would time out
	bad := []struct{ name, query string }{
		{"not a token", "version=nope!"},
		{"empty", "version="},
		{"truncated", "version=" + aliceLikesP1[:10]},
		{"given twice", "version=" + aliceLikesP1 + "&version=" + aliceLikesP1},
		{"standard base64", "version=" + url.QueryEscape(aliceLikesP1+"==")},
	}
	for _, r := range versionReads {
		for _, b := range bad {
			t.Run(r.name+" "+b.name, func(t *testing.T) {
				f := newFixtureConfig(t, cfg)
				target := r.target + "?" + b.query
				if u, _ := url.Parse(r.target); u.RawQuery != "" {
					target = r.target + "&" + b.query
				}
				got := f.do(t, "GET", target, "")
				assert.Equal(t, http.StatusBadRequest, got.status, got.raw)
				assert.Equal(t, codeInvalidParam, got.body["error"].(map[string]any)["code"])
			})
		}
	}
	f := newFixtureConfig(t, cfg)
	for target, code := range map[string]string{
		"/v1/posts/p1/likers?limit=0&version=" + aliceLikesP1: codeInvalidParam,
		"/likes?post=p1&detail=2&version=" + aliceLikesP1:     codeInvalidParam,
		"/v1/counts?version=" + aliceLikesP1:                  codeInvalidParam,
		"/v1/posts/%FF/likes?version=" + aliceLikesP1:         codeInvalidID,
		"/v1/posts/p1/likes/%0A?version=" + aliceLikesP1:      codeInvalidID,
	} {
		got := f.do(t, "GET", target, "")
		assert.Equal(t, http.StatusBadRequest, got.status, target)
		assert.Equal(t, code, got.body["error"].(map[string]any)["code"], target)
	}
}
