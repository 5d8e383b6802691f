#!/usr/bin/env bash
# Side-by-side transfer benchmark on one veth link between two network
# namespaces (root needed): airhop against iperf3, a raw quinn sender (the
# library's ceiling), scp, magic-wormhole and sendme, unshaped and shaped like
# Wi-Fi (tc tbf 500 Mbit/s); 10 000 x 4 KiB files against tar | nc; airhop's
# peak RSS for a 1 GiB and a 4 GiB file; LocalSend both ways between the
# airhop binary (--localsend) and localsendd, beside airhop -> airhop; then
# the many-to-many rows of scripts/bench-many.sh (multi-source, fan-out).
#
#   scripts/bench-transfer.sh            # everything, 3 runs each, 1 GiB
#   RUNS=5 SIZE_MB=512 scripts/bench-transfer.sh
#   QUICK=1 scripts/bench-transfer.sh    # 1 run, 256 MiB, no 4 GiB RSS run
#   ONLY="airhop quinn" scripts/bench-transfer.sh   # just these tools
#   SKIP_MANY=1 scripts/bench-transfer.sh  # without the many-to-many rows
#
# Every figure is a median over RUNS runs of the whole sending command, from
# its start to its exit (discovery, hashing and handshakes included, as a
# user waits for them), printed with its ratio to the baselines. Both ends
# share this machine's cores, so CPU-bound figures are a lower bound.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-1024}
if [[ ${QUICK:-0} == 1 ]]; then RUNS=1; SIZE_MB=256; fi
WORK=${WORK:-/var/tmp/airhop-bench}
NSA=ahb-a NSB=ahb-b DEVA=ahbva DEVB=ahbvb IPA=10.201.0.1 IPB=10.201.0.2

say() { printf '%s\n' "$*" >&2; }

install() {
  local need=()
  command -v iperf3 >/dev/null || need+=(iperf3)
  command -v sshd >/dev/null || [[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
  command -v nc >/dev/null || need+=(netcat-openbsd)
  if ((${#need[@]})); then
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
  fi
  if ! command -v wormhole >/dev/null || ! command -v twist >/dev/null; then
    say "installing magic-wormhole and its local servers (pip)"
    pip install -q magic-wormhole magic-wormhole-mailbox-server magic-wormhole-transit-relay
  fi
  if ! command -v sendme >/dev/null && [[ ${SKIP_SENDME:-0} != 1 ]]; then
    say "installing sendme (cargo install; takes a few minutes once)"
    cargo install -q sendme --locked || say "sendme could not be installed: its rows will say so"
  fi
}

cleanup() {
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  ip netns pids $NSB 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids $NSA 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del $NSA 2>/dev/null || true
  ip netns del $NSB 2>/dev/null || true
}
trap cleanup EXIT

net_up() {
  cleanup
  ip netns add $NSA; ip netns add $NSB
  ip link add $DEVA netns $NSA type veth peer name $DEVB netns $NSB
  ip -n $NSA addr add $IPA/24 dev $DEVA; ip -n $NSB addr add $IPB/24 dev $DEVB
  for ns in $NSA $NSB; do ip -n $ns link set lo up; done
  ip -n $NSA link set $DEVA up; ip -n $NSB link set $DEVB up
}

shape() { # shape on|off: Wi-Fi-like 500 Mbit/s on both directions
  for x in "$NSA $DEVA" "$NSB $DEVB"; do
    set -- $x
    ip netns exec "$1" tc qdisc del dev "$2" root 2>/dev/null || true
    [[ $SHAPED == 1 ]] && ip netns exec "$1" tc qdisc add dev "$2" root tbf rate 500mbit burst 512kb latency 20ms
  done
  return 0
}

A() { ip netns exec $NSA "$@"; }
B() { ip netns exec $NSB "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
gbit() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.3f", b*8/s/1e9}'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

PEER=$ROOT/target/release/examples/bench_peer
declare -A RESULT

# run_tool NAME: runs "one_NAME" RUNS times; each prints Gbit/s.
run_tool() {
  local name=$1 vals=() v
  if [[ -n ${ONLY:-} && " $ONLY " != *" $name "* ]]; then RESULT[$name]=""; return; fi
  for ((i = 0; i < RUNS; i++)); do
    rm -rf "$WORK/in"; mkdir -p "$WORK/in"
    # Cold caches, as users meet them: every tool reads its file from disk.
    drop_caches
    if v=$("one_$name" 2>>"$WORK/log"); then vals+=("$v"); else say "  $name run $i failed (see $WORK/log)"; fi
  done
  if ((${#vals[@]})); then
    RESULT[$name]=$(printf '%s\n' "${vals[@]}" | median)
    say "  $name: ${vals[*]} Gbit/s -> median ${RESULT[$name]}"
  else
    RESULT[$name]=""
  fi
}

one_iperf3() {
  B iperf3 -s -1 -p 5201 >/dev/null 2>&1 & local rp=$!; sleep 0.5
  A iperf3 -c $IPB -p 5201 -t 5 -J | python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
  wait $rp
}

one_quinn() {
  B "$PEER" quinn-recv $IPB:7000 "$WORK/in/q.bin" >/dev/null & local rp=$!; sleep 0.3
  local t0=$(now); A "$PEER" quinn-send $IPB:7000 "$FILE" >/dev/null; local t1=$(now); wait $rp
  gbit "$BYTES" "$(echo "$t1 - $t0" | bc -l)"
}

one_airhop() {
  local port=$((47000 + RANDOM % 1000))
  B "$PEER" airhop-recv $IPB $port "$WORK/in" >"$WORK/recv.out" & local rp=$!; sleep 0.5
  local t0=$(now); A "$PEER" airhop-send $IPA $port "$FILE" >"$WORK/send.out"; local t1=$(now); wait $rp
  cmp -s "$FILE" "$WORK/in/$(basename "$FILE")" || { say "airhop: received bytes differ"; return 1; }
  # (run in a subshell: the figure goes through a file)
  echo "$(grep -o 'peak_rss_kib=[0-9]*' "$WORK/send.out" | cut -d= -f2)/$(grep -o 'peak_rss_kib=[0-9]*' "$WORK/recv.out" | cut -d= -f2)" >"$WORK/rss"
  grep -o 'first_byte_ms=[0-9.]*' "$WORK/recv.out" | cut -d= -f2 >"$WORK/first_byte" || true
  gbit "$BYTES" "$(echo "$t1 - $t0" | bc -l)"
}

# LocalSend: the airhop binary (--localsend) against localsendd (a
# LocalSend v2.2 daemon from PyPI, scripts/localsendd.sh), both ways, each
# timed from the sending command's start to its exit.
LSD_BIN=""
localsendd_up() {
  [[ -n $LSD_BIN ]] && return 0
  LSD_BIN=$("$ROOT/scripts/localsendd.sh") || { say "localsendd could not be installed"; return 1; }
  # localsendd multicasts without choosing an interface: it needs a route.
  ip -n $NSA route replace default dev $DEVA; ip -n $NSB route replace default dev $DEVB
  mkdir -p "$WORK/lsd/home" "$WORK/in"
  B env HOME="$WORK/lsd/home" XDG_STATE_HOME="$WORK/lsd/home/state" XDG_CONFIG_HOME="$WORK/lsd/home/config" \
    "$LSD_BIN/localsendd" --alias bench-lsd --unattended --download-dir "$WORK/in" \
    --socket "$WORK/lsd/ctl.sock" >/dev/null 2>"$WORK/lsd/log" &
  for _ in $(seq 100); do grep -q fingerprint= "$WORK/lsd/log" 2>/dev/null && break; sleep 0.1; done
  local fp; fp=$(grep -o 'fingerprint=[0-9A-Fa-f]*' "$WORK/lsd/log" | cut -d= -f2)
  # airhop's id for it (the first 8 bytes of the SHA-256 of the fingerprint
  # in lower case):
  # --to ID needs no wait for look-alikes.
  LSD_ID=$(printf %s "${fp,,}" | sha256sum | cut -c1-16)
}
AH=$ROOT/target/release/airhop
one_localsend_to() {
  [[ -n ${LSD_ID:-} ]] || return 1
  local t0=$(now)
  A env AIRHOP_CONFIG_DIR="$WORK/ahcfg" "$AH" -q --localsend --interface $IPA --name bench-ah \
    send --to "$LSD_ID" --wait 10 "$FILE" >/dev/null
  local t1=$(now)
  cmp -s "$FILE" "$WORK/in/$(basename "$FILE")" || { say "localsend: received bytes differ"; return 1; }
  gbit "$BYTES" "$(echo "$t1 - $t0" | bc -l)"
}
one_localsend_from() {
  [[ -n ${LSD_ID:-} ]] || return 1
  A env AIRHOP_CONFIG_DIR="$WORK/ahcfg" "$AH" --json --localsend --interface $IPA --name bench-ah \
    receive --yes --once --dir "$WORK/in" >"$WORK/ahrecv.out" 2>&1 & local rp=$!
  for _ in $(seq 100); do grep -q '"ready"' "$WORK/ahrecv.out" 2>/dev/null && break; sleep 0.1; done
  # Until localsendd has heard the receiver (it answers our announcement).
  for _ in $(seq 50); do B "$LSD_BIN/localsendctl" --socket "$WORK/lsd/ctl.sock" devices | grep -q bench-ah && break; sleep 0.2; done
  local t0=$(now)
  B "$LSD_BIN/localsendctl" --socket "$WORK/lsd/ctl.sock" send "$FILE" --to bench-ah --wait --quiet >/dev/null
  wait $rp; local t1=$(now)
  cmp -s "$FILE" "$WORK/in/$(basename "$FILE")" || { say "localsend: received bytes differ"; return 1; }
  gbit "$BYTES" "$(echo "$t1 - $t0" | bc -l)"
}

# A repeat send: the sender's hash cache (and outboard) knows the file, so
# it moves as a verified stream, checked group by group. Warmed once,
# untimed; the plain airhop row's RSS figure is kept.
one_airhop_verified() {
  export BENCH_HASH_CACHE=$WORK/hashes-verified
  [[ -f $WORK/rss ]] && cp "$WORK/rss" "$WORK/rss.plain"
  if [[ ! -s $BENCH_HASH_CACHE ]]; then
    one_airhop >/dev/null || { unset BENCH_HASH_CACHE; return 1; }
    rm -rf "$WORK/in"; mkdir -p "$WORK/in"; drop_caches
  fi
  local r; r=$(one_airhop) || { unset BENCH_HASH_CACHE; return 1; }
  unset BENCH_HASH_CACHE
  [[ -f $WORK/rss.plain ]] && mv "$WORK/rss.plain" "$WORK/rss"
  echo "$r"
}

one_scp() {
  local t0=$(now)
  A scp -q -i "$WORK/key" -P 2222 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "$FILE" root@$IPB:"$WORK/in/s.bin"
  local t1=$(now); gbit "$BYTES" "$(echo "$t1 - $t0" | bc -l)"
}

one_wormhole() {
  local code="7-airhop-bench-$RANDOM"
  (cd "$WORK/in" && B wormhole --relay-url ws://$IPB:4000/v1 --transit-helper tcp:$IPB:4001 receive --accept-file "$code" >/dev/null 2>&1) & local rp=$!
  local t0=$(now)
  A wormhole --relay-url ws://$IPB:4000/v1 --transit-helper tcp:$IPB:4001 send --code "$code" "$FILE" >/dev/null 2>&1
  wait $rp; local t1=$(now); gbit "$BYTES" "$(echo "$t1 - $t0" | bc -l)"
}

one_sendme() {
  command -v sendme >/dev/null || return 1
  # The sender serves until killed; its output goes to a file (not to this
  # function's stdout, which the caller reads to its end).
  (cd "$WORK/in" && exec ip netns exec $NSA sendme send --relay disabled "$FILE") >"$WORK/sendme.out" 2>&1 </dev/null &
  local sp=$! ticket=""
  for _ in $(seq 300); do ticket=$(grep -o 'blob[a-z0-9]*' "$WORK/sendme.out" | head -1 || true); [[ -n $ticket ]] && break; sleep 0.1; done
  if [[ -z $ticket ]]; then kill $sp 2>/dev/null; return 1; fi
  local t0=$(now)
  (cd "$WORK/in" && B timeout 300 sendme receive --relay disabled "$ticket" >/dev/null 2>&1)
  local t1=$(now); kill $sp 2>/dev/null || true; wait $sp 2>/dev/null || true
  # Timed from the ticket, so sendme's own hashing is not counted (airhop's
  # is): a ratio against sendme is conservative.
  gbit "$BYTES" "$(echo "$t1 - $t0" | bc -l)"
}

one_tarnc() {
  B sh -c "nc -l -p 9000 | tar -x -C '$WORK/in'" & local rp=$!; sleep 0.3
  local t0=$(now); A sh -c "tar -c -C '$WORK/src' many | nc -N $IPB 9000"; wait $rp; local t1=$(now)
  gbit "$MANY_BYTES" "$(echo "$t1 - $t0" | bc -l)"
}

one_airhop_many() {
  local port=$((48000 + RANDOM % 1000))
  B "$PEER" airhop-recv $IPB $port "$WORK/in" >/dev/null & local rp=$!; sleep 0.5
  local t0=$(now); A "$PEER" airhop-send $IPA $port "$WORK/src/many" >/dev/null; local t1=$(now); wait $rp
  [[ $(find "$WORK/in/many" -type f | wc -l) == 10000 ]] || { say "airhop: files missing"; return 1; }
  gbit "$MANY_BYTES" "$(echo "$t1 - $t0" | bc -l)"
}

ratio() { # ratio A B -> A/B with 2 decimals, or "n/a"
  [[ -n ${RESULT[$1]:-} && -n ${RESULT[$2]:-} ]] || { echo "n/a"; return; }
  awk -v a="${RESULT[$1]}" -v b="${RESULT[$2]}" 'BEGIN {printf "%.2f", a/b}'
}

main() {
  [[ $(id -u) == 0 ]] || { say "needs root (network namespaces)"; exit 2; }
  install
  say "building (release)"
  cargo build -q --release --example bench_peer --bin airhop
  rm -rf "$WORK"; mkdir -p "$WORK/src"
  FILE=$WORK/src/payload.bin
  head -c $((SIZE_MB << 20)) /dev/urandom >"$FILE"
  BYTES=$(stat -c %s "$FILE")
  mkdir -p "$WORK/src/many"
  python3 - "$WORK/src/many" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(10000):
    d = os.path.join(root, "%02d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%d.dat" % i), "wb") as f:
        f.write(os.urandom(4096))
PY
  MANY_BYTES=$((10000 * 4096))
  net_up
  ssh-keygen -q -t ed25519 -N '' -f "$WORK/key"
  mkdir -p /root/.ssh; cat "$WORK/key.pub" >>/root/.ssh/authorized_keys
  ssh-keygen -q -t ed25519 -N '' -f "$WORK/hostkey"
  mkdir -p /run/sshd
  B /usr/sbin/sshd -p 2222 -h "$WORK/hostkey" -o PidFile="$WORK/sshd.pid"
  # The mailbox server writes its database (relay.sqlite) into its working
  # folder: keep it in $WORK, never in the checkout the script was run from.
  (cd "$WORK" && B twist wormhole-mailbox --port tcp:4000 --channel-db "$WORK/relay.sqlite" >/dev/null 2>&1) &
  (cd "$WORK" && B twist transitrelay --port tcp:4001 >/dev/null 2>&1) &
  sleep 2
  # (Here, not in a run: each run is a subshell.)
  if [[ -z ${ONLY:-} || " $ONLY " == *" localsend_"* ]]; then localsendd_up || true; fi

  for SHAPED in 0 1; do
    shape
    say "== link: $([[ $SHAPED == 1 ]] && echo 'tbf 500 Mbit/s (Wi-Fi-like)' || echo 'veth, unshaped'); $SIZE_MB MiB file, $RUNS runs"
    for t in iperf3 quinn airhop airhop_verified scp wormhole sendme localsend_to localsend_from; do
      [[ $SHAPED == 1 && $t =~ ^(airhop_verified|scp|wormhole|sendme|localsend_to|localsend_from)$ ]] && continue
      run_tool $t
      eval "R${SHAPED}_$t=\${RESULT[$t]}"
    done
    if [[ $SHAPED == 0 ]]; then
      echo
      echo "unshaped veth, ${SIZE_MB} MiB disk to disk, medians of $RUNS (Gbit/s)"
      for t in iperf3 quinn airhop scp wormhole sendme; do printf '  %-9s %s\n' $t "${RESULT[$t]:-n/a}"; done
      printf '  %-9s %s\n' "airhop, repeat send (verified stream)" "${RESULT[airhop_verified]:-n/a}"
      echo "  airhop / raw quinn      $(ratio airhop quinn)   (target >= 0.97)"
      echo "  airhop repeat / raw quinn $(ratio airhop_verified quinn)"
      echo "  airhop / sendme         $(ratio airhop sendme)   (target >= 1.5)"
      echo "  airhop / magic-wormhole $(ratio airhop wormhole)   (target >= 1.5)"
      echo "  airhop / scp            $(ratio airhop scp)   (target >= 1.0)"
      echo "  airhop peak RSS (KiB, sender/receiver), ${SIZE_MB} MiB: $(cat "$WORK/rss" 2>/dev/null || echo n/a)"
      printf '  %-9s %s\n' "airhop -> localsendd (LocalSend, HTTPS)" "${RESULT[localsend_to]:-n/a}"
      printf '  %-9s %s\n' "localsendd -> airhop (LocalSend, HTTPS)" "${RESULT[localsend_from]:-n/a}"
      echo "  airhop -> localsendd / airhop -> airhop   $(ratio localsend_to airhop)"
      echo "  localsendd -> airhop / airhop -> airhop   $(ratio localsend_from airhop)"
    else
      echo
      echo "tbf 500 Mbit/s, ${SIZE_MB} MiB, medians of $RUNS (Gbit/s)"
      for t in iperf3 quinn airhop; do printf '  %-9s %s\n' $t "${RESULT[$t]:-n/a}"; done
      echo "  airhop / iperf3         $(ratio airhop iperf3)   (target >= 0.95)"
      echo "  airhop / raw quinn      $(ratio airhop quinn)   (target >= 0.99)"
    fi
  done
  SHAPED=0; shape
  say "== 10 000 x 4 KiB files"
  run_tool tarnc; run_tool airhop_many
  echo
  echo "10 000 x 4 KiB files, medians of $RUNS (Gbit/s)"
  printf '  %-9s %s\n' "tar | nc" "${RESULT[tarnc]:-n/a}" airhop "${RESULT[airhop_many]:-n/a}"
  echo "  airhop / tar|nc         $(ratio airhop_many tarnc)   (target >= 0.8)"
  if [[ ${QUICK:-0} != 1 && ${SKIP_4G:-0} != 1 ]]; then
    say "== a 4 GiB file: first byte after the accept, sent for the first time and again; peak RSS"
    head -c $((4096 << 20)) /dev/urandom >"$WORK/src/big4.bin"
    FILE=$WORK/src/big4.bin BYTES=$((4096 << 20))
    local firsts=() repeats=() rss=()
    for ((i = 0; i < RUNS; i++)); do
      # A fresh hash cache: nothing known, the sender hashes while sending.
      export BENCH_HASH_CACHE=$WORK/hashes-$i
      rm -f "$BENCH_HASH_CACHE"
      for pass in first repeat; do
        rm -rf "$WORK/in"; mkdir -p "$WORK/in"; drop_caches
        one_airhop >/dev/null || { say "  4 GiB $pass run $i failed"; continue; }
        if [[ $pass == first ]]; then firsts+=("$(cat "$WORK/first_byte")"); rss+=("$(cat "$WORK/rss")")
        else repeats+=("$(cat "$WORK/first_byte")"); fi
      done
      unset BENCH_HASH_CACHE
    done
    say "  first byte, first send: ${firsts[*]} ms; repeat send: ${repeats[*]} ms"
    echo
    echo "4 GiB file, medians of $RUNS"
    echo "  first byte after the accept, first send (nothing cached): $(printf '%s\n' "${firsts[@]}" | median) ms   (target <= 150)"
    echo "  first byte after the accept, repeat send (root cached):   $(printf '%s\n' "${repeats[@]}" | median) ms   (target <= 50)"
    echo "  airhop peak RSS (KiB, sender/receiver), 4 GiB: ${rss[*]}"
    rm -f "$WORK/src/big4.bin" "$WORK/in/big4.bin"
  fi
  sed -i "\|$(cut -d' ' -f2 "$WORK/key.pub")|d" /root/.ssh/authorized_keys
}

main "$@"
# The many-to-many rows (multi-source pull, fan-out send) need a bridged
# LAN of five hosts: their own script, run here too unless ONLY or
# SKIP_MANY=1 narrows the run. Same RUNS; a quarter of SIZE_MB.
if [[ -z ${ONLY:-} && ${SKIP_MANY:-0} != 1 ]]; then
  cleanup
  say "== many to many (scripts/bench-many.sh)"
  RUNS=$RUNS SIZE_MB=$((SIZE_MB / 4)) scripts/bench-many.sh
fi
