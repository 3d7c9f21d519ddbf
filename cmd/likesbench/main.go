// Command likesbench measures likesd under load.
//
//	likesbench load  --targets URL[,URL...] [--rate N] [--duration D] ...   drive running nodes
//	likesbench suite --likesd bin/likesd --out docs/bench-report.md         the whole comparison (--only writes: write levels)
//	likesbench memory --likesd bin/likesd --out docs/benchmarks.md          memory per like beside Redis
//	likesbench durable --likesd bin/likesd --out docs/benchmarks.md         --data-dir: write path, recovery, disk bytes per like
//	likesbench front --likesd bin/likesd                                    one node against a bare handler, wrk, fresh likes, rounds in turn
//	likesbench flood --likesd bin/likesd                                    a paced reader alone, then beside a write flood
//	likesbench link --likesd bin/likesd --before-commit dd23aa6^            issue 21: a commit's build against this one, 3 nodes, w=1 and w=2, wrk and the generator
//	likesbench bare  --addr HOST:PORT [--like-reply]                        baseline: a handler that returns 200 (or reads the body and answers a like's JSON)
//	likesbench seed  --http-addr A --gossip-addr HOST:PORT [--join H:P]    baseline: the seed's design
//
// Every run is bounded by its duration and talks only to the targets given
// (suite starts its own nodes on 127.0.0.1).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/likesd/likesd/bench/seeddesign"
	"github.com/likesd/likesd/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: likesbench load|suite|front|flood|link|memory|durable|bare|seed [flags]  (likesbench CMD --help)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "load":
		err = cmdLoad(ctx, os.Args[2:])
	case "suite":
		err = cmdSuite(ctx, os.Args[2:])
	case "memory":
		err = cmdMemory(ctx, os.Args[2:])
	case "durable":
		err = cmdDurable(ctx, os.Args[2:])
	case "front":
		err = cmdFront(ctx, os.Args[2:])
	case "flood":
		err = cmdFlood(ctx, os.Args[2:])
	case "link":
		err = cmdLink(ctx, os.Args[2:])
	case "flood-client":
		err = cmdFloodClient(ctx, os.Args[2:])
	case "bare":
		err = cmdBare(ctx, os.Args[2:])
	case "seed":
		err = cmdSeed(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "likesbench:", err)
		os.Exit(1)
	}
}

func loadFlags(fs *flag.FlagSet, cfg *loadgen.Config) {
	fs.Float64Var(&cfg.Rate, "rate", 0, "offered likes per second over all targets (0: as fast as possible)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to run")
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "workers (keep-alive connections)")
	fs.IntVar(&cfg.Posts, "posts", 10000, "number of posts")
	fs.BoolVar(&cfg.Zipf, "zipf", false, "zipf-skewed post popularity (default uniform)")
	fs.Float64Var(&cfg.LagSamples, "lag-samples", 20, "likes per second followed until visible on every node")
	fs.StringVar(&cfg.WriteLevel, "w", "", "write level sent as ?w= (1 to 64, quorum or all); empty: each node's --write-acks")
}

func cmdLoad(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var cfg loadgen.Config
	var targets, jsonOut string
	fs.StringVar(&targets, "targets", "http://127.0.0.1:8080", "comma-separated node URLs")
	fs.StringVar(&jsonOut, "json", "", "also write the report as JSON to this file")
	loadFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Targets = strings.Split(targets, ",")
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Println(rep)
	for _, m := range rep.Memory {
		fmt.Printf("  %s: rss %s → %s (peak %s), heap %s → %s\n", m.Target, mib(m.Start), mib(m.End), mib(m.Peak), mib(m.HeapStart), mib(m.HeapEnd))
	}
	if jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		return os.WriteFile(jsonOut, b, 0o644)
	}
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

// cmdBare serves 200 to everything: the HTTP ceiling of this machine.
func cmdBare(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	like := fs.Bool("like-reply", false, "read the body and answer 201 with a like's JSON reply (likesbench front's baseline)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	if *like {
		h = http.HandlerFunc(likeReply)
	}
	srv := &http.Server{Addr: *addr, Handler: h}
	return serveUntil(ctx, srv)
}

// cmdSeed runs one node of the seed's design.
func cmdSeed(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	httpAddr := fs.String("http-addr", "127.0.0.1:8091", "HTTP listen address")
	gossip := fs.String("gossip-addr", "127.0.0.1:7990", "memberlist host:port")
	join := fs.String("join", "", "host:port to join")
	name := fs.String("name", "", "node name (default: the gossip address)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(*gossip)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return err
	}
	if *name == "" {
		*name = *gossip
	}
	n, err := seeddesign.Start(*name, host, port, *join)
	if err != nil {
		return err
	}
	defer n.Shutdown()
	return serveUntil(ctx, &http.Server{Addr: *httpAddr, Handler: n.Handler()})
}

func serveUntil(ctx context.Context, srv *http.Server) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
