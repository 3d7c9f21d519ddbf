#!/usr/bin/env bash
# Applies deploy/k8s in order, waiting for each tier to be Ready: what
# `make run` does on minikube and `make k8s-e2e` does on its test cluster, so
# CI proves what a minikube user runs. The image must already be on the node.
#
#   KUBECTL="kubectl --context minikube" deploy/k8s/deploy.sh
set -euo pipefail
KUBECTL=${KUBECTL:-kubectl}
TIMEOUT=${TIMEOUT:-180s}
dir=$(cd "$(dirname "$0")" && pwd)
# KUBECTL may carry flags (--kubeconfig ...): split on spaces on purpose.
read -r -a kubectl <<<"$KUBECTL"
k() { "${kubectl[@]}" "$@"; }
step() { echo "deploy: $*" >&2; }
# rollout waits for a StatefulSet; when it times out, the likely cause is a
# PersistentVolumeClaim that never bound (no default StorageClass).
rollout() {
  k rollout status "statefulset/$1" --timeout="$TIMEOUT" && return
  echo "deploy: $1 not Ready in $TIMEOUT; its volumes:" >&2
  k get pvc -l "application=likes-distributed" >&2 || true
  echo "deploy: a Pending PVC needs a default StorageClass, or a storageClassName in volumeClaimTemplates (docs/deploy.md, Storage)" >&2
  return 1
}

step "settings"
k apply -f "$dir/00-config.yaml"
# The gossip key is made here, random, only when the Secret does not exist:
# no key ships with the manifests (anyone could read it), and an existing
# Secret is never touched, neither the key in use nor a keyring in the
# middle of a rotation (docs/deploy.md, Rotating the gossip key). The key
# goes through stdin, not the command line. `make down` keeps the Secret.
if [ -n "$(k get secret likes-gossip-key --ignore-not-found -o name)" ]; then
  step "the gossip key: Secret likes-gossip-key exists, kept"
else
  step "the gossip key: none yet, making a random one (Secret likes-gossip-key)"
  key=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
  k create -f - <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: likes-gossip-key
  labels:
    application: likes-distributed
type: Opaque
stringData:
  gossip.key: "$key"
EOF
fi
step "the master (the seed) and the gossip Services"
k apply -f "$dir/10-master.yaml" -f "$dir/11-master-gossip-service.yaml" -f "$dir/12-gossip-service.yaml"
rollout likes-master
step "the workers and the disruption budget"
k apply -f "$dir/20-worker.yaml" -f "$dir/21-pdb.yaml"
rollout likes-worker
step "the client Service (NodePort 31001)"
k apply -f "$dir/30-loadbalancer.yaml"
