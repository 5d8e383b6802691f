#!/usr/bin/env bash
# Many-to-many benchmark on a bridged LAN of network namespaces (root
# needed): a hub and four hosts, each host's link shaped to 100 Mbit/s
# (tc tbf, like the Wi-Fi of a phone) in the direction that matters.
#
#   multi-source: `airhop get HASH` from three sharers at once, against
#                 `airhop get Ada:FILE` from one of them (same file, root
#                 known to all: both verified streams), same links, same run;
#   fan-out:      `airhop send --to H0 --to H1 --to H2 --to H3 FILE` against
#                 `airhop send --to H0 FILE`, each receiver's link 100 Mbit/s.
#
#   scripts/bench-many.sh                  # 3 runs each, 256 MiB
#   RUNS=5 SIZE_MB=128 scripts/bench-many.sh
#
# Multi-source figures are the pulls' own times (the `done` event's
# seconds: from the first accepted offer to the file in place; discovery
# and asking each sharer come before); fan-out figures are the sending
# command's whole run (discovery included, as a user waits for it). Page
# cache dropped before every run. Medians, with every run printed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-256}
WORK=${WORK:-/var/tmp/airhop-bench-many}
HUB=ahm-hub N=4 NET=10.202.0
BIN=$ROOT/target/release/airhop

say() { printf '%s\n' "$*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
ns() { echo "ahm-h$1"; }
ipof() { echo "$NET.$((10 + $1))"; }

cleanup() {
  for i in $(seq 0 $((N - 1))) hub; do
    local n; [[ $i == hub ]] && n=$HUB || n=$(ns "$i")
    ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
}
trap cleanup EXIT

net_up() {
  cleanup
  ip netns add $HUB
  ip -n $HUB link add br0 type bridge
  ip -n $HUB link set br0 type bridge mcast_snooping 0
  ip -n $HUB addr add $NET.1/24 dev br0
  ip -n $HUB link set br0 up; ip -n $HUB link set lo up
  for i in $(seq 0 $((N - 1))); do
    ip netns add "$(ns "$i")"
    ip link add "ahmh$i" netns "$(ns "$i")" type veth peer name "ahmp$i" netns $HUB
    ip -n $HUB link set "ahmp$i" master br0; ip -n $HUB link set "ahmp$i" up
    ip -n "$(ns "$i")" addr add "$(ipof "$i")/24" dev "ahmh$i"
    ip -n "$(ns "$i")" link set "ahmh$i" up; ip -n "$(ns "$i")" link set lo up
  done
}

# tbf NS DEV: 100 Mbit/s out of DEV.
tbf() { ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate 100mbit burst 256kb latency 20ms; }
untbf() { ip netns exec "$1" tc qdisc del dev "$2" root 2>/dev/null || true; }

# airhop_in NS IP CFG NAME ARGS...: the binary in a namespace, its own
# config (and hash cache) folder.
airhop_in() {
  local n=$1 ip=$2 cfg=$3 name=$4; shift 4
  ip netns exec "$n" env AIRHOP_CONFIG_DIR="$cfg" XDG_CACHE_HOME="${CACHE:-$cfg}" NO_COLOR=1 \
    "$BIN" --name "$name" --interface "$ip" "$@"
}

# wait_line FILE PATTERN SECS
wait_line() {
  for ((k = 0; k < $3 * 10; k++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  say "timed out waiting for $2 in $1"; return 1
}

seconds_of_done() { grep '"event":"done"' "$1" | tail -1 | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["seconds"])'; }

NAMES=(Ada Bea Cy Dee)

multi_source() {
  say "== multi-source: three sharers at 100 Mbit/s each, $SIZE_MB MiB, $RUNS runs"
  export CACHE=$WORK/cache
  rm -rf "$CACHE"
  for i in 0 1 2; do tbf "$(ns "$i")" "ahmh$i"; done
  # Ada first, alone: one pull teaches her (and the shared cache) the root.
  airhop_in "$(ns 0)" "$(ipof 0)" "$WORK/s0" Ada --json share --yes "$FILE" >"$WORK/s0.out" 2>&1 &
  wait_line "$WORK/s0.out" '"ready"' 20
  unset CACHE
  airhop_in $HUB $NET.1 "$WORK/p" Pat --json get Ada:payload.bin --dir "$WORK/warm" >/dev/null 2>>"$WORK/log"
  export CACHE=$WORK/cache
  for i in 1 2; do
    airhop_in "$(ns "$i")" "$(ipof "$i")" "$WORK/s$i" "${NAMES[$i]}" --json share --yes "$FILE" >"$WORK/s$i.out" 2>&1 &
    wait_line "$WORK/s$i.out" '"ready"' 20
  done
  unset CACHE
  local root
  root=$(airhop_in $HUB $NET.1 "$WORK/p" Pat --json ls Ada 2>>"$WORK/log" | python3 -c 'import json,sys
for l in sys.stdin:
    v = json.loads(l)
    if v.get("event") == "shared" and v.get("root"): print(v["root"]); break')
  [[ -n $root ]] || { say "Ada lists no root"; return 1; }
  local ones=() threes=()
  for ((r = 0; r < RUNS; r++)); do
    for what in one three; do
      rm -rf "$WORK/in"; drop_caches
      local arg=Ada:payload.bin; [[ $what == three ]] && arg=${root:0:16}
      airhop_in $HUB $NET.1 "$WORK/p" Pat --json get "$arg" --dir "$WORK/in" >"$WORK/get.out" 2>>"$WORK/log" \
        || { say "  $what run $r failed (see $WORK/log)"; continue; }
      cmp -s "$FILE" "$WORK/in/payload.bin" || { say "  $what run $r: bytes differ"; return 1; }
      local s; s=$(seconds_of_done "$WORK/get.out")
      if [[ $what == one ]]; then ones+=("$s"); else threes+=("$s"); fi
      say "  run $r, $what source(s): $s s"
      sleep 3 # the sharers admit 3 invitations from one device in 10 s
    done
  done
  for i in 0 1 2; do untbf "$(ns "$i")" "ahmh$i"; done
  ip netns pids "$(ns 0)" | xargs -r kill; ip netns pids "$(ns 1)" | xargs -r kill; ip netns pids "$(ns 2)" | xargs -r kill
  echo
  echo "multi-source, $SIZE_MB MiB, three sharers at 100 Mbit/s each, medians of $RUNS (seconds)"
  report "one sharer (get Ada:FILE)" ones "three sharers (get HASH)" threes \
    "speed-up, three / one" "(target >= 2.5; ideal 3)" 1
}

# ratio A B: A/B with 2 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }

# report LABEL_A ARRAY_A LABEL_B ARRAY_B RATIO_LABEL TARGET A_OVER_B: the
# medians and every run of both, their ratio (A/B when A_OVER_B is 1, else
# B/A), and the ratio run by run.
report() {
  local -n xs=$2 ys=$4
  local x y k per=()
  x=$(printf '%s\n' "${xs[@]}" | median); y=$(printf '%s\n' "${ys[@]}" | median)
  local r; if [[ $7 == 1 ]]; then r=$(ratio "$x" "$y"); else r=$(ratio "$y" "$x"); fi
  for ((k = 0; k < ${#xs[@]} && k < ${#ys[@]}; k++)); do
    if [[ $7 == 1 ]]; then per+=("$(ratio "${xs[$k]}" "${ys[$k]}")"); else per+=("$(ratio "${ys[$k]}" "${xs[$k]}")"); fi
  done
  printf '  %-30s %s   runs: %s\n' "$1" "$x" "${xs[*]}" "$3" "$y" "${ys[*]}"
  printf '  %-30s %s   %s\n' "$5" "$r" "$6"
  printf '  %-30s %s\n' "$5, run by run" "${per[*]}"
}

fan_out() {
  say "== fan-out: one sender, receivers at 100 Mbit/s each, $SIZE_MB MiB, $RUNS runs"
  for i in $(seq 0 $((N - 1))); do
    tbf $HUB "ahmp$i"
    airhop_in "$(ns "$i")" "$(ipof "$i")" "$WORK/r$i" "R$i" --json receive --yes --dir "$WORK/r$i/in" >"$WORK/r$i.out" 2>&1 &
    wait_line "$WORK/r$i.out" '"ready"' 20
  done
  local ones=() fours=()
  for ((r = 0; r < RUNS; r++)); do
    for what in one four; do
      for i in $(seq 0 $((N - 1))); do rm -rf "$WORK/r$i/in"; done
      drop_caches
      local to=(--to R0); [[ $what == four ]] && to=(--to R0 --to R1 --to R2 --to R3)
      local t0 t1; t0=$(now)
      airhop_in $HUB $NET.1 "$WORK/snd" Sam --json send "${to[@]}" "$FILE" >"$WORK/send.out" 2>>"$WORK/log" \
        || { say "  $what run $r failed (see $WORK/log)"; continue; }
      t1=$(now)
      local n=1; [[ $what == four ]] && n=$N
      for ((i = 0; i < n; i++)); do
        cmp -s "$FILE" "$WORK/r$i/in/payload.bin" || { say "  $what run $r: R$i bytes differ"; return 1; }
      done
      local s; s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
      if [[ $what == one ]]; then ones+=("$s"); else fours+=("$s"); fi
      say "  run $r, $what receiver(s): $s s"
    done
  done
  echo
  echo "fan-out, $SIZE_MB MiB, each receiver's link 100 Mbit/s, medians of $RUNS (seconds, whole command)"
  report "one receiver" ones "four receivers at once" fours "four / one" "(target <= 1.5)" 0
}

main() {
  [[ $(id -u) == 0 ]] || { say "needs root (network namespaces)"; exit 2; }
  say "building (release)"
  cargo build -q --release --bin airhop
  rm -rf "$WORK"; mkdir -p "$WORK"
  FILE=$WORK/payload.bin
  head -c $((SIZE_MB << 20)) /dev/urandom >"$FILE"
  net_up
  [[ ${ONLY:-multi fanout} == *multi* ]] && multi_source
  [[ ${ONLY:-multi fanout} == *fanout* ]] && fan_out
  return 0
}

main "$@"
