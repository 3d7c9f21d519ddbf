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
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"
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
	bulkRates           *clientRates  // nil: no per-client limit
	tokens              *Tokens       // nil: no tokens
	budget              Budget        // nil: no memory budget
	idPrefix            string        // random, per Server: ids from two processes differ
	idSeq               atomic.Uint64 // the last request id's sequence number
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
	}
	s.router = s.routes()
	s.admin = s.adminRoutes()
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
// through: request ids, the access log, metrics, JSON for panics, 404 and
// 405.
func (s *Server) newRouter() *chi.Mux {
	r := chi.NewRouter()
	r.Use(s.requestID)
	r.Use(hlog.NewHandler(s.log))
	r.Use(requestIDField)
	r.Use(hlog.AccessHandler(s.logRequest))
	r.Use(s.recoverJSON)
	r.Use(asteriskTarget)
	r.NotFound(handlerFunc(func(_ http.ResponseWriter, r *http.Request) *apiError {
		return &apiError{http.StatusNotFound, codeNotFound, "no route for " + r.Method + " " + r.URL.Path}
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
	write := func(h handlerFunc) handlerFunc { return s.authorize(ScopeWrite, s.shed(s.writes, h)) }
	read := func(h handlerFunc) handlerFunc { return s.authorize(ScopeRead, s.shed(s.reads, h)) }
	r.Route("/v1", func(r chi.Router) {
		r.Method(http.MethodPost, "/likes", s.authorize(ScopeWrite, s.rateLimited(s.shed(s.bulk, s.postLikes))))
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

// requestID takes the request id from X-Request-Id when the client sent one
// (up to 200 printable bytes) or makes one: this process's random prefix
// and a sequence number.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(middleware.RequestIDHeader)
		if id == "" || len(id) > 200 || strings.ContainsFunc(id, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
			id = s.nextRequestID()
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), middleware.RequestIDKey, id)))
	})
}

func (s *Server) nextRequestID() string {
	return s.idPrefix + "-" + strconv.FormatUint(s.idSeq.Add(1), 10)
}

// requestIDField puts the request id on every log line and on the response.
func requestIDField(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := middleware.GetReqID(r.Context())
		w.Header().Set(middleware.RequestIDHeader, id)
		log := zerolog.Ctx(r.Context())
		log.UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("req_id", id) })
		next.ServeHTTP(w, r)
	})
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

func (s *Server) logRequest(r *http.Request, status, size int, d time.Duration) {
	// A route pattern of the router's (one of a fixed set), "" when none
	// matched: never the path, which the client chooses.
	route := chi.RouteContext(r.Context()).RoutePattern()
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
	hlog.FromRequest(r).WithLevel(level).
		Str("method", r.Method).Str("path", r.URL.Path).Str("route", route).
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
				hlog.FromRequest(r).Error().Interface("panic", v).Msg("handler panicked")
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
