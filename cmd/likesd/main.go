// Command likesd runs one node of the likes service: the HTTP API over this
// node's replica, joined to the other nodes by gossip. It only wires the
// internal packages together; see README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "keygen" {
		return keygen(args[1:], stdout, stderr)
	}
	opts, err := parseOptions(args, environ, stdout)
	switch {
	case err == errHelp:
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "likesd: %v\nRun 'likesd --help' for usage.\n", err)
		return 2
	case opts.showVersion:
		fmt.Fprintf(stdout, "likesd %s\n", version)
		return 0
	}
	if err := serve(ctx, opts, stderr); err != nil {
		fmt.Fprintf(stderr, "likesd: %v\n", err)
		return 1
	}
	return 0
}
