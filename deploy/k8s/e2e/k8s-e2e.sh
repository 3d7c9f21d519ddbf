#!/usr/bin/env bash
# make k8s-e2e: deploy/k8s on a real one-node Kubernetes, checked with real
# pods.
#
#  1. Kubernetes v1.34 (six binaries) and CoreDNS from the Go module proxy,
#     cached by version (verify/build-tools.sh all; cold 15-25 min);
#  2. likesd:local (make image) and a pause image (e2e/pause, FROM scratch);
#  3. the cluster in a network namespace (e2e/cluster.sh up) with a default
#     StorageClass and local PersistentVolumes, images imported into its own
#     containerd;
#  4. deploy/k8s/deploy.sh, exactly what make run does on minikube;
#  5. e2e/check: Ready, join through DNS, a like through NodePort 31001 on
#     every pod, scale to 5 workers, master restart, PDB eviction; then,
#     while likes flow, every pod deleted at once, a rollout restart of both
#     StatefulSets, and the workers scaled 5 -> 1 -> 3, each followed by
#     every stored like on every pod (none lost); no error in the pods' logs;
#  6. tear down, whatever happened (e2e/cluster.sh down).
#
# Needs root, Docker, and from Debian: containerd, runc, etcd-server,
# containernetworking-plugins, nftables, iproute2, util-linux, curl, openssl.
# Logs of the last run stay in $LIKESD_K8S_E2E_DIR.logs.
set -euo pipefail
cd "$(dirname "$0")/../../.."
e2e=deploy/k8s/e2e
export LIKESD_K8S_E2E_DIR=${LIKESD_K8S_E2E_DIR:-/var/tmp/likesd-k8s-e2e}
export COREDNS_VERSION=${COREDNS_VERSION:-v1.14.0}
work=$LIKESD_K8S_E2E_DIR
node_ip=10.250.0.2
pause_image=localhost/likesd-e2e/pause:1
# Built under a tag of its own (other work on this machine may be building
# likesd:local at the same time), named likesd:local inside the cluster.
build_tag=likesd-k8s-e2e:local

t0=$SECONDS
phase() { echo; echo "=== k8s-e2e: $* (+$((SECONDS - t0))s, $(date +%T))" >&2; }
die() { echo "k8s-e2e: $*" >&2; exit 1; }
times=()
timed() { times+=("$(printf '%-22s %6ss' "$1" "$2")"); }

[[ $EUID -eq 0 ]] || die "needs root (network namespace, containerd, kubelet)"
for c in containerd ctr runc etcd nft ip unshare nsenter docker curl openssl; do
  command -v "$c" >/dev/null || die "missing $c (see .ci/run for the Debian packages)"
done
for p in bridge host-local loopback; do
  [[ -x /usr/lib/cni/$p ]] || die "missing /usr/lib/cni/$p (Debian: containernetworking-plugins)"
done

# One run at a time on a machine: the namespace and the paths are fixed.
exec 9>/run/lock/likesd-k8s-e2e.lock
flock -n 9 || die "another k8s-e2e is running"

phase "Kubernetes and CoreDNS binaries (built once per version, then cached)"
s=$SECONDS
bin=$(deploy/k8s/verify/build-tools.sh all)
timed "binaries" $((SECONDS - s))
coredns=$bin/coredns-$COREDNS_VERSION

phase "images: likesd:local (make image) and the pause image"
s=$SECONDS
make --no-print-directory image IMAGE="$build_tag" >/dev/null
tmp=$(mktemp -d)
(cd deploy/k8s && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$tmp/pause" ./e2e/pause)
printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$tmp/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$pause_image" "$tmp" >/dev/null
(cd deploy/k8s && go build -o "$tmp/check" ./e2e/check)
timed "images" $((SECONDS - s))

teardown() {
  local rc=$?
  set +e
  phase "tear down (exit $rc)"
  if ((rc != 0)) && [[ -d $work/logs ]]; then
    for f in "$work"/logs/*.log; do
      echo "--- $(basename "$f") (tail)" >&2
      tail -n 15 "$f" >&2
    done
  fi
  "$e2e/cluster.sh" down
  rm -rf "$tmp"
  ((${#times[@]})) && printf '  %s\n' "${times[@]}" >&2
  echo "logs: $work.logs" >&2
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

phase "cluster up (network namespace likesd-k8s-e2e, node $node_ip)"
s=$SECONDS
"$e2e/cluster.sh" up "$bin" "$coredns"
ctr=(ctr --address "$work/containerd/containerd.sock" -n k8s.io)
for img in "$pause_image" "$build_tag"; do
  docker save "$img" | "${ctr[@]}" images import - >/dev/null
done
"${ctr[@]}" images tag --force "docker.io/library/$build_tag" docker.io/library/likesd:local >/dev/null
timed "cluster up" $((SECONDS - s))

kubectl="$bin/kubectl --kubeconfig $work/kubeconfig"
phase "deploy: deploy/k8s/deploy.sh (what make run does)"
s=$SECONDS
KUBECTL="$kubectl" TIMEOUT=120s deploy/k8s/deploy.sh
timed "deploy, all Ready" $((SECONDS - s))
$kubectl get pods,pvc -o wide

phase "a client outside the node: the host reaches NodePort 31001"
# The LoadBalancer exposes the API only: a count answers, /readyz is not
# there (it is on the pods' admin port).
curl -fsS --max-time 5 --retry 20 --retry-delay 1 --retry-connrefused "http://$node_ip:31001/v1/posts/e2e/likes"; echo
test "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "http://$node_ip:31001/readyz")" = 404

phase "checks with real pods"
mkdir -p "$work/logs/pods"
ip netns exec likesd-k8s-e2e "$tmp/check" --kubectl "$kubectl" --node "$node_ip" \
  --log-dir "$work/logs/pods" --times "$work/times"
while read -r name secs; do timed "$name" "$secs"; done <"$work/times"

timed "total" $((SECONDS - t0))
phase "passed"
