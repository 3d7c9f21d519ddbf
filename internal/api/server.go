package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
	"golang.org/x/net/netutil"
)

// Likes is what the API needs from the replica.
type Likes interface {
	// Like records user's like of post; added is false when it was already
	// there. It must not wait on the network.
	Like(post, user string) (added bool, count int)
	Count(post string) int
	Counts(posts []string) map[string]int
	Has(post, user string) bool
	Likers(post, after string, limit int) (users []string, count int, more bool)
	// Writable is nil while new likes can be made durable, else why not
	// (a full or failing disk). It must be cheap: every write asks.
	Writable() error
	// WaitHas reports whether the replica holds user's like of post,
	// waiting for it until ctx ends: true as soon as it is there (at once
	// when it already is, even if ctx has ended), false when ctx ended
	// first. It must return promptly when ctx ends.
	WaitHas(ctx context.Context, post, user string) bool
}

// Member is one cluster member as /v1/cluster shows it.
type Member struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"`
	// Breaker is this node's circuit breaker for the member (closed, open
	// or half-open); absent for the node itself.
	Breaker string `json:"breaker,omitempty"`
	// Link is this node's fast-path link to the member: idle, sending,
	// stalled, down or none; absent for the node itself.
	Link string `json:"link,omitempty"`
}

// Membership is what the API needs from the cluster.
type Membership interface {
	Self() string
	Members() []Member
	// Ready reports whether the node holds what its cluster held when it
	// joined (or is provably alone): /readyz is 200 only then.
	Ready() bool
}

// Budget is the node's memory budget (internal/membudget).
type Budget interface {
	// Over reports whether the node refuses new likes. It is on every
	// write's path: it must be O(1) and must not block.
	Over() bool
}

// Observer is told of every request and every like's outcome (metrics).
// Its methods run on the request path: they must be fast and not block.
// Every string it is given comes from a closed set, so it may use them as
// labels: route is one of the router's patterns ("" when none matched),
// method is GET, HEAD, POST or other.
type Observer interface {
	ObserveRequest(route, method string, status int, d time.Duration)
	ObserveLike(added bool)
	// ObserveRefused is told of a request refused to protect the node;
	// reason is one of the Refused constants.
	ObserveRefused(reason string)
}

// Keyring is the gossip keyring as GET /admin/keyring shows it.
type Keyring interface {
	// Fingerprints returns the fingerprint of the primary key (the one
	// gossip is encrypted with) and of every key accepted, the primary
	// first: short hashes, never key bytes. It must not block.
	Fingerprints() (primary string, keys []string)
}

// Options are the optional parts of a Server.
type Options struct {
	Observer Observer     // nil: nothing observed
	Metrics  http.Handler // served at GET /metrics when set
	// Replicator acknowledges writes at a level; nil: this node alone
	// (every write has 1 replica and wants 1).
	Replicator Replicator
	// Budget, when set, is asked before every new like: past it the like
	// is refused (507). nil: no memory budget.
	Budget Budget
	// Tokens, when set, guard writes (and reads, if it has read tokens):
	// see tokens.go. nil: no tokens.
	Tokens *Tokens
	// Keyring, when set, is shown at GET /admin/keyring; nil: gossip is
	// not encrypted, and the route says so.
	Keyring Keyring
}

type nopObserver struct{}

func (nopObserver) ObserveRequest(string, string, int, time.Duration) {}
func (nopObserver) ObserveLike(bool)                                  {}
func (nopObserver) ObserveRefused(string)                             {}

// Server serves the API. Create it with New.
type Server struct {
	cfg      Config
	likes    Likes
	members  Membership
	log      zerolog.Logger
	router   *chi.Mux
	http     *http.Server
	admin    *chi.Mux     // operator routes (admin.go)
	adminSrv *http.Server // nil without Config.AdminAddr
	observe  Observer
	metrics  http.Handler
	replicas Replicator
	draining atomic.Bool
	// The compartments of the API's work (shed.go).
	writes, bulk, reads *compartment
	bulkReading         atomic.Int64         // bytes of bulk bodies being read (bulk.go)
	bulkRates           *clientRates         // nil: no per-client limit
	tokens              *Tokens              // nil: no tokens
	routeNames          map[[2]string]string // route patterns by chi's parts (routeOf); read-only after New
	budget              Budget               // nil: no memory budget
	keyring             Keyring              // nil: plaintext gossip
	idPrefix            string               // random, per Server: ids from two processes differ
	idSeq               atomic.Uint64        // the last request id's sequence number
}

// New returns a server for likes and members, logging to logger; opts may
// add an Observer and a /metrics handler.
func New(cfg Config, likes Likes, members Membership, logger zerolog.Logger, opts ...Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		likes:    likes,
		members:  members,
		log:      logger.With().Str("component", "api").Logger(),
		observe:  nopObserver{},
		replicas: localOnly{},
		writes:   newCompartment(RefusedWrites, cfg.MaxWrites),
		bulk:     newCompartment(RefusedBulk, cfg.MaxBulk),
		reads:    newCompartment(RefusedReads, cfg.MaxReads),
	}
	s.bulkRates = newClientRates(cfg.BulkRate, cfg.BulkBurst)
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	s.idPrefix = hex.EncodeToString(b[:])
	for _, o := range opts {
		if o.Observer != nil {
			s.observe = o.Observer
		}
		if o.Metrics != nil {
			s.metrics = o.Metrics
		}
		if o.Replicator != nil {
			s.replicas = o.Replicator
		}
		if o.Tokens != nil {
			s.tokens = o.Tokens
		}
		if o.Budget != nil {
			s.budget = o.Budget
		}
		if o.Keyring != nil {
			s.keyring = o.Keyring
		}
	}
	s.router = s.routes()
	s.admin = s.adminRoutes()
	s.nameRoutes(s.router, s.admin)
	if cfg.AdminAddr != "" {
		s.adminSrv = s.newAdminServer()
	}
	s.http = &http.Server{
		Addr:    cfg.Addr,
		Handler: s.router,
		// OPTIONS * reaches the router, which answers it in JSON.
		DisableGeneralOptionsHandler: true,
		ReadHeaderTimeout:            cfg.ReadHeaderTimeout,
		ReadTimeout:                  cfg.ReadTimeout,
		WriteTimeout:                 cfg.WriteTimeout + cfg.ReadWait, // a read with a version may wait first
		IdleTimeout:                  cfg.IdleTimeout,
		MaxHeaderBytes:               cfg.MaxHeaderBytes,
		// net/http's own errors (bad TLS, handler panics it caught) into the
		// structured log rather than bare stderr.
		ErrorLog: log.New(logger.With().Str("component", "net/http").Logger(), "", 0),
	}
	return s, nil
}

// newRouter is a router with the middleware every listener's requests go
// through: request ids, the access log and the Observer (track), JSON for
// panics, 404 and 405.
func (s *Server) newRouter() *chi.Mux {
	r := chi.NewRouter()
	r.Use(s.track)
	r.Use(s.recoverJSON)
	r.Use(asteriskTarget)
	r.NotFound(handlerFunc(func(_ http.ResponseWriter, r *http.Request) *apiError {
		msg := "no route for " + r.Method + " " + r.URL.Path
		if s.cfg.AdminAddr != "" && s.admin != nil && s.admin.Match(chi.NewRouteContext(), http.MethodGet, r.URL.EscapedPath()) {
			msg += ": it is served on the admin listener (--admin-addr), not this port"
		}
		return &apiError{http.StatusNotFound, codeNotFound, msg}
	}).ServeHTTP)
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) { s.methodNotAllowed(r, w, req) })
	return r
}

// get serves HEAD wherever it serves GET: the same handler, whose body
// net/http drops.
func get(r chi.Router, pattern string, h http.Handler) {
	r.Method(http.MethodGet, pattern, h)
	r.Method(http.MethodHead, pattern, h)
}

func (s *Server) routes() *chi.Mux {
	r := s.newRouter()
	// A request is authorized first (no slot for a client without a
	// token), then rate limited (by its token's name), then given a slot.
	// A like, single or bulk, takes its slot once its body is read (like,
	// postLikes): a client that sends a body slowly holds a connection,
	// not a slot.
	write := func(h handlerFunc) handlerFunc { return s.authorize(ScopeWrite, h) }
	read := func(h handlerFunc) handlerFunc { return s.authorize(ScopeRead, s.shed(s.reads, h)) }
	r.Route("/v1", func(r chi.Router) {
		r.Method(http.MethodPost, "/likes", s.authorize(ScopeWrite, s.rateLimited(s.postLikes)))
		r.Method(http.MethodPost, "/posts/{post}/likes", write(s.postLike))
		get(r, "/posts/{post}/likes", read(s.getCount))
		get(r, "/posts/{post}/likes/{user}", read(s.getLiked))
		get(r, "/posts/{post}/likers", read(s.getLikers))
		get(r, "/counts", read(s.getCounts))
	})
	if s.cfg.AdminAddr == "" {
		s.operatorRoutes(r)
	}

	// Aliases for the original article's curl lines.
	r.Method(http.MethodPost, "/like", write(s.postLikeAlias))
	get(r, "/likes", read(s.getLikesAlias))
	return r
}

// asteriskTarget answers requests for "*" (OPTIONS *, which net/http would
// otherwise answer itself with an empty 200): the API implements no
// OPTIONS; the methods it serves are in the Allow header.
func asteriskTarget(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RequestURI != "*" {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodOptions {
			writeError(w, r, badRequest(codeBadRequest, "the request target * is only for OPTIONS"))
			return
		}
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeError(w, r, &apiError{http.StatusMethodNotAllowed, codeMethodNotAllowed,
			"OPTIONS is not implemented; the API serves GET, HEAD and POST (see docs/api.md)"})
	})
}

// Handler is the API's root handler (for tests and custom servers).
func (s *Server) Handler() http.Handler { return s.router }

// Serve serves on ln until Shutdown; it returns nil after a Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info().Str("addr", ln.Addr().String()).Msg("http listening")
	ln = netutil.LimitListener(ln, s.cfg.MaxConns)
	if err := s.http.Serve(netHTTPErrorsAsJSON{ln, s}); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Drain turns /readyz to 503 so load balancers stop sending traffic; the
// server keeps serving until Shutdown.
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown stops accepting connections and waits for in-flight requests, up
// to ctx; the admin listener last, so probes and scrapes see the drain.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	err := s.http.Shutdown(ctx)
	if s.adminSrv != nil {
		err = errors.Join(err, s.adminSrv.Shutdown(ctx))
	}
	return err
}

// requestIDOf is the request's id: the client's X-Request-Id when it sent
// one (up to 200 printable bytes), else this process's random prefix and a
// sequence number.
func (s *Server) requestIDOf(r *http.Request) string {
	if id := r.Header.Get(headerRequestID); id != "" && len(id) <= 200 && printable(id) {
		return id
	}
	return s.nextRequestID()
}

func printable(id string) bool {
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func (s *Server) nextRequestID() string {
	var b [32]byte
	return string(strconv.AppendUint(append(append(b[:0], s.idPrefix...), '-'), s.idSeq.Add(1), 10))
}

// headerRequestID is X-Request-Id, canonical: map lookups need no
// canonicalizing.
const headerRequestID = "X-Request-Id"

// requestOf is the id of the request w answers, set by track.
func requestOf(w http.ResponseWriter) string { return w.Header().Get(headerRequestID) }

// tracked is the ResponseWriter every handler writes to: it notes the
// status and size for the access log and the Observer. One per request,
// pooled.
type tracked struct {
	http.ResponseWriter
	status, size int
	log          *zerolog.Logger // the Server's, for writeError
}

var trackedPool = sync.Pool{New: func() any { return new(tracked) }}

func (t *tracked) WriteHeader(code int) {
	if t.status == 0 {
		t.status = code
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *tracked) Write(p []byte) (int, error) {
	if t.status == 0 {
		t.status = http.StatusOK
	}
	n, err := t.ResponseWriter.Write(p)
	t.size += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (t *tracked) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// track gives the request its id (on the response too), and logs and
// observes it once served. It is one middleware, not chi's and hlog's
// four, because they cost a context, a logger and a writer each per
// request: the id travels in the response's header, and a log line's
// fields are added only when the line is written.
func (s *Server) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.Header()[headerRequestID] = []string{s.requestIDOf(r)}
		t := trackedPool.Get().(*tracked)
		t.ResponseWriter, t.log = w, &s.log
		next.ServeHTTP(t, r)
		status := t.status
		if status == 0 {
			status = http.StatusOK // nothing written: net/http sends a 200
		}
		s.logRequest(r, w, status, t.size, time.Since(start))
		*t = tracked{}
		trackedPool.Put(t)
	})
}

// routeOf is the route pattern r matched, "" when none did: chi's
// RoutePattern joins its parts anew at every call, and this is on every
// request's path, so the joins of the router's routes are kept.
func (s *Server) routeOf(r *http.Request) string {
	rctx := chi.RouteContext(r.Context())
	if rctx == nil {
		return ""
	}
	switch p := rctx.RoutePatterns; len(p) {
	case 0:
		return ""
	case 1:
		return p[0]
	case 2:
		if route, ok := s.routeNames[[2]string{p[0], p[1]}]; ok {
			return route
		}
	}
	return rctx.RoutePattern()
}

// nameRoutes fills routeNames with the routes of the routers under /v1.
func (s *Server) nameRoutes(routers ...*chi.Mux) {
	s.routeNames = map[[2]string]string{}
	for _, router := range routers {
		_ = chi.Walk(router, func(_, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
			if rest, ok := strings.CutPrefix(route, "/v1/"); ok {
				s.routeNames[[2]string{"/v1/*", "/" + rest}] = route
			}
			return nil
		})
	}
}

// methodLabel maps a request's method to a closed set, the methods the
// router serves and "other": net/http takes any token as a method, and a
// label made of each would be a series kept forever.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodHead:
		return http.MethodHead
	case http.MethodPost:
		return http.MethodPost
	}
	return "other"
}

func (s *Server) logRequest(r *http.Request, w http.ResponseWriter, status, size int, d time.Duration) {
	// A route pattern of the router's (one of a fixed set), "" when none
	// matched: never the path, which the client chooses.
	route := s.routeOf(r)
	s.observe.ObserveRequest(route, methodLabel(r.Method), status, d)
	level := zerolog.InfoLevel
	switch {
	case r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics":
		// Probes every few seconds would drown the log; a 503 from /readyz
		// (starting, draining) is what it is for, not an error.
		level = zerolog.DebugLevel
	case status == http.StatusServiceUnavailable || status == http.StatusInsufficientStorage:
		// A read whose version this node has not seen yet: lag the client
		// retries. Many at once say replication is slow. A like refused
		// over the memory budget: the budget logs its transitions.
		level = zerolog.WarnLevel
	case status >= 500:
		level = zerolog.ErrorLevel
	}
	ev := s.log.WithLevel(level) // nil when the level is off: nothing below is formatted
	if ev == nil {
		return
	}
	ev.Str("req_id", requestOf(w)).Str("method", r.Method).Str("path", r.URL.Path).Str("route", route).
		Int("status", status).Int("bytes", size).Dur("duration_ms", d).Str("remote", r.RemoteAddr).
		Msg("request")
}

// recoverJSON turns a handler panic into a logged 500 with a JSON body,
// instead of a dropped connection.
func (s *Server) recoverJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error().Str("req_id", requestOf(w)).Interface("panic", v).Msg("handler panicked")
				writeError(w, r, &apiError{http.StatusInternalServerError, codeInternal, "internal error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// methodNotAllowed answers 405 with the Allow header listing the methods the
// path does accept on router (chi drops that header when the handler is
// custom).
func (s *Server) methodNotAllowed(router *chi.Mux, w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if router.Match(chi.NewRouteContext(), m, r.URL.EscapedPath()) {
			allowed = append(allowed, m)
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeError(w, r, &apiError{http.StatusMethodNotAllowed, codeMethodNotAllowed,
		r.Method + " is not allowed on " + r.URL.Path + "; allowed: " + strings.Join(allowed, ", ")})
}
