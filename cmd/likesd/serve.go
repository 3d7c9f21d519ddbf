package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/likesd/likesd/internal/api"
	"github.com/likesd/likesd/internal/cluster"
	"github.com/likesd/likesd/internal/membudget"
	"github.com/likesd/likesd/internal/memtrim"
	"github.com/likesd/likesd/internal/metrics"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/wal"
)

// serve runs one node until ctx is cancelled, then shuts down in order:
// not ready, drain HTTP, hand off and leave the cluster.
func serve(ctx context.Context, o options, logOut io.Writer) error {
	log := newLogger(o, logOut)
	o.cluster.Logger = log

	ln, err := net.Listen("tcp", o.api.Addr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	var adminLn net.Listener
	if o.api.AdminAddr != "" {
		if adminLn, err = net.Listen("tcp", o.api.AdminAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
	}
	// The runtime's limit first: the budget is a share of it when there is
	// no container limit.
	limit, gcPercent := applyMemory(o)
	o.budget.Limit = budgetLimit(cgroupMemoryMax, limit)
	budget, err := membudget.New(o.budget, log.With().Str("node", o.cluster.NodeName).Logger())
	if err != nil {
		_ = ln.Close()
		if adminLn != nil {
			_ = adminLn.Close()
		}
		return err
	}
	node, srv, replica, disk, err := assemble(o, log, budget)
	if err != nil {
		ln.Close()
		if adminLn != nil {
			_ = adminLn.Close()
		}
		return err
	}
	// Every line from here on names the node: several run on one machine
	// (make cluster) and their logs get mixed.
	log = log.With().Str("node", node.Self()).Logger()
	for _, w := range o.warnings {
		log.Warn().Msg(w)
	}
	log.Info().Str("version", version).Int64("memory_limit", limit).Int("gc_percent", gcPercent).
		Int64("memory_budget", o.budget.Limit).Int64("refuse_likes_at", budget.Mark()).Int64("refuse_peers_likes_at", budget.HardMark()).Msg("likesd started")
	if o.tokens != nil {
		log.Info().Msg("API tokens on: writes need a write token (--api-token-file)")
		if o.api.AdminAddr == "" {
			log.Warn().Msg("API tokens are on but /metrics and /v1/cluster are on the API port, open to all: set --admin-addr")
		}
	}
	if o.cluster.Keyring == nil {
		log.Warn().Msg("gossip is NOT encrypted: any host that reaches the gossip port can join and inject likes; set --gossip-key-file (LIKESD_GOSSIP_KEY_FILE) (the digest key is public too: chosen ids can hide a difference between replicas)")
	} else {
		v := ringView{o.cluster.Keyring}
		primary, keys := v.Fingerprints()
		log.Info().Str("primary", primary).Strs("keys", keys).Str("file", o.keyFile).Msg("gossip keyring (fingerprints)")
	}
	if o.keyFile != "" {
		// Re-read the keyring file while running: a rotation needs no
		// restart. SIGHUP re-reads at once (and no longer ends the process).
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		kr := &keyReloader{file: o.keyFile, allowPublic: o.allowDemoKey, ring: o.cluster.Keyring,
			log: log.With().Str("component", "keyring").Logger()}
		keysCtx, stopKeys := context.WithCancel(ctx)
		keysDone := make(chan struct{})
		go func() { defer close(keysDone); kr.run(keysCtx, keyringPoll, hup) }()
		defer func() { stopKeys(); <-keysDone }()
	}

	if o.debugAddr != "" {
		go serveDebug(o.debugAddr, log) // dies with the process: a profiling aid only
	}
	rctx, stopRebuilt := context.WithCancel(ctx)
	rebuilt := make(chan struct{})
	go func() { defer close(rebuilt); markRebuilt(rctx, node, disk, log) }()
	stopMarking := func() { stopRebuilt(); <-rebuilt } // before the disk closes
	defer stopMarking()
	trimCtx, stopTrim := context.WithCancel(ctx)
	trimDone := make(chan struct{})
	go func() { defer close(trimDone); memtrim.Run(trimCtx, o.trim, log, replica, nil) }()
	defer func() { stopTrim(); <-trimDone }()
	budgetCtx, stopBudget := context.WithCancel(ctx)
	budgetDone := make(chan struct{})
	go func() { defer close(budgetDone); budget.Run(budgetCtx) }()
	defer func() { stopBudget(); <-budgetDone }()
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	servers := 1
	if adminLn != nil {
		servers++
		go func() { serveErr <- srv.ServeAdmin(adminLn) }()
	}

	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down: draining")
	case err := <-serveErr:
		log.Error().Err(err).Msg("http server failed: shutting down")
		_ = srv.Shutdown(context.Background())
		for range servers - 1 {
			if err := <-serveErr; err != nil {
				log.Error().Err(err).Msg("http server failed")
			}
		}
		cctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer cancel()
		if cerr := node.Close(cctx); cerr != nil {
			log.Warn().Err(cerr).Msg("cluster shutdown")
		}
		stopMarking()
		closeDisk(cctx, disk, log)
		return err
	}

	srv.Drain()
	if o.shutdownDrain > 0 {
		time.Sleep(o.shutdownDrain) // let load balancers see /readyz fail
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("in-flight requests did not finish in time")
	}
	for range servers {
		if err := <-serveErr; err != nil {
			log.Warn().Err(err).Msg("http server stopped with an error")
		}
	}
	if err := node.Close(sctx); err != nil {
		log.Warn().Err(err).Msg("cluster shutdown")
	}
	stopMarking()
	closeDisk(sctx, disk, log)
	log.Info().Msg("stopped")
	return nil
}

// markRebuilt tells the data dir, once the node is ready (synced from a
// peer, or alone), that its data is whole again: a recovery that found
// damage keeps saying so across restarts until then.
func markRebuilt(ctx context.Context, node *cluster.Node, disk *wal.Log, log zerolog.Logger) {
	if disk == nil {
		return
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !node.Ready() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	if err := disk.Rebuilt(); err != nil {
		log.Warn().Err(err).Msg("could not mark the data dir rebuilt: the next start will sync from peers again")
	}
}

// closeDisk syncs and closes the log, if there is one: after the node, so
// that what peers sent during the hand-off is on disk too.
func closeDisk(ctx context.Context, disk *wal.Log, log zerolog.Logger) {
	if disk == nil {
		return
	}
	if err := disk.Close(ctx); err != nil {
		log.Error().Err(err).Msg("closing the data dir's log failed: likes not yet synced may be lost")
	}
}

// assemble builds the pieces, recovers the data dir and starts the cluster
// node; on error nothing is left running.
func assemble(o options, log zerolog.Logger, budget *membudget.Budget) (_ *cluster.Node, _ *api.Server, _ *store.Store, disk *wal.Log, err error) {
	// The API hands every like to the node itself (Replicate), so the
	// store reports to nobody.
	replica, err := store.New(o.store)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if o.wal.Dir != "" {
		o.wal.Logger = log.With().Str("node", o.cluster.NodeName).Logger()
		var rec wal.Recovery
		if disk, rec, err = wal.Open(o.wal, replica); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("--data-dir %s: %w", o.wal.Dir, err)
		}
		replica.SetJournal(disk)
		// Recovery read whole segments and copied them: give that garbage
		// back now rather than at the runtime's next forced collection.
		debug.FreeOSMemory()
		o.cluster.Holds = !rec.Empty() && !rec.Incomplete
		o.cluster.Partial = !rec.Empty() && rec.Incomplete
		defer func() {
			if err != nil {
				closeDisk(context.Background(), disk, log)
			}
		}()
	}
	if budget.Limit() > 0 {
		o.cluster.Memory = budget // past its hard mark, peers' likes wait with their senders
	}
	node, err := cluster.New(o.cluster)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	m := metrics.New(node)
	if disk != nil {
		m.WatchDisk(disk)
	}
	opts := api.Options{Observer: m, Metrics: m.Handler(), Replicator: node, Tokens: o.tokens}
	if o.cluster.Keyring != nil {
		opts.Keyring = ringView{o.cluster.Keyring}
	}
	if budget.Limit() > 0 {
		m.WatchBudget(budget)
		opts.Budget = budget
	}
	srv, err := api.New(o.api, replica, membership{node}, log.With().Str("node", node.Self()).Logger(), opts)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := node.Start(replica); err != nil {
		return nil, nil, nil, nil, err
	}
	return node, srv, replica, disk, nil
}

func newLogger(o options, out io.Writer) zerolog.Logger {
	if o.logFormat == "console" {
		// Colors only on a terminal: escape codes make files and pipes
		// unreadable.
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly, NoColor: o.noColor || !isTerminal(out)}
	}
	return zerolog.New(out).Level(o.logLevel).With().Timestamp().Logger()
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// membership adapts the cluster node to the API's view of members.
type membership struct{ *cluster.Node }

func (m membership) Members() []api.Member {
	ms := m.Node.Members()
	out := make([]api.Member, len(ms))
	for i, x := range ms {
		out[i] = api.Member{Name: x.Name, Addr: x.Addr, State: x.State, Breaker: x.Breaker, Link: x.Link}
	}
	return out
}

// serveDebug serves pprof on its own listener, never on the API's.
func serveDebug(addr string, log zerolog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info().Str("addr", addr).Msg("pprof listening")
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Error().Err(err).Msg("pprof server stopped")
	}
}
