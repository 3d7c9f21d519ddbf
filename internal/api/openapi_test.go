package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/vclock"
)

// The API's contract: docs/openapi.yaml (OpenAPI 3.1), checked against the
// real handler with kin-openapi, which validates 3.1 documents with JSON
// Schema 2020-12 (since v0.144). Every documented operation and status is
// exercised and every reply validated against its schema, and the router
// serves exactly the documented routes.

const openAPIFile = "../../docs/openapi.yaml"

func loadOpenAPI(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openAPIFile)
	require.NoError(t, err)
	require.True(t, doc.IsOpenAPI31OrLater(), "the document is OpenAPI 3.1")
	require.NoError(t, doc.Validate(loader.Context), "the document itself is valid")
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	return doc, router
}

// contractServer is the API as likesd assembles it, /metrics included, over
// a real store.
func contractServer(t *testing.T, likes Likes, members *fakeMembers) *Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "likesd_test_total", Help: "A counter."}))
	cfg := DefaultConfig()
	cfg.ReadWait = 0 // a version not seen is a 503 at once, not after a second
	srv, err := New(cfg, likes, members, zerolog.Nop(), Options{Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Keyring: fakeKeyring{"fedcba9876543210"}})
	require.NoError(t, err)
	return srv
}

type contractCase struct {
	method, target, body string
	want                 int
	setup                func(st *store.Store, m *fakeMembers, srv *Server)
	panics               bool   // the store panics: a 500
	itemErrors           bool   // a bulk import with invalid items: a 200, but not a request the schema allows
	token                string // sent as Authorization: Bearer
}

func contractCases() []contractCase {
	long := strings.Repeat("x", 257)
	good := `{"post":"p1","user":"alice"}`
	cases := []contractCase{
		{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"alice"}`, want: 201},
		{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"alice"}`, want: 200, setup: liked("p1", "alice")},
		{method: "POST", target: "/v1/posts/p1/likes?w=all", body: `{"user":"alice"}`, want: 201},
		{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"alice"}`, want: 202, setup: unreplicated},
		{method: "POST", target: "/v1/posts/p1/likes?w=3", body: `{"user":"alice"}`, want: 202, setup: unreplicated},
		{method: "POST", target: "/v1/posts/p1/likes?w=zero", body: `{"user":"alice"}`, want: 400},
		{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"alice"}`, want: 507, setup: diskFull},
		{method: "POST", target: "/like", body: good, want: 507, setup: diskFull},
		{method: "POST", target: "/v1/likes", body: `{"likes":[` + good + `]}`, want: 507, setup: diskFull},
		{method: "POST", target: "/like?w=quorum", body: good, want: 202, setup: unreplicated},
		{method: "POST", target: "/v1/likes?w=2", body: `{"likes":[{"post":"p1","user":"alice"}]}`, want: 202, setup: unreplicated},
		{method: "POST", target: "/v1/posts/p1/likes", body: `{"User":"alice"}`, want: 400},
		{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"` + strings.Repeat("a", 70<<10) + `"}`, want: 413},
		{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"alice"}`, want: 500, panics: true},
		{method: "GET", target: "/v1/posts/p1/likes", want: 200, setup: liked("p1", "alice")},
		{method: "GET", target: "/v1/posts/" + long + "/likes", want: 400},
		{method: "GET", target: "/v1/posts/p1/likes/alice", want: 200, setup: liked("p1", "alice")},
		{method: "GET", target: "/v1/posts/p1/likes/bob", want: 200},
		{method: "GET", target: "/v1/posts/p1/likes/" + long, want: 400},
		{method: "GET", target: "/v1/posts/p1/likers?limit=1", want: 200, setup: liked("p1", "alice", "bob")},
		{method: "GET", target: "/v1/posts/p1/likers?limit=1&after=alice", want: 200, setup: liked("p1", "alice", "bob")},
		{method: "GET", target: "/v1/posts/p1/likers?limit=0", want: 400},
		{method: "GET", target: "/v1/counts?post=p1&post=p2", want: 200, setup: liked("p1", "alice")},
		{method: "GET", target: "/v1/counts", want: 400},
		{method: "POST", target: "/v1/likes", body: `{"likes":[` + good + `,{"post":"p1","user":""},{"post":"p2","user":"bob"}]}`, want: 200, setup: liked("p1", "alice"), itemErrors: true},
		{method: "POST", target: "/v1/likes", body: `{"likes":[` + good + `,{"post":"p2","user":"bob"}]}`, want: 200, setup: liked("p1", "alice")},
		{method: "POST", target: "/v1/likes", body: `{"likes":[` + good + `],"x":1}`, want: 400},
		{method: "POST", target: "/v1/likes", body: `{"likes":[` + strings.Repeat(good+",", 10000) + good + `]}`, want: 413},
		{method: "GET", target: "/v1/cluster", want: 200},
		{method: "GET", target: "/admin/keyring", want: 200},
		{method: "GET", target: "/healthz", want: 200},
		{method: "GET", target: "/readyz", want: 200},
		{method: "GET", target: "/readyz", want: 503, setup: func(_ *store.Store, m *fakeMembers, _ *Server) { m.joined.Store(false) }},
		{method: "GET", target: "/readyz", want: 503, setup: func(_ *store.Store, _ *fakeMembers, srv *Server) { srv.Drain() }},
		{method: "GET", target: "/metrics", want: 200},
		{method: "POST", target: "/like", body: good, want: 201},
		{method: "POST", target: "/like", body: good, want: 200, setup: liked("p1", "alice")},
		{method: "POST", target: "/like", body: `{"user":"alice"}`, want: 400},
		{method: "POST", target: "/like", body: `{"post":"p1","user":"` + strings.Repeat("a", 70<<10) + `"}`, want: 413},
		{method: "GET", target: "/likes?post=p1", want: 200, setup: liked("p1", "alice")},
		{method: "GET", target: "/likes?post=p1&detail=1", want: 200, setup: liked("p1", "alice")},
		{method: "GET", target: "/likes?post=p1&detail=", want: 400},
	}
	// Every route past its compartment's bound.
	for _, c := range []contractCase{
		{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"alice"}`, setup: full(func(s *Server) *compartment { return s.writes })},
		{method: "POST", target: "/like", body: good, setup: full(func(s *Server) *compartment { return s.writes })},
		{method: "POST", target: "/v1/likes", body: `{"likes":[` + good + `]}`, setup: full(func(s *Server) *compartment { return s.bulk })},
		{method: "GET", target: "/v1/posts/p1/likes", setup: full(func(s *Server) *compartment { return s.reads })},
		{method: "GET", target: "/v1/posts/p1/likes/alice", setup: full(func(s *Server) *compartment { return s.reads })},
		{method: "GET", target: "/v1/posts/p1/likers", setup: full(func(s *Server) *compartment { return s.reads })},
		{method: "GET", target: "/v1/counts?post=p1", setup: full(func(s *Server) *compartment { return s.reads })},
		{method: "GET", target: "/likes?post=p1", setup: full(func(s *Server) *compartment { return s.reads })},
	} {
		c.want = http.StatusTooManyRequests
		cases = append(cases, c)
	}
	// Over the memory budget: new likes refused, repeats and reads served.
	cases = append(cases,
		contractCase{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"alice"}`, want: 507, setup: overBudget},
		contractCase{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"alice"}`, want: 200, setup: both(overBudget, liked("p1", "alice"))},
		contractCase{method: "POST", target: "/like", body: good, want: 507, setup: overBudget},
		contractCase{method: "POST", target: "/v1/likes", body: `{"likes":[` + good + `]}`, want: 507, setup: overBudget},
		contractCase{method: "POST", target: "/v1/likes", body: `{"likes":[` + good + `]}`, want: 200, setup: both(overBudget, liked("p1", "alice"))},
		contractCase{method: "GET", target: "/readyz", want: 200, setup: overBudget},
	)
	// With API tokens (read tokens too): no token, and a read token on a write.
	for _, c := range []contractCase{
		{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"alice"}`, want: 401},
		{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"alice"}`, want: 403, token: readToken},
		{method: "POST", target: "/like", body: good, want: 401},
		{method: "POST", target: "/like", body: good, want: 403, token: readToken},
		{method: "POST", target: "/v1/likes", body: `{"likes":[` + good + `]}`, want: 401},
		{method: "POST", target: "/v1/likes", body: `{"likes":[` + good + `]}`, want: 403, token: readToken},
		{method: "POST", target: "/v1/posts/p1/likes", body: `{"user":"alice"}`, want: 201, token: writeToken},
		{method: "GET", target: "/v1/posts/p1/likes", want: 401},
		{method: "GET", target: "/v1/posts/p1/likes", want: 200, token: readToken},
		{method: "GET", target: "/v1/posts/p1/likes/alice", want: 401},
		{method: "GET", target: "/v1/posts/p1/likers", want: 401},
		{method: "GET", target: "/v1/counts?post=p1", want: 401},
		{method: "GET", target: "/likes?post=p1", want: 401},
	} {
		c.setup = withTokens
		cases = append(cases, c)
	}
	// Every read with a version: seen, not seen, not a token.
	seen := Version{Dot: vclock.Dot{Origin: 1, Seq: 1}, Post: "p1", User: "alice"}.String()
	unseen := Version{Dot: vclock.Dot{Origin: 1, Seq: 2}, Post: "p1", User: "bob"}.String()
	for _, read := range []string{"/v1/posts/p1/likes?", "/v1/posts/p1/likes/alice?", "/v1/posts/p1/likers?limit=1&", "/v1/counts?post=p1&", "/likes?post=p1&", "/likes?post=p1&detail=1&"} {
		cases = append(cases,
			contractCase{method: "GET", target: read + "version=" + seen, want: 200, setup: liked("p1", "alice")},
			contractCase{method: "GET", target: read + "version=" + unseen, want: 503, setup: liked("p1", "alice")},
			contractCase{method: "GET", target: read + "version=x", want: 400})
	}
	return cases
}

// The document's bound on a version is the longest token for ids of the
// documented 256 bytes.
func TestOpenAPIVersionBound(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	schema := doc.Components.Parameters["Version"].Value.Schema.Value
	require.NotNil(t, schema.MaxLength)
	assert.Equal(t, uint64(maxVersionLen(DefaultConfig().MaxIDBytes)), *schema.MaxLength)
	longest := Version{Post: strings.Repeat("p", 256), User: strings.Repeat("u", 256), Dot: vclock.Dot{Origin: ^uint64(0), Seq: ^uint64(0)}}.String()
	assert.NoError(t, schema.VisitJSON(longest), "the longest token is allowed")
}

// fullDisk is a journal that takes no writes.
type fullDisk struct{}

func (fullDisk) Append(string, string)             {}
func (fullDisk) WaitDurable(context.Context) error { return errDiskFull }
func (fullDisk) AfterDurable(func())               {}
func (fullDisk) Err() error                        { return errDiskFull }

var errDiskFull = errors.New("wal: disk write failed: no space left on device")

func diskFull(st *store.Store, _ *fakeMembers, _ *Server) { st.SetJournal(fullDisk{}) }

func liked(post string, users ...string) func(*store.Store, *fakeMembers, *Server) {
	return func(st *store.Store, _ *fakeMembers, _ *Server) {
		for _, u := range users {
			st.Like(post, u)
		}
	}
}

func TestOpenAPIContract(t *testing.T) {
	doc, router := loadOpenAPI(t)
	ctx := context.Background()
	exercised := map[string]bool{} // "METHOD /path status"
	for _, tc := range contractCases() {
		for _, method := range methodsOf(tc.method) {
			name := fmt.Sprintf("%s %.60s %d", method, tc.target, tc.want)
			t.Run(name, func(t *testing.T) {
				st, err := store.New(store.DefaultConfig())
				require.NoError(t, err)
				members := &fakeMembers{}
				members.joined.Store(true)
				var likes Likes = st
				if tc.panics {
					likes = panicky{st}
				}
				srv := contractServer(t, likes, members)
				if tc.setup != nil {
					tc.setup(st, members, srv)
				}
				rec := httptest.NewRecorder()
				srv.Handler().ServeHTTP(rec, tc.request(method))
				require.Equal(t, tc.want, rec.Code, rec.Body.String())
				require.NotEmpty(t, rec.Header().Get("X-Request-Id"))

				req := tc.request(method)
				route, params, err := router.FindRoute(req)
				require.NoError(t, err, "documented")
				opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
				in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
				if tc.want < 400 && !tc.itemErrors {
					require.NoError(t, openapi3filter.ValidateRequest(ctx, in), "an accepted request is one the document allows")
				}
				if method == http.MethodHead {
					// kin-openapi skips HEAD replies: check the document
					// lists the status. (The recorder keeps the body net/http
					// drops; TestHeadWhereverGet checks a real server's.)
					require.NotNil(t, route.Operation.Responses.Status(rec.Code), "status documented")
				} else {
					require.NoError(t, openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
						RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
						Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())), Options: opts,
					}))
				}
				exercised[fmt.Sprintf("%s %s %d", method, route.Path, rec.Code)] = true
			})
		}
	}

	var documented []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				if status != "default" {
					documented = append(documented, fmt.Sprintf("%s %s %s", method, path, status))
				}
			}
		}
	}
	slices.Sort(documented)
	for _, d := range documented {
		assert.True(t, exercised[d], "documented but never exercised: %s", d)
	}
}

// request is the case's request, sent with method.
func (tc contractCase) request(method string) *http.Request {
	req := newRequest(method, tc.target, tc.body)
	if tc.token != "" {
		req.Header.Set("Authorization", "Bearer "+tc.token)
	}
	return req
}

type budgetOver struct{}

func (budgetOver) Over() bool { return true }

func overBudget(_ *store.Store, _ *fakeMembers, srv *Server) { srv.budget = budgetOver{} }

func both(fs ...func(*store.Store, *fakeMembers, *Server)) func(*store.Store, *fakeMembers, *Server) {
	return func(st *store.Store, m *fakeMembers, srv *Server) {
		for _, f := range fs {
			f(st, m, srv)
		}
	}
}

// withTokens gives the server a write and a read token.
func withTokens(_ *store.Store, _ *fakeMembers, srv *Server) {
	tokens, err := ParseTokens(strings.NewReader("write w " + writeToken + "\nread r " + readToken + "\n"))
	if err != nil {
		panic(err)
	}
	srv.tokens = tokens
}

// methodsOf is the methods a case runs with: a GET also as HEAD.
func methodsOf(method string) []string {
	if method == http.MethodGet {
		return []string{http.MethodGet, http.MethodHead}
	}
	return []string{method}
}

// newRequest is a request as a client sends it.
func newRequest(method, target, body string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// The router serves exactly the documented routes and methods.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	srv := contractServer(t, st, &fakeMembers{})
	var served, documented []string
	require.NoError(t, chi.Walk(srv.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served = append(served, method+" "+strings.TrimSuffix(route, "/*"))
		return nil
	}))
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	assert.Equal(t, documented, served)
}

// Replies no operation owns (404, 405, net/http's own) have the documented
// error shape too.
func TestOpenAPIErrorShapeOutsideOperations(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	schema := doc.Components.Schemas["Error"].Value
	f := newFixture(t)
	var bodies [][]byte
	for _, r := range [][2]string{{"GET", "/nope"}, {"DELETE", "/v1/counts"}, {"PATCH", "/like"}} {
		rec := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(rec, httptest.NewRequest(r[0], r[1], nil))
		bodies = append(bodies, rec.Body.Bytes())
	}
	for _, raw := range []string{"GET /healthz HTTP/1.1\r\n\r\n", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "POST /v1/posts/a%zz/likes HTTP/1.1\r\nHost: x\r\n\r\n"} {
		resp := rawExchange(t, newFixture(t).srv, raw)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		bodies = append(bodies, b)
	}
	for _, b := range bodies {
		var v any
		require.NoError(t, json.Unmarshal(b, &v))
		assert.NoError(t, schema.VisitJSON(v, openapi3.EnableJSONSchema2020()), "%s", b)
	}
}

// full fills a compartment: its requests are refused.
func full(of func(*Server) *compartment) func(*store.Store, *fakeMembers, *Server) {
	return func(_ *store.Store, _ *fakeMembers, srv *Server) {
		c := of(srv)
		c.busy.Store(c.limit)
	}
}

// unreplicated makes every write miss its level: the 202 replies.
func unreplicated(_ *store.Store, _ *fakeMembers, srv *Server) { srv.replicas = stuckReplicator{} }

type stuckReplicator struct{}

func (stuckReplicator) Replicate(_ context.Context, l acks.Level, _ []store.Like, _ []bool) (acks.Result, vclock.Dot) {
	return acks.Result{Replicas: 1, Want: max(2, l.Want(3, true))}, vclock.Dot{Origin: 42, Seq: 7}
}
