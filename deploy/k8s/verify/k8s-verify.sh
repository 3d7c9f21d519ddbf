#!/usr/bin/env bash
# make k8s-verify: the manifests against a real kube-apiserver.
#
# Starts etcd (Debian's etcd-server) and kube-apiserver (built from the Go
# module proxy by build-tools.sh) on 127.0.0.1, applies deploy/k8s with
# server-side apply and strict field validation, scales the workers to 5
# through the API exactly as `make scale WORKERS=5` does, checks what the API
# stored, and deletes everything. No controllers or kubelet run: pods and
# their PersistentVolumeClaims are never created; this checks what the API
# server accepts.
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$PWD

if ! command -v etcd >/dev/null; then
  echo "installing etcd-server from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
bin=$(deploy/k8s/verify/build-tools.sh)

work=$(mktemp -d)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $rc -ne 0 ]]; then
    echo "--- kube-apiserver log (tail)" >&2; tail -n 30 "$work/apiserver.log" >&2 || true
    echo "--- etcd log (tail)" >&2; tail -n 10 "$work/etcd.log" >&2 || true
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
etcd_client=$(freeport); etcd_peer=$(freeport); api_port=$(freeport)

etcd --name verify --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "verify=http://127.0.0.1:$etcd_peer" >"$work/etcd.log" 2>&1 &
pids+=($!)

openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token,verify-admin,verify-admin,system:masters" >"$work/tokens.csv"

"$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_client" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --cert-dir "$work/certs" --token-auth-file "$work/tokens.csv" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$work/sa.pub" --service-account-signing-key-file "$work/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 --service-node-port-range 30000-32767 \
  >"$work/apiserver.log" 2>&1 &
pids+=($!)

kc="$work/kubeconfig"
k() { "$bin/kubectl" --kubeconfig "$kc" "$@"; }
k config set-cluster verify --server "https://127.0.0.1:$api_port" --insecure-skip-tls-verify=true >/dev/null
k config set-credentials verify --token "$token" >/dev/null
k config set-context verify --cluster verify --user verify --namespace default >/dev/null
k config use-context verify >/dev/null

echo "waiting for kube-apiserver on 127.0.0.1:$api_port" >&2
for i in $(seq 1 120); do
  if k get --raw /readyz >/dev/null 2>&1; then break; fi
  [[ $i -eq 120 ]] && { echo "kube-apiserver never became ready" >&2; exit 1; }
  sleep 1
done
# The default namespace appears a moment after /readyz.
for i in $(seq 1 30); do k get namespace default >/dev/null 2>&1 && break; sleep 1; done
echo "kube-apiserver $("$bin/kube-apiserver" --version | awk '{print $2}') ready" >&2

echo "== control: the server rejects a typo'd field under strict validation" >&2
if printf 'apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: typo\nspec:\n  replica: 3\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}\n' \
  | k apply --server-side --dry-run=server --validate=strict -f - 2>"$work/typo.err"; then
  echo "strict validation is off: a StatefulSet with 'replica' was accepted" >&2; exit 1
fi
echo "ok  rejected: $(cat "$work/typo.err")" >&2; grep -q "spec.replica" "$work/typo.err" || { echo "rejected for another reason" >&2; exit 1; }

echo "== server-side apply, strict validation" >&2
k apply --server-side --field-manager likesd-verify --validate=strict -f deploy/k8s/

echo "== make scale WORKERS=5, through the API" >&2
make --no-print-directory scale WORKERS=5 KUBECTL="$bin/kubectl --kubeconfig $kc"
replicas=$(k get statefulset likes-worker -o jsonpath='{.spec.replicas}')
[[ $replicas == 5 ]] || { echo "workers: want 5 replicas, API has $replicas" >&2; exit 1; }

echo "== what the API stored" >&2
check() { local got; got=$(k get "$1" -o jsonpath="$2"); [[ $got == "$3" ]] || { echo "$1 $2: want '$3', got '$got'" >&2; exit 1; }; echo "ok  $1 $2 = $got" >&2; }
check statefulset/likes-master '{.spec.replicas}' 1
check statefulset/likes-master '{.spec.template.metadata.labels.workertype}' master
check statefulset/likes-master '{.spec.serviceName}' likes-master-gossip
check statefulset/likes-worker '{.spec.serviceName}' likes-gossip
check statefulset/likes-worker '{.spec.podManagementPolicy}' OrderedReady
for s in likes-master likes-worker; do
  check "statefulset/$s" '{.spec.volumeClaimTemplates[0].metadata.name}' data
  check "statefulset/$s" '{.spec.volumeClaimTemplates[0].spec.accessModes[0]}' ReadWriteOnce
  check "statefulset/$s" '{.spec.persistentVolumeClaimRetentionPolicy.whenScaled}' Retain
  check "statefulset/$s" '{.spec.template.spec.securityContext.fsGroup}' 65532
  check "statefulset/$s" '{.spec.template.spec.containers[0].volumeMounts[?(@.name=="data")].mountPath}' /var/lib/likesd
done
check configmap/likes-config '{.data.LIKESD_DATA_DIR}' /var/lib/likesd
check service/likes-master-gossip '{.spec.clusterIP}' None
check service/likes-gossip '{.spec.clusterIP}' None
check service/distributed-likes-service-cluster '{.spec.type}' LoadBalancer
check service/distributed-likes-service-cluster '{.spec.ports[0].nodePort}' 31001
check poddisruptionbudget/likes-distributed '{.spec.maxUnavailable}' 1
k get statefulsets,services,configmaps,secrets,poddisruptionbudgets -l application=likes-distributed

echo "== tear down" >&2
k delete -f deploy/k8s/ --wait=true
left=$(k get statefulsets,services,configmaps,secrets,poddisruptionbudgets -l application=likes-distributed -o name)
[[ -z $left ]] || { echo "left behind: $left" >&2; exit 1; }
echo "k8s-verify: the API server accepted every manifest; scaled to 5; torn down" >&2
