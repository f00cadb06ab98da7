#!/usr/bin/env bash
# Instructions per policy decision, counted by callgrind (stable on noisy machines):
# for each engine, shape, size and request of `cargo bench --bench policy`, a fixed
# number of decisions (10,000 on the fast engine, 10 on casbin) run under valgrind with
# collection on only inside `PolicySet::decide_with`; the figure is the instructions
# counted there / the number of decisions.
#
#   bench/policy-callgrind.sh            (SIZES="1000 10000" ENGINES="fast casbin" SHAPES="narrow wide hipaa")
#
# The shipped example (`hipaa`) has one size, printed as 0.
#
# Needs valgrind (apt-get install -y valgrind). Never run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "bench/policy-callgrind.sh: needs valgrind" >&2; exit 1; }
cargo bench --bench policy --no-run 2>&1 | tail -1
BIN=$(ls -t target/release/deps/policy-* | grep -v '\.d$' | head -1)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
printf '%-7s %-7s %6s %-8s %14s\n' engine shape rules request instr/decision
for engine in ${ENGINES:-fast casbin}; do
  for shape in ${SHAPES:-narrow wide hipaa}; do
    sizes=${SIZES:-1000 10000}; reqs="best worst denied"
    [ "$shape" = hipaa ] && { sizes=0; reqs="best worst denied norole"; }
    for n in $sizes; do
      for req in $reqs; do
        calls=10000; [ "$engine" = casbin ] && calls=10
        POLICY_CALLS=$calls POLICY_ONLY="$engine:$shape:$n:$req" POLICY_SIZES="$n" POLICY_SHAPES="$shape" valgrind --tool=callgrind \
          --callgrind-out-file="$OUT/cg.out" --toggle-collect='*PolicySet*decide_with*' "$BIN" >/dev/null 2>"$OUT/vg.log"
        ir=$(grep -m1 '^summary:' "$OUT/cg.out" | awk '{print $2}')
        printf '%-7s %-7s %6s %-8s %14s\n' "$engine" "$shape" "$n" "$req" "$((ir / calls))"
      done
    done
  done
done
