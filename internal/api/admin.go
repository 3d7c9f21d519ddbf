package api

import (
	"errors"
	"log"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/go-chi/chi/v5"
)

// The operator's routes: metrics, the member list, probes, the gossip
// keyring's fingerprints and pprof. With
// Config.AdminAddr they are served on a listener of their own and not on
// the API's, so a load balancer that exposes the API exposes none of them;
// without it (the default, as before the admin listener existed) all but
// pprof stay on the API's listener.

// operatorRoutes adds the routes an operator's tools need (not pprof) to r.
func (s *Server) operatorRoutes(r chi.Router) {
	get(r, "/v1/cluster", handlerFunc(s.getCluster))
	get(r, "/healthz", handlerFunc(s.healthz))
	get(r, "/readyz", handlerFunc(s.readyz))
	get(r, "/admin/keyring", handlerFunc(s.getKeyring))
	if s.metrics != nil {
		get(r, "/metrics", s.metrics)
	}
}

func (s *Server) adminRoutes() *chi.Mux {
	r := s.newRouter()
	s.operatorRoutes(r)
	// pprof only here: a profile costs seconds of CPU, and its output
	// names the code.
	r.HandleFunc("/debug/pprof/*", pprof.Index)
	r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	r.HandleFunc("/debug/pprof/profile", pprof.Profile)
	r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	r.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return r
}

func (s *Server) newAdminServer() *http.Server {
	return &http.Server{
		Addr:    s.cfg.AdminAddr,
		Handler: s.admin,
		// OPTIONS * reaches the router, which answers it in JSON.
		DisableGeneralOptionsHandler: true,
		ReadHeaderTimeout:            s.cfg.ReadHeaderTimeout,
		ReadTimeout:                  s.cfg.ReadTimeout,
		// No WriteTimeout: a CPU profile or trace streams for as long as
		// it was asked (?seconds=); the listener is private.
		IdleTimeout:    s.cfg.IdleTimeout,
		MaxHeaderBytes: s.cfg.MaxHeaderBytes,
		ErrorLog:       log.New(s.log.With().Str("component", "net/http").Logger(), "", 0),
	}
}

// AdminHandler is the admin listener's root handler (for tests).
func (s *Server) AdminHandler() http.Handler { return s.admin }

// ErrNoAdmin is ServeAdmin's error on a Server without Config.AdminAddr.
var ErrNoAdmin = errors.New("api: no admin listener configured (Config.AdminAddr is empty)")

// ServeAdmin serves the operator's routes on ln until Shutdown; it returns
// nil after a Shutdown.
func (s *Server) ServeAdmin(ln net.Listener) error {
	if s.adminSrv == nil {
		return ErrNoAdmin
	}
	s.log.Info().Str("addr", ln.Addr().String()).Msg("admin listening")
	if err := s.adminSrv.Serve(netHTTPErrorsAsJSON{ln, s}); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// keyringReply is GET /admin/keyring: which keys this node encrypts gossip
// with and accepts, by fingerprint, so an operator rotating the key can see
// every node hold the new one before making it primary (docs/deploy.md).
type keyringReply struct {
	Encrypted bool     `json:"encrypted"`
	Primary   string   `json:"primary"`
	Keys      []string `json:"keys"`
}

func (s *Server) getKeyring(w http.ResponseWriter, _ *http.Request) *apiError {
	reply := keyringReply{Keys: []string{}}
	if s.keyring != nil {
		reply.Primary, reply.Keys = s.keyring.Fingerprints()
		reply.Encrypted = reply.Primary != ""
		if reply.Keys == nil {
			reply.Keys = []string{}
		}
	}
	writeJSON(w, http.StatusOK, reply)
	return nil
}
