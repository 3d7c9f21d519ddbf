#!/usr/bin/env bash
# bench-gset.sh: the gset and store Go benchmarks on this tree beside the
# same tree with the B-tree gset it replaced (BASE, default the last commit
# before the front-coded blocks), interleaved in one run, compared with
# benchstat on CPU time per op (the machine is shared: wall time measures
# the neighbours). Issue 10's "no slower than 1.5x, merges at least as fast"
# is read off the store table.
#
#   scripts/bench-gset.sh [rounds]      (default 6 rounds, ~12 min)
#
# Both sides are built from the committed HEAD. The store's benchmarks whose
# sets grow with b.N (LikeNew, LikeHotPost, Merge) run a fixed number of
# iterations, so both sides grow the same sets.
set -euo pipefail
rounds=${1:-6}
base=${BASE:-e8b54bb^1}
out=${OUT:-$(mktemp -d /tmp/bench-gset.XXXXXX)}
root=$(git rev-parse --show-toplevel)
cd "$root"
command -v benchstat >/dev/null || GOFLAGS= go install golang.org/x/perf/cmd/benchstat@latest
benchstat=$(command -v benchstat || echo "$(go env GOPATH)/bin/benchstat")

# The baseline: this tree, with internal/gset's code from $base (its API is
# the same) and this tree's gset benchmarks; gset's other tests read the
# new representation's internals and are left out.
old="$out/old-tree" new="$out/new-tree"
rm -rf "$old" "$new" && mkdir -p "$old" "$new"
git archive HEAD | tar -x -C "$old"
git archive HEAD | tar -x -C "$new"
rm -f "$old"/internal/gset/*.go
for f in $(git ls-tree --name-only "$base" internal/gset/ | grep '\.go$' | grep -v '_test\.go$'); do
	git show "$base:$f" >"$old/$f"
done
cp internal/gset/gset_bench_test.go "$old/internal/gset/"
# The store's compaction uses what only the blocks have (Compacted,
# LowestBlock): the baseline goes without it, as it did.
rm -f "$old/internal/store/compact.go" "$old/internal/store/compact_test.go"
(cd "$old" && go test -c -o "$out/gset.old" ./internal/gset && go test -c -o "$out/store.old" ./internal/store)
(cd "$new" && go test -c -o "$out/gset.new" ./internal/gset && go test -c -o "$out/store.new" ./internal/store)

for i in $(seq "$rounds"); do
	for v in old new; do
		"$out/gset.$v" -test.run '^$' -test.bench '^Benchmark(Add|Has|Page100|Encode|Decode|Merge|CloneThenAdd)$' -test.benchmem -test.benchtime 0.2s >>"$out/gset.$v.txt"
		"$out/store.$v" -test.run '^$' -test.bench '^Benchmark(LikeRepeat|Count|Has1M|Likers1M|Snapshot1M)$' -test.benchmem -test.benchtime 0.3s >>"$out/store.$v.txt"
		"$out/store.$v" -test.run '^$' -test.bench '^Benchmark(LikeNew|LikeHotPost)$' -test.benchmem -test.benchtime 1000000x >>"$out/store.$v.txt"
		"$out/store.$v" -test.run '^$' -test.bench '^BenchmarkMerge$' -test.benchmem -test.benchtime 20000x >>"$out/store.$v.txt"
	done
	echo "round $i of $rounds done" >&2
done
for t in gset store; do
	echo "== $t: B-tree ($base) against front-coded blocks (HEAD $(git rev-parse --short HEAD)), CPU time per op"
	(cd "$out" && "$benchstat" -filter '.unit:cpu-ns/op' "$t.old.txt" "$t.new.txt")
	echo "== $t: allocations"
	(cd "$out" && "$benchstat" -filter '.unit:(B/op OR allocs/op)' "$t.old.txt" "$t.new.txt")
done
echo "raw results in $out" >&2
