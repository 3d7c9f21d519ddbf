#!/usr/bin/env bash
# Builds Kubernetes from the Go module proxy into a cache outside the repo,
# keyed by version, and prints the directory holding the binaries.
#
#   build-tools.sh          kube-apiserver and kubectl (make k8s-verify)
#   build-tools.sh all      also kube-controller-manager, kube-scheduler,
#                           kubelet, kube-proxy and coredns (make k8s-e2e)
#
# Cold: the two API binaries take a few minutes, all of them 15-25 min on a
# quiet 2-core machine (longer on a busy one). Every binary is built in one
# `go build` so they share one build cache; later runs find the binaries and
# return at once. Module downloads are retried: the proxy sometimes hiccups.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.34.4}
# CoreDNS v1.14.0 is built against client-go v0.34.x, the same line as K8S_VERSION.
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.0}
STAGING_VERSION=v0${K8S_VERSION#v1} # v1.34.4 -> v0.34.4
ROOT=${LIKESD_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/likesd-k8s}
CACHE=$ROOT/$K8S_VERSION
BIN=$CACHE/bin

k8s_cmds=(kube-apiserver kubectl)
want_coredns=false
case ${1:-api} in
  api) ;;
  all)
    k8s_cmds+=(kube-controller-manager kube-scheduler kubelet kube-proxy)
    want_coredns=true
    ;;
  *) echo "usage: $0 [api|all]" >&2; exit 2 ;;
esac

missing=()
for c in "${k8s_cmds[@]}"; do [[ -x $BIN/$c ]] || missing+=("$c"); done
coredns_bin=$BIN/coredns-$COREDNS_VERSION
if $want_coredns && [[ -x $coredns_bin ]]; then want_coredns=false; fi
if ((${#missing[@]} == 0)) && ! $want_coredns; then
  echo "$BIN"; exit 0
fi

log() { echo "build-tools: $* ($(date +%T))" >&2; }

# retry runs "$@" up to 4 times, 5/10/20 s apart: module downloads fail now
# and then on a busy or flaky proxy connection.
retry() {
  local n=1 wait=5
  until "$@"; do
    if ((n == 4)); then log "giving up after $n attempts: $*"; return 1; fi
    log "attempt $n failed, again in ${wait}s: $*"
    sleep "$wait"; n=$((n + 1)); wait=$((wait * 2))
  done
}

# build OUT_LOG go-build-args...: go build, niced (the machine is shared),
# printing a line a minute with the number of packages compiled so far: a
# cold build is quiet for a long time otherwise.
build() {
  local out=$1; shift
  nice -n 15 go build -v "$@" 2>"$out" &
  local pid=$! start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null && sleep 1; done
    kill -0 "$pid" 2>/dev/null && log "still building: $(grep -vc '^go: ' "$out") packages in $(((SECONDS - start) / 60)) min"
  done
  wait "$pid" || { grep -v '^[a-zA-Z0-9./_-]*$' "$out" | tail -n 30 >&2; return 1; }
}

export GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$BIN"

if ((${#missing[@]})); then
  src=$CACHE/src
  mkdir -p "$src" && cd "$src"
  # kubernetes requires its staging modules as v0.0.0 and replaces them with
  # local paths; a module outside the tree replaces them with their releases.
  gomod=$(retry go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module likesd-k8s-tools"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n '/^replace (/,/^)/p' "$gomod" | awk '/=>/ {print "\t" $1 " => " $1 " '"$STAGING_VERSION"'"}'
    echo ")"
  } >go.mod
  {
    echo '//go:build tools'
    echo
    echo 'package tools'
    echo
    echo 'import ('
    for c in kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy; do
      echo "	_ \"k8s.io/kubernetes/cmd/$c\""
    done
    echo ')'
  } >tools.go
  log "resolving k8s.io/kubernetes $K8S_VERSION modules"
  retry go mod tidy >&2
  retry go mod download >&2
  v=component-base/version
  ldflags="-s -w -X k8s.io/$v.gitVersion=$K8S_VERSION -X k8s.io/$v.gitMajor=1"
  ldflags+=" -X k8s.io/$v.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION") -X k8s.io/$v.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  pkgs=(); for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  log "building ${missing[*]} $K8S_VERSION into $BIN (cold: 15-25 min for all six)"
  rm -rf "$CACHE/stage" && mkdir -p "$CACHE/stage"
  retry build "$CACHE/build.log" -trimpath -ldflags "$ldflags" -o "$CACHE/stage/" "${pkgs[@]}"
  # Only whole binaries enter the cache.
  for c in "${missing[@]}"; do mv "$CACHE/stage/$c" "$BIN/$c"; done
  log "built ${missing[*]}"
fi

if $want_coredns; then
  src=$ROOT/coredns-$COREDNS_VERSION/src
  mkdir -p "$src" && cd "$src"
  # CoreDNS's own main imports every plugin (cloud DNS SDKs included). This
  # one registers only what the cluster's Corefile uses, in plugin.cfg order.
  cat >go.mod <<EOF
module likesd-coredns

go 1.24

require github.com/coredns/coredns $COREDNS_VERSION
EOF
  cat >main.go <<'GO'
// Command coredns is CoreDNS with only the plugins a test cluster's DNS needs.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The order plugins run in: a subset of CoreDNS's plugin.cfg, same order.
func init() {
	dnsserver.Directives = []string{"ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
  log "building coredns $COREDNS_VERSION (kubernetes, cache, errors, health, ready, log, loadbalance plugins)"
  retry go mod tidy >&2
  retry build "$src/build.log" -trimpath -ldflags "-s -w" -o "$coredns_bin.tmp" .
  mv "$coredns_bin.tmp" "$coredns_bin"
  log "built coredns"
fi
echo "$BIN"
