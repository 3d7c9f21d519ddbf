#!/usr/bin/env bash
# cluster.sh [BIN]: three likesd nodes on loopback, n1 the seed, n2 and n3
# joining it; Ctrl-C (SIGINT) or SIGTERM stops all of them gracefully and
# exits 0. `make cluster` runs it. Each node keeps its likes in a data dir of
# its own, DATA_DIR/n1 ... n3 (default ./data, gitignored): a second run
# starts with the likes of the first; remove the directory to start empty.
# The ports and the directory can be moved (tests do):
#   HTTP_PORTS="8081 8082 8083" GOSSIP_PORTS="7946 7947 7948" DATA_DIR=data
set -u
bin=${1:-bin/likesd}
read -r -a http <<<"${HTTP_PORTS:-8081 8082 8083}"
read -r -a gossip <<<"${GOSSIP_PORTS:-7946 7947 7948}"
data=${DATA_DIR:-data}
pids=()
echo "cluster: data dirs $data/n1 $data/n2 $data/n3 (remove them to start empty)" >&2

# stop signals the nodes only (not the process group: `kill 0` would signal
# this shell too and re-enter the trap until bash crashed) and waits for
# their graceful shutdown.
stop() {
	trap '' INT TERM
	kill -TERM "${pids[@]}" 2>/dev/null
	wait
	exit 0
}
trap stop INT TERM

for i in 0 1 2; do
	args=(--http-addr "127.0.0.1:${http[i]}" --gossip-addr "127.0.0.1:${gossip[i]}" --node-name "n$((i + 1))" --log-format console --write-acks 2
		--data-dir "$data/n$((i + 1))")
	if ((i > 0)); then
		args+=(--join "127.0.0.1:${gossip[0]}")
	fi
	"$bin" "${args[@]}" &
	pids+=($!)
	if ((i == 0)); then
		sleep 0.5 # the seed first
	fi
done
# One node exiting (a port in use, say) stops the others.
wait -n
stop
