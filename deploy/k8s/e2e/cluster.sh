#!/usr/bin/env bash
# A one-node Kubernetes for make k8s-e2e, inside a network namespace.
#
#   cluster.sh up BIN_DIR COREDNS   start it (sweeping a previous run first)
#   cluster.sh down                 stop it and undo every change to the host
#   cluster.sh kubectl ARGS...      kubectl against it
#
# Layout (all addresses live in the namespace $NS, except the host end of the
# veth):
#
#   host  lk8s-e2e 10.250.0.1/24 ──veth── eth0 10.250.0.2/24  node (in $NS)
#                                         cni0 10.250.1.1/24  pods (bridge)
#                                         10.250.2.0/24       services
#
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a containerd
# of its own (own root, state and socket: Docker's containerd is never
# touched), kubelet, kube-proxy (nftables mode) and CoreDNS run as processes
# in the namespace and in one private mount namespace, so the kubelet's and
# containerd's mounts are shared with each other and vanish with them. CoreDNS
# serves on the node address (the kubelet's clusterDNS): as a pod behind a
# ClusterIP it would need br_netfilter, a host-wide module. Forwarding is on
# in the namespace only; there is no default route, so nothing leaves it.
#
# Storage: no provisioner runs here, so `up` makes a default StorageClass
# (kubernetes.io/no-provisioner, WaitForFirstConsumer) and $VOLUMES local
# PersistentVolumes on directories under $WORK/volumes, created root-owned
# 0755 as a fresh disk would be: the pods' fsGroup must make them writable.
# The manifests name no StorageClass, so their claims take the default, as
# on minikube or a cloud.
#
# The kubelet changes six host sysctls and may create /var/log/containers:
# `up` saves what it finds and `down` puts it back. `down` is idempotent and
# safe after any failure; `up` runs it first, so a run killed half-way is
# swept by the next one.
set -euo pipefail
SELF=$(readlink -f "$0")

NS=likesd-k8s-e2e
HOST_IF=lk8s-e2e
HOST_IP=10.250.0.1
NODE_IP=10.250.0.2
POD_CIDR=10.250.1.0/24
POD_GW=10.250.1.1
SVC_CIDR=10.250.2.0/24
NODE=likesd-e2e
WORK=${LIKESD_K8S_E2E_DIR:-/var/tmp/likesd-k8s-e2e}
LOGS=$WORK/logs
KEEP_LOGS=$WORK.logs # the last run's logs, kept after down for post-mortems
CGROUP=likesd-k8s-e2e # kubelet cgroupRoot: every pod cgroup lives under it
VOLUMES=${VOLUMES:-8} # local PersistentVolumes: the master and up to 7 workers
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Host paths the kubelet or containerd create when they are absent; those
# this run created are removed by down.
HOST_PATHS=(/var/log/containers /var/log/pods /var/lib/kubelet /usr/libexec/kubernetes
  /etc/kubernetes /var/lib/cni /etc/cni /opt/cni /opt/containerd /var/lib/containerd)

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

kc() { "$WORK/bin/kubectl" --kubeconfig "$WORK/kubeconfig" "$@"; }

# wait_for TIMEOUT_S WHAT CMD...: poll CMD every half second. When WHAT is
# a daemon started here, its exit fails at once, with its log's tail.
wait_for() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout)) pid=
  [[ -f $WORK/pids ]] && pid=$(awk -v n="$what" '$1 == n {print $2}' "$WORK/pids")
  until "$@" >/dev/null 2>&1; do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$LOGS/$what.log" >&2
      die "$what exited (log: $LOGS/$what.log)"
    fi
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
    sleep 0.5
  done
}

# ---------------------------------------------------------------- down
down() {
  # Pods first, while containerd still answers: delete their tasks, so the
  # shims exit and remove their sockets from /run/containerd/s.
  if [[ -S $WORK/containerd/containerd.sock ]]; then
    local ctr=(timeout 10 ctr --address "$WORK/containerd/containerd.sock" -n k8s.io) t
    for t in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
      "${ctr[@]}" tasks delete --force "$t" >/dev/null 2>&1 || true
    done
  fi
  # The daemons this script started, newest first, by their recorded pids.
  if [[ -f $WORK/pids ]]; then
    local pids
    pids=$(tac "$WORK/pids" | awk '{print $2}')
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 1 20); do
      local alive=0
      for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.25
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
  fi
  # Whatever is left in the namespace (containerd's shims) and in the pod
  # cgroups (containers), by pid: all of it was started by this cluster.
  if [[ -e /run/netns/$NS ]]; then
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  fi
  local d
  for _ in 1 2 3 4 5; do
    for d in /sys/fs/cgroup/*/"$CGROUP"; do
      [[ -d $d ]] || continue
      for p in $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null); do
        kill -KILL "$p" 2>/dev/null || true
      done
    done
    sleep 0.2
  done
  for d in /sys/fs/cgroup/*/"$CGROUP"; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    [[ -d $d ]] && log "warning: could not remove cgroup $d"
  done
  if [[ -e /run/netns/$NS ]]; then ip netns del "$NS" 2>/dev/null || true; fi
  ip link del "$HOST_IF" 2>/dev/null || true

  # Host state the kubelet changed.
  if [[ -f $WORK/sysctls.saved ]]; then
    local k v
    while read -r k v; do sysctl -qw "$k=$v" >/dev/null || log "warning: could not restore $k=$v"; done <"$WORK/sysctls.saved"
  fi
  if [[ -f $WORK/paths.absent ]]; then
    while read -r d; do
      [[ -e $d ]] && { rm -rf "$d"; log "removed $d (created by this run)"; }
    done <"$WORK/paths.absent"
  fi
  # containerd-shim-runc-v2 puts its sockets in /run/containerd/s whatever
  # the state dir, and a killed shim leaves its socket behind. Docker's
  # shims share that directory: only sockets that appeared during this run
  # and that nothing listens on go, then the directories if this run made
  # them and they are empty.
  if [[ -f $WORK/shim-sockets.before && -d /run/containerd/s ]]; then
    python3 - "$WORK/shim-sockets.before" <<'PY' || true
import os, socket, sys
before = set(open(sys.argv[1]).read().split())
for name in os.listdir("/run/containerd/s"):
    path = os.path.join("/run/containerd/s", name)
    if path in before:
        continue
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
    except ConnectionRefusedError:
        os.remove(path)
    except OSError:
        pass
    finally:
        s.close()
PY
  fi
  if [[ -f $WORK/run-containerd.absent ]]; then
    find /run/containerd -depth -type d -empty -delete 2>/dev/null || true
  fi
  if [[ -f $WORK/containers.mode && -d /var/log/containers ]]; then
    chmod "$(cat "$WORK/containers.mode")" /var/log/containers
    find /var/log/containers -maxdepth 1 -xtype l -lname "$WORK/*" -delete 2>/dev/null || true
  fi
  # Mounts made outside the private mount namespace, if any.
  local m
  for m in $(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done

  if [[ -d $WORK ]]; then
    if [[ -d $LOGS ]]; then rm -rf "$KEEP_LOGS" && cp -r "$LOGS" "$KEEP_LOGS"; fi
    rm -rf "$WORK"
  fi
  return 0
}

# ---------------------------------------------------------------- up
up() {
  local bin=$1 coredns=$2
  [[ -x $bin/kubelet && -x $coredns ]] || die "usage: $0 up BIN_DIR COREDNS"
  down
  mkdir -p "$WORK"/{bin,logs,pki,etcd,kubelet,cni,cni-ipam,proxy,containerd,volume-plugins,pod-logs}
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    ln -s "$bin/$b" "$WORK/bin/$b"
  done
  ln -s "$coredns" "$WORK/bin/coredns"

  # What the host looks like before the kubelet touches it.
  for k in "${SYSCTLS[@]}"; do echo "$k $(sysctl -n "$k")"; done >"$WORK/sysctls.saved"
  for d in "${HOST_PATHS[@]}"; do [[ -e $d ]] || echo "$d"; done >"$WORK/paths.absent"
  [[ -d /var/log/containers ]] && stat -c %a /var/log/containers >"$WORK/containers.mode"
  [[ -e /run/containerd ]] || touch "$WORK/run-containerd.absent"
  find /run/containerd/s -type s 2>/dev/null >"$WORK/shim-sockets.before" || true

  log "network namespace $NS: node $NODE_IP, pods $POD_CIDR, services $SVC_CIDR"
  ip netns add "$NS"
  ip link add "$HOST_IF" type veth peer name eth0 netns "$NS"
  ip addr add "$HOST_IP/24" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip -n "$NS" addr add "$NODE_IP/24" dev eth0
  ip -n "$NS" link set eth0 up
  ip -n "$NS" link set lo up
  ip netns exec "$NS" sysctl -qw net.ipv4.ip_forward=1

  # The kubelet's cgroupRoot must exist in every hierarchy; a cgroup-v1
  # cpuset starts empty and takes no tasks until given CPUs and memory nodes.
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -f $h/cgroup.procs ]] || continue
    mkdir -p "$h$CGROUP"
    if [[ -f $h/cpuset.cpus ]]; then
      cat "$h/cpuset.cpus" >"$h$CGROUP/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h$CGROUP/cpuset.mems"
    fi
  done

  write_configs
  log "starting etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy, coredns"
  # One private mount namespace for every daemon, entered into $NS.
  unshare --mount --propagation slave -- nsenter --net="/run/netns/$NS" -- "$SELF" daemons
  log "waiting for node $NODE to be Ready"
  wait_for 120 kubelet node_ready # fails at once if the kubelet exits
  wait_for 60 "the default ServiceAccount" kc get serviceaccount default
  volumes
  log "up: kubectl --kubeconfig $WORK/kubeconfig (or: $0 kubectl ...)"
}

# volumes makes the default StorageClass and the local PersistentVolumes
# the pods' claims bind to (see the top of this file).
volumes() {
  log "default StorageClass e2e-local and $VOLUMES local PersistentVolumes in $WORK/volumes"
  {
    cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: e2e-local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
EOF
    local i
    for ((i = 0; i < VOLUMES; i++)); do
      install -d -m 0755 -o root -g root "$WORK/volumes/$i"
      cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: e2e-local-$i
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: e2e-local
  volumeMode: Filesystem
  local: {path: "$WORK/volumes/$i"}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - {key: kubernetes.io/hostname, operator: In, values: [$NODE]}
EOF
    done
  } | kc apply -f - >/dev/null
}

node_ready() {
  [[ $(kc get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

write_configs() {
  local token
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$token,e2e-admin,e2e-admin,system:masters" >"$WORK/pki/tokens.csv"
  openssl genrsa -out "$WORK/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$WORK/pki/sa.key" -pubout -out "$WORK/pki/sa.pub" 2>/dev/null
  # Every component uses the same admin token: a test cluster in a private
  # namespace, not a model of RBAC.
  cat >"$WORK/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://$NODE_IP:6443", insecure-skip-tls-verify: true}
users:
- name: e2e
  user: {token: "$token"}
contexts:
- name: e2e
  context: {cluster: e2e, user: e2e, namespace: default}
current-context: e2e
EOF

  cat >"$WORK/containerd/config.toml" <<EOF
version = 2
root = "$WORK/containerd/root"
state = "$WORK/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$WORK/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$WORK/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/likesd-e2e/pause:1"
  # No CAP_SYS_RESOURCE here: without this every sandbox fails with
  # "nsexec: failed to update /proc/self/oom_score_adj: Permission denied".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$WORK/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$WORK/cni"
EOF

  cat >"$WORK/cni/10-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "likesd-e2e",
  "plugins": [{
    "type": "bridge", "bridge": "cni0", "isGateway": true, "hairpinMode": true,
    "ipam": {"type": "host-local", "dataDir": "$WORK/cni-ipam",
             "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
             "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
EOF

  cat >"$WORK/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$WORK/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
failCgroupV1: false
failSwapOn: false
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: ""
podLogsDir: $WORK/pod-logs
volumePluginDir: $WORK/volume-plugins
# The API server reaches the kubelet (logs) inside the private namespace.
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
readOnlyPort: 0
# Images are imported, never pulled: no image GC, no disk-pressure evictions
# on a shared CI disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
EOF

  # kube-proxy exits when its config file changes: it gets a directory of
  # its own and is never rewritten while it runs.
  cat >"$WORK/proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $WORK/kubeconfig}
hostnameOverride: $NODE
clusterCIDR: $POD_CIDR
oomScoreAdj: 0
# Leave the host's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF

  cat >"$WORK/Corefile" <<EOF
.:53 {
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $WORK/kubeconfig e2e
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
    loadbalance
}
EOF
}

# ---------------------------------------------------------------- daemons
# Runs inside $NS and the private mount namespace; starts every daemon and
# returns once each answers.
daemons() {
  local b=$WORK/bin

  start etcd etcd --name e2e --data-dir "$WORK/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster e2e=http://127.0.0.1:2380
  wait_for 60 etcd curl -fsS http://127.0.0.1:2379/health

  start kube-apiserver "$b/kube-apiserver" \
    --etcd-servers http://127.0.0.1:2379 \
    --bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port 6443 \
    --cert-dir "$WORK/pki/apiserver" --token-auth-file "$WORK/pki/tokens.csv" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$WORK/pki/sa.pub" --service-account-signing-key-file "$WORK/pki/sa.key" \
    --service-cluster-ip-range "$SVC_CIDR" --service-node-port-range 30000-32767 \
    --kubelet-preferred-address-types InternalIP
  wait_for 120 kube-apiserver kc get --raw /readyz

  start kube-controller-manager "$b/kube-controller-manager" \
    --kubeconfig "$WORK/kubeconfig" --leader-elect=false \
    --root-ca-file "$WORK/pki/apiserver/apiserver.crt" \
    --service-account-private-key-file "$WORK/pki/sa.key" \
    --bind-address 127.0.0.1
  start kube-scheduler "$b/kube-scheduler" --kubeconfig "$WORK/kubeconfig" --leader-elect=false --bind-address 127.0.0.1

  start containerd containerd --config "$WORK/containerd/config.toml"
  wait_for 60 containerd ctr --address "$WORK/containerd/containerd.sock" version

  start kubelet "$b/kubelet" --config "$WORK/kubelet/config.yaml" --kubeconfig "$WORK/kubeconfig" \
    --root-dir "$WORK/kubelet/root" --hostname-override "$NODE" --node-ip "$NODE_IP"
  start kube-proxy "$b/kube-proxy" --config "$WORK/proxy/config.yaml"
  start coredns "$b/coredns" -conf "$WORK/Corefile"
  wait_for 60 coredns curl -fsS http://127.0.0.1:8181/ready
}

# start NAME CMD...: a daemon in its own session, logging to $LOGS/NAME.log;
# its pid goes to $WORK/pids for down.
start() {
  local name=$1; shift
  setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
  echo "$name $!" >>"$WORK/pids"
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) down ;;
  daemons) daemons ;;
  kubectl) shift; kc "$@" ;;
  *) echo "usage: $0 up BIN_DIR COREDNS | down | kubectl ARGS..." >&2; exit 2 ;;
esac
