#!/usr/bin/env bash
# Builds kube-apiserver and kubectl from the Go module proxy into a cache
# outside the repo (~2-3 minutes the first time, instant after). Prints the
# directory holding both binaries.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.34.4}
STAGING_VERSION=v0${K8S_VERSION#v1}   # v1.34.4 -> v0.34.4
CACHE=${LIKESD_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/likesd-k8s/$K8S_VERSION}
if [[ -x $CACHE/bin/kube-apiserver && -x $CACHE/bin/kubectl ]]; then
  echo "$CACHE/bin"; exit 0
fi
mkdir -p "$CACHE/src" "$CACHE/bin"
cd "$CACHE/src"
# kubernetes requires its staging modules as v0.0.0 and replaces them with
# local paths; a module outside the tree replaces them with their releases.
gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
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
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
echo "building kube-apiserver and kubectl $K8S_VERSION into $CACHE/bin (first time: a few minutes)" >&2
GOFLAGS=-mod=mod go mod tidy -e >&2 2>/dev/null || true
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -o "$CACHE/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -o "$CACHE/bin/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
echo "$CACHE/bin"
