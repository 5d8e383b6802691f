#!/bin/bash
# PID 1 inside the air lab VM (see run.sh). The host's root is mounted
# read-only over 9p, with tmpfs on /run, /tmp, /var/*; the lab folder
# (airlab.dir=) is read-write, with the airhop binary in bin/ and results
# written to out/. Scenarios (airlab.mode=, comma-separated):
#   le   btvirt -L -l4: LE-only controllers, legacy advertising
#   ext  btvirt -l4: Bluetooth 5.2 controllers, extended advertising
#   wifi btvirt -l3 as in ext, plus two mac80211_hwsim radios, one in each
#        namespace, and the veth pair removed: the peers share no network
#        and the transfer goes over a hotspot (hostapd + wpa_supplicant
#        backend): end to end, a LAN probe that fails, a wrong passphrase,
#        a hotspot that never comes up, a join that times out.
#   nm   the hotspot transfer over the NetworkManager backend: in each
#        namespace a NetworkManager 1.42 with its own D-Bus, udevd and
#        wpa_supplicant (private /run/NetworkManager, /run/udev).
# In each: hci0 is the receiver (network namespace rx), hci1 the sender
# (namespace tx, joined to rx by a veth pair: QUIC crosses it), hci2 a
# third device that advertises garbage under the airhop UUID and runs
# bluetoothctl against the receiver, hci3 (le and ext) a fourth that sends
# to the receiver between back-to-back sends.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 NO_COLOR=1 AIRHOP_BLE_DEBUG=1
LAB=/tmp/airhop-airlab
MODE=le,ext
for a in $(cat /proc/cmdline); do
  case "$a" in airlab.mode=*) MODE=${a#*=};; airlab.dir=*) LAB=${a#*=};; esac
done
AIRHOP=$LAB/bin/airhop
SUMMARY=$LAB/out/summary.txt
: > "$SUMMARY"
UUID_LE=077c8220f71f929f314791646e785fbf   # bf5f786e-6491-4731-9f92-1ff720827c07
CARD_UUID=bf5f786f-6491-4731-9f92-1ff720827c07

up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "AIRLAB[$(up)] $*"; }
result() { echo "$*" >> "$SUMMARY"; say "$*"; }
ok() { result "OK   $V $*"; }
bad() { result "FAIL $V $*"; }
# wait_for SECONDS CONDITION: deadlines, not sleeps (every fork is slow here).
wait_for() {
  local end; end=$(awk -v t="$1" '{printf "%d", $1 + t}' /proc/uptime); shift
  while :; do
    eval "$@" && return 0
    [ "$(cut -d. -f1 /proc/uptime)" -ge "$end" ] && return 1
    sleep 0.2
  done
}
# Prefixes each line with the time it was read (no fork per line).
stamp() { while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }
# at FILE EVENT: when a --json event first appeared in a stamped log.
at() { awk -v e="\"event\":\"$2\"" 'index($0, e) {print $1; exit}' "$1"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "" || b == "") print "?"; else printf "%.2f", b - a }'; }
addr() { timeout 10 btmgmt --index "$1" info 2>/dev/null | awk '$1=="addr"{print $2; exit}'; }
kill_ns() { for ns in "$@"; do ip netns pids "$ns" | xargs -r kill 2>/dev/null; done; sleep 0.5;
            for ns in "$@"; do ip netns pids "$ns" | xargs -r kill -9 2>/dev/null; done; }

say "guest up, modes $MODE, kernel $(uname -r)"
hostname airlab
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd   # bash's >(...) needs it
ip link set lo up
# Two hosts: rx (10.77.0.1) and tx (10.77.0.2), one veth link between.
ip netns add rx; ip netns add tx
ip link add vrx type veth peer name vtx
ip link set vrx netns rx; ip link set vtx netns tx
ip -n rx addr add 10.77.0.1/24 dev vrx; ip -n rx link set vrx up; ip -n rx link set lo up
ip -n tx addr add 10.77.0.2/24 dev vtx; ip -n tx link set vtx up; ip -n tx link set lo up
mkdir -p /run/dbus
dbus-daemon --system --fork --print-pid > /run/dbus/daemon.pid
wait_for 10 '[ -S /run/dbus/system_bus_socket ]' || result "FAIL - dbus-daemon did not start"
modprobe -a algif_hash algif_skcipher cmac ecb ecdh_generic bluetooth hci_vhci \
  || result "FAIL - the Bluetooth modules did not load"
W=/tmp/work; mkdir -p $W
head -c 8M /dev/urandom > $W/payload.bin

# The receiver: starts in namespace rx on hci0, logs to $O/rx-NAME.jsonl.
# Extra arguments go to `receive`. Its standard input is the fifo $W/rx.in.
start_receiver() {
  local name=$1; shift
  rm -f $W/rx.in; mkfifo $W/rx.in
  sleep 900 > $W/rx.in &
  RX_START=$EPOCHREALTIME
  (${RX_NS-ip netns exec rx} env AIRHOP_BLE_ADVERTISING=$ADV $RX_ENV $AIRHOP --config-dir $W/rx-conf \
     ${RX_TRANSPORT:---transport ble --adapter hci0} --name Bob --json receive --dir $W/inbox-$name "$@" \
     < $W/rx.in 2> "$O/rx-$name.err" | stamp > "$O/rx-$name.jsonl") &
  wait_for 60 "grep -q '\"event\":\"ready\"' $O/rx-$name.jsonl" \
    || { bad "$name: the receiver did not get ready: $(tail -2 "$O/rx-$name.err")"; return 1; }
}
# send NAME ARGS...: the sender in namespace tx on hci1; sets SEND_RC.
send() {
  local name=$1; shift
  TX_START=$EPOCHREALTIME
  echo "$TX_START" > "$O/tx-$name.start"
  ${TX_NS-ip netns exec tx} env $TX_ENV $AIRHOP --config-dir $W/tx-conf ${TX_TRANSPORT:---transport ble --adapter hci1} --name Ada --json \
    send --to Bob "$@" 2> "$O/tx-$name.err" | stamp > "$O/tx-$name.jsonl"
  SEND_RC=${PIPESTATUS[0]}
}

# bt_up BTVIRT_ARGS: btmon, btvirt with the controllers -lN asks for, bluetoothd.
bt_up() {
  local btargs=$1 n; n=${btargs##*-l}; n=${n%% *}
  rm -rf /var/lib/bluetooth/* $W/inbox-* $W/*-conf
  btmon -w "$O/hci.btsnoop" > /dev/null 2>&1 &
  sleep 0.5
  btvirt $btargs > "$O/btvirt.log" 2>&1 &
  # Each controller answers its HCI Reset only when the emulation gets to
  # it: a busy host makes that seconds. btmgmt can block on one that is
  # still initialising, hence its own timeout.
  wait_for 60 '[ -e /sys/class/bluetooth/hci$((n - 1)) ] && [ "$(timeout 5 btmgmt info 2>/dev/null | grep -c "^hci[0-9]")" -ge $n ]' \
    && ok "btvirt: $n controllers ($(ls /sys/class/bluetooth | tr '\n' ' '))" \
    || { bad "btvirt: controllers did not come up ($(ls /sys/class/bluetooth | tr '\n' ' ') $(cat "$O/btvirt.log"))"; bt_down; return 1; }
  # PRIVACY=device: BlueZ's privacy, so each controller advertises under
  # resolvable private addresses (its main.conf; the default has none).
  local conf=/etc/bluetooth/main.conf
  if [ -n "${PRIVACY:-}" ]; then
    conf=$W/main.conf
    printf '[General]\nPrivacy = %s\n[Policy]\nAutoEnable=true\n' "$PRIVACY" > $conf
  fi
  /usr/libexec/bluetooth/bluetoothd -n -E -f $conf > "$O/bluetoothd.log" 2>&1 &
  wait_for 30 'dbus-send --system --print-reply --dest=org.bluez /org/bluez/hci2 org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Powered 2>/dev/null | grep -q true' \
    && ok "bluetoothd: hci0-2 on D-Bus and powered" \
    || { bad "bluetoothd did not come up: $(tail -3 "$O/bluetoothd.log")"; bt_down; return 1; }
}

bt_variant() {
  V=$1; local btargs=$2; ADV=$3
  O=$LAB/out/$V; mkdir -p "$O"
  say "=== $V: btvirt $btargs, advertising $ADV ==="
  bt_up "$btargs" || return 1
  local a0 a2; a0=$(addr 0); a2=$(addr 2)

  # A third device advertising garbage under the airhop UUID: a payload of
  # an unknown version, a truncated one, and one that decodes but belongs
  # to no airhop device (it has no GATT service).
  if btmgmt --index 2 add-adv -c -g -d 1b21${UUID_LE}f5deadbeefcafe0102ff 1 > "$O/garbage.log" 2>&1 &&
     btmgmt --index 2 add-adv -c -g -d 0421${UUID_LE:0:6} 2 >> "$O/garbage.log" 2>&1 &&
     btmgmt --index 2 add-adv -c -g -d 1b21${UUID_LE}1a2b3c4d5e6f708192a3 3 >> "$O/garbage.log" 2>&1; then
    ok "garbage advertiser on hci2 ($a2): 3 instances"
  else
    bad "garbage advertiser: $(tr '\n' ' ' < "$O/garbage.log")"
  fi

  # 1. Accept: discovery over BLE, sealed exchange over GATT, file over QUIC.
  start_receiver accept --yes --once || { bt_down; return 1; }
  if [ "$V" = le ]; then bluetoothctl_read "$a0" "$a2" 2; fi
  send accept --wait 90 $W/payload.bin
  local rx_done; wait_for 30 "! ip netns pids rx | grep -q ." && rx_done=1
  if [ "$SEND_RC" = 0 ] && cmp -s $W/payload.bin $W/inbox-accept/payload.bin; then
    ok "accept: 8 MiB over BLE rendezvous + QUIC, bytes identical (receiver exited: ${rx_done:-no})"
  else
    bad "accept: send exit $SEND_RC: $(tail -2 "$O/tx-accept.err" | tr '\n' ' ')"
  fi
  local f=$O/tx-accept.jsonl
  local found inv conn done; found=$(at $f peer_found); inv=$(at $f invite_sent); conn=$(at $f connected); done=$(at $f done)
  result "TIME $V receiver start -> ready: $(secs $RX_START "$(at "$O/rx-accept.jsonl" ready)") s"
  result "TIME $V sender start -> receiver seen over BLE: $(secs $TX_START "$found") s (receiver started $(secs $RX_START $TX_START) s before the sender)"
  awk -v f="$(secs $TX_START "$found")" 'BEGIN { exit !(f == "?" || f > 10) }' \
    && bad "accept: the sender saw the receiver only after $(secs $TX_START "$found") s (over 10 s)"
  result "TIME $V invite sent -> QUIC connected: $(secs "$inv" "$conn") s (card read and sealed reply over GATT)"
  result "TIME $V QUIC connected -> 8 MiB done: $(secs "$conn" "$done") s"
  kill_ns rx
  back_to_back

  [ "$V" = le ] || { bt_down; return 0; }

  # 2. Decline: the receiver answers n; the sender hears "declined".
  start_receiver decline && {
    (wait_for 90 "grep -q '\"event\":\"invited\"' $O/rx-decline.jsonl" && echo n > $W/rx.in) &
    send decline --wait 90 $W/payload.bin
    if [ "$SEND_RC" = 4 ] && grep -q 'did not accept: declined' "$O/tx-decline.err"; then
      ok "decline: sender exit 4, \"$(tail -1 "$O/tx-decline.err")\""
    else
      bad "decline: sender exit $SEND_RC: $(tail -2 "$O/tx-decline.err" | tr '\n' ' ')"
    fi
    kill_ns rx
  }

  # 3. Timeout: nobody answers; the sender gives up with reason timed_out.
  start_receiver timeout && {
    send timeout --wait 15 $W/payload.bin
    if [ "$SEND_RC" != 0 ] && grep -q '"reason":"timed_out"' "$O/tx-timeout.jsonl" \
       && grep -q '"event":"invited"' "$O/rx-timeout.jsonl"; then
      ok "timeout: sender exit $SEND_RC with reason timed_out, \"$(tail -1 "$O/tx-timeout.err")\""
    else
      bad "timeout: sender exit $SEND_RC: $(tail -2 "$O/tx-timeout.err" | tr '\n' ' ')"
    fi
    kill_ns rx
  }

  # 4. Trusted: fresh processes on both sides, as after a restart; the
  # receiver takes trusted devices only, recognised by the key kept in its
  # trusted.toml, and declines a stranger (Carol, on hci3).
  local key bkey crc
  key=$($AIRHOP --config-dir $W/tx-conf id | awk '$1 == "key:" {print $2}')
  bkey=$($AIRHOP --config-dir $W/rx-conf id | awk '$1 == "key:" {print $2}')
  # Ada trusts Bob too: the trusted session teaches her Bob's resolving key,
  # which step 5 needs (it was not kept from the sessions before, when Bob
  # was a stranger to her).
  if $AIRHOP --config-dir $W/rx-conf trust add Ada --key "$key" > "$O/trust.log" 2>&1 &&
     $AIRHOP --config-dir $W/tx-conf trust add Bob --key "$bkey" >> "$O/trust.log" 2>&1; then
    start_receiver trusted --from-trusted && {
      ip netns exec tx $AIRHOP --config-dir $W/c-conf --transport ble --adapter hci3 --name Carol --json \
        send --to Bob --wait 60 $W/small.bin > "$O/carol-trusted.jsonl" 2> "$O/carol-trusted.err"
      crc=$?
      send trusted --wait 90 $W/payload.bin
      if [ "$crc" = 4 ] && [ "$SEND_RC" = 0 ] && cmp -s $W/payload.bin $W/inbox-trusted/payload.bin \
         && grep '"event":"invited"' "$O/rx-trusted.jsonl" | grep '"name":"Ada"' | grep -q '"trusted":true'; then
        ok "trusted: after a restart, --from-trusted took Ada by its kept key and declined a stranger (exit $crc)"
      else
        bad "trusted: stranger exit $crc, Ada exit $SEND_RC: $(tail -1 "$O/carol-trusted.err") / $(tail -1 "$O/tx-trusted.err")"
      fi
      kill_ns rx
    }

    # 5. Remembered: Ada kept Bob's resolving key from that session
    # (trusted.toml, 0600); both restart, and the next send reports Bob
    # from his first advert, before his card is read, then reads it and
    # sends (the invitation waits for the card).
    local toml=$W/tx-conf/trusted.toml first
    if grep -q '^resolving_key = "[0-9a-f]\{32\}"' "$toml" && [ "$(stat -c %a "$toml")" = 600 ] \
       && ! grep -q '^resolving_key' $W/c-conf/trusted.toml 2>/dev/null; then
      start_receiver remembered --yes && {
        send remembered --wait 60 $W/small.bin
        first=$(grep -m1 '"event":"peer_found"' "$O/tx-remembered.jsonl")
        result "TIME $V remembered: sender start -> receiver seen: $(secs $TX_START "$(at "$O/tx-remembered.jsonl" peer_found)") s (from its advert alone)"
        if [ "$SEND_RC" = 0 ] && cmp -s $W/small.bin $W/inbox-remembered/small.bin \
           && echo "$first" | grep '"name":"Bob"' | grep -q '"remembered":true'; then
          ok "remembered: after a restart of both, Ada knew Bob from his first advert by the resolving key she kept, then sent"
        else
          bad "remembered: send exit $SEND_RC, first peer_found: $first $(tail -1 "$O/tx-remembered.err")"
        fi
        kill_ns rx
      }
    else
      bad "remembered: no resolving key kept for Bob in $toml ($(stat -c %a "$toml" 2>&1)): $(tr '\n' ' ' < "$toml")"
    fi
  else
    bad "trusted: trust add: $(tail -1 "$O/trust.log")"
  fi
  bluetooth_link
  bt_down
}

# idle_hci0: no link on the receiver's controller (one central at a time:
# see back_to_back).
idle_hci0() { wait_for 10 '[ -z "$(timeout 5 btmgmt --index 0 con 2>/dev/null | grep -E "^([0-9A-F]{2}:){5}")" ]'; }

# 6. Bluetooth as the last-resort link (issue 16): no Wi-Fi and no veth.
# Both processes run in the initial network namespace, because Linux makes
# Bluetooth sockets nowhere else; it has loopback alone, so neither card
# says it is on a LAN, neither can host a hotspot, and the session goes
# over an L2CAP channel from hci1 to hci0: a text and 1 MiB arrive
# verified, and an 8 MiB offer is refused with the reason, on both sides.
bluetooth_link() {
  local RX_NS="" TX_NS="" rx=$O/rx-bt.jsonl
  if ip -o addr show | grep -v ' lo ' | grep -q ' inet'; then
    bad "bluetooth link: the initial namespace has an address besides loopback: $(ip -o addr show | tr '\n' ' ')"
    return 1
  fi
  head -c 1M /dev/urandom > $W/one.bin
  idle_hci0
  start_receiver bt --yes || return 1
  if grep '"event":"bluetooth"' "$rx" | grep -q '"channel"'; then
    ok "bluetooth link: the receiver listens on L2CAP $(grep -m1 '"event":"bluetooth"' "$rx" | sed 's/.*"channel":"\([^"]*\)".*/\1/')"
  else
    bad "bluetooth link: the receiver has no L2CAP channel: $(grep -m1 '"event":"bluetooth"' "$rx") $(tail -2 "$O/rx-bt.err" | tr '\n' ' ')"
  fi
  send bt-text --wait 60 --text "hello over bluetooth"
  if [ "$SEND_RC" = 0 ] && grep '"event":"text"' "$rx" | grep -q 'hello over bluetooth' \
     && grep '"event":"bluetooth"' "$O/tx-bt-text.jsonl" | grep -q '"peer"'; then
    ok "bluetooth link: a text arrived over L2CAP"
  else
    bad "bluetooth link: text: send exit $SEND_RC: $(tail -2 "$O/tx-bt-text.err" | tr '\n' ' ')"
  fi
  idle_hci0
  send bt-file --wait 60 $W/one.bin
  local f=$O/tx-bt-file.jsonl conn done rate
  conn=$(at $f connected); done=$(at $f done)
  rate=$(grep -m1 '"event":"done"' "$f" | sed 's/.*"bytes":\([0-9]*\).*"seconds":\([0-9.]*\).*/\1 \2/' \
    | awk '{ if ($2 > 0) printf "%.1f kB/s", $1 / $2 / 1000; else print "?" }')
  if [ "$SEND_RC" = 0 ] && cmp -s $W/one.bin $W/inbox-bt/one.bin \
     && grep '"event":"bluetooth"' "$f" | grep -q '"peer"'; then
    ok "bluetooth link: 1 MiB over L2CAP, verified, bytes identical ($rate)"
  else
    bad "bluetooth link: 1 MiB: send exit $SEND_RC: $(tail -2 "$O/tx-bt-file.err" | tr '\n' ' ')"
  fi
  result "TIME $V bluetooth link: QUIC connected -> 1 MiB done: $(secs "$conn" "$done") s ($rate under TCG)"
  idle_hci0
  send bt-big --wait 60 $W/payload.bin
  if [ "$SEND_RC" = 8 ] && grep -q 'too large for Bluetooth' "$O/tx-bt-big.err" \
     && grep '"event":"declined"' "$rx" | grep -q '"by":"link"' && [ ! -e $W/inbox-bt/payload.bin ]; then
    ok "bluetooth link: 8 MiB refused on both sides, \"$(tail -1 "$O/tx-bt-big.err")\""
  else
    bad "bluetooth link: 8 MiB: send exit $SEND_RC: $(tail -2 "$O/tx-bt-big.err" | tr '\n' ' ')"
  fi
  pkill -TERM -f "inbox-bt" 2>/dev/null
  wait_for 10 '! pgrep -f inbox-bt > /dev/null'
}

# Back-to-back sends to one receiver that stays up: each send is a fresh
# process that must find the receiver again right after the last one's
# connection (issue 16: it took 10 to 90 s).
back_to_back() {
  local i f seen worst=0 all=""
  head -c 64K /dev/urandom > $W/small.bin
  start_receiver b2b --yes || return 1
  for i in 1 2 3 4; do
    if [ $i = 3 ]; then
      # A third device (hci3, "Carol") sends to the receiver first: the
      # next send comes right after someone else's connection. (Not hci2:
      # bluetoothd 5.66 crashed when the garbage advertiser's controller
      # also connected to the receiver as a central.)
      wait_for 10 '[ -z "$(timeout 5 btmgmt --index 0 con 2>/dev/null | grep -E "^([0-9A-F]{2}:){5}")" ]'
      ip netns exec tx $AIRHOP --config-dir $W/c-conf --transport ble --adapter hci3 --name Carol --json \
        send --to Bob --wait 60 $W/small.bin > "$O/carol.jsonl" 2> "$O/carol.err" \
        && cmp -s $W/small.bin $W/inbox-b2b/small.bin \
        || bad "back-to-back: the third device's send failed: $(tail -2 "$O/carol.err" | tr '\n' ' ')"
      rm -f $W/inbox-b2b/small.bin
    fi
    # One central at a time on the receiver: the emulated controllers give
    # every link the same handle, and two at once crash the kernel
    # (firmware-notes, quirk 13). BlueZ drops a link a moment after the
    # process that asked for it hung up.
    wait_for 10 '[ -z "$(timeout 5 btmgmt --index 0 con 2>/dev/null | grep -E "^([0-9A-F]{2}:){5}")" ]'
    send "b2b-$i" --wait 60 $W/small.bin
    f=$O/tx-b2b-$i.jsonl
    seen=$(secs $TX_START "$(at $f peer_found)")
    all="$all $seen"
    [ "$SEND_RC" = 0 ] && cmp -s $W/small.bin $W/inbox-b2b/small.bin \
      || { bad "back-to-back send $i: exit $SEND_RC: $(tail -2 "$O/tx-b2b-$i.err" | tr '\n' ' ')"; break; }
    rm -f $W/inbox-b2b/small.bin
  done
  result "TIME $V back-to-back sends (a third device's send before the 3rd), sender start -> receiver seen:$all s"
  # Issue 16: each within 3 s, under TCG too (real radios are faster).
  # With the card read through bluer, labs and CI measured 0.92-2.51 s;
  # the sender's debug lines (tx-*.err, AIRHOP_BLE_DEBUG) carry the wall
  # clock and tx-*.start the send's start, to see where a slow one went.
  local slow=0
  for f in $all; do
    awk -v f="$f" 'BEGIN { exit !(f == "?" || f > 3) }' \
      && { slow=1; bad "back-to-back: a send saw the receiver only after $f s (over 3 s)"; }
  done
  [ $slow = 0 ] && [ "$(echo $all | wc -w)" = 4 ] \
    && ok "back-to-back: 4 sends and a fourth device's, each saw the receiver within 3 s:$all s"

  # Lost: `peers --watch` sees the receiver, the receiver goes away, and
  # peers says so within 10 s.
  wait_for 10 '[ -z "$(timeout 5 btmgmt --index 0 con 2>/dev/null | grep -E "^([0-9A-F]{2}:){5}")" ]'
  (ip netns exec tx $AIRHOP --config-dir $W/p-conf --transport ble --adapter hci1 --name Watcher --json \
     peers --watch 2> "$O/peers.err" | stamp > "$O/peers.jsonl") &
  if wait_for 30 "grep -q '\"name\":\"Bob\"' $O/peers.jsonl"; then
    local gone=$EPOCHREALTIME lost
    kill_ns rx
    wait_for 20 "grep -q '\"event\":\"peer_lost\"' $O/peers.jsonl"
    lost=$(secs "$gone" "$(at $O/peers.jsonl peer_lost)")
    result "TIME $V receiver gone -> peer_lost in peers: $lost s"
    awk -v f="$lost" 'BEGIN { exit !(f == "?" || f > 10) }' \
      && bad "lost: peers did not show the receiver lost within 10 s ($lost s)" \
      || ok "lost: peers showed the receiver lost $lost s after it went"
  else
    bad "lost: peers did not see the receiver in 30 s: $(tail -2 "$O/peers.err" | tr '\n' ' ')"
  fi
  kill_ns tx rx
}

bt_down() {
  kill_ns rx tx
  # A crash of the emulator (BlueZ's btvirt) would otherwise show only as
  # "no Bluetooth adapter found" in the steps after it.
  pgrep -x btvirt > /dev/null \
    || bad "btvirt (the emulated controllers) died during this mode: $(dmesg | grep -E 'btvirt.*(fault|segfault)' | tail -1)"
  # No airhop process of this mode panicked.
  local panics; panics=$(grep -l 'panicked' "$O"/*.err 2>/dev/null)
  [ -z "$panics" ] \
    || bad "a process panicked: $(for f in $panics; do echo "$(basename "$f"): $(grep -m1 -A1 panicked "$f" | tr '\n' ' ')"; done)"
  pkill bluetoothd; sleep 1; pkill btvirt
  wait_for 10 '[ ! -e /sys/class/bluetooth/hci0 ]'
  # The capture is complete only once btmon has drained the monitor socket.
  sleep 1; pkill btmon; wait_for 10 '! pgrep -x btmon > /dev/null'; sync
}

# bluetoothctl, a third-party client on hci2, reads the receiver's card.
bluetoothctl_read() {
  local target=$1 self=$2 idx=$3 hex="" try
  # Asked of bluetoothd over D-Bus on our controller's own device object:
  # `bluetoothctl info` and `devices` ask the default controller (the
  # receiver's own, here), which never lists the receiver.
  local dev="/org/bluez/hci$idx/dev_$(echo "$target" | tr : _)"
  prop() {
    dbus-send --system --print-reply --dest=org.bluez "$dev" \
      org.freedesktop.DBus.Properties.Get string:org.bluez.Device1 "string:$1" 2>/dev/null
  }
  resolved() { prop ServicesResolved | grep -q "boolean true"; }
  # The emulated controllers report an advert only when a scan starts (and
  # the kernel often drops that one), and bluetoothd can drop the device
  # object again at once ("[NEW] Device ... Bob", then "[DEL]"; a connect
  # then says "not available"). So: scan, and from the first second our
  # controller's device object exists, connect, asking again every 8 s
  # until the services are resolved (a connection took more than 8 s once
  # in CI). Each try first removes the device object an earlier step left:
  # otherwise its temporary timeout (30 s) can run out between finding it
  # and connecting. (Polling `bluetoothctl devices` instead made each try
  # wait out 40 s: 88 s for this step in lab44.) Each try's log is kept.
  for try in 1 2 3; do
    { echo "select $self"; echo "remove $target"; sleep 1; echo "scan le"
      local asked=-8
      for i in $(seq 60); do
        sleep 1; resolved && break
        if [ $((i - asked)) -ge 8 ] && prop Address | grep -q string; then
          echo "connect $target"; asked=$i
        fi
      done
      echo "menu gatt"; echo "select-attribute $CARD_UUID"; sleep 1; echo "read"; sleep 4
      echo "back"; echo "scan off"; echo "disconnect $target"; sleep 2; echo "quit"; } \
      | timeout 120 bluetoothctl > "$O/bluetoothctl.log" 2>&1
    # A try cut short by its timeout leaves the link up, and a receiver
    # with a central connected does not advertise: every later step would
    # fail to find it. Hang up whatever is left.
    timeout 10 btmgmt --index "$idx" disconnect -t 1 "$target" > /dev/null 2>&1
    cp "$O/bluetoothctl.log" "$O/bluetoothctl-$try.log"
    # The value comes as a hexdump after "Value:", each line behind a prompt,
    # and twice over (the read's answer, then the property change): keep one.
    hex=$(sed 's/\x1b\[[0-9;]*[A-Za-z]//g; s/\r//g; s/^\[[^]]*\]# //' "$O/bluetoothctl.log" \
          | awk '/Value:/ && !d {f=1; d=1; next}
                 f && /^[[:space:]]*([0-9a-f][0-9a-f] )/ { if ($0 == first) exit; if (!first) first = $0; print; next }
                 f {exit}' \
          | sed -E -n 's/^[[:space:]]*((([0-9a-f]{2}) ){1,16}).*/\1/p' | tr -d ' \n')
    [ -n "$hex" ] && break
  done
  if [ -n "$hex" ] && $AIRHOP decode card "$hex" > "$O/card.txt" 2>&1 && grep -q '^name *Bob$' "$O/card.txt"; then
    ok "bluetoothctl read the card ($(( ${#hex} / 2 )) bytes, try $try) and it decodes: $(grep -E '^(name|peer_id|signature)' "$O/card.txt" | tr -s ' ' | tr '\n' ' ')"
  else
    bad "bluetoothctl card read: got ${#hex} hex digits in $try tries; $(head -3 "$O/card.txt" 2>/dev/null | tr '\n' ' ')"
  fi
}

# ---- Wi-Fi hotspots --------------------------------------------------------

# wlan_of NS: the namespace's Wi-Fi interface (sysfs as the namespace sees it).
wlan_of() { ip netns exec "$1" sh -c 'for i in /sys/class/net/*; do [ -e "$i/phy80211" ] && basename "$i"; done' | head -1; }
# wifi_state NS: what a namespace's Wi-Fi looks like (to compare before and after).
wifi_state() {
  local ns=$1 ifc; ifc=$(wlan_of "$ns")
  echo "link=$(ip -n "$ns" -o link show "$ifc" | grep -o '<[^>]*>' | grep -qw UP && echo up || echo down)" \
       "addrs=[$(ip -n "$ns" -o -4 addr show dev "$ifc" | awk '{print $4}' | tr '\n' ' ')]" \
       "assoc=[$(ip netns exec "$ns" iw dev "$ifc" link 2>/dev/null | sed -n 's/^[[:space:]]*SSID: //p')]" \
       "daemons=[$(for p in $(ip netns pids "$ns"); do c=$(cat /proc/$p/comm 2>/dev/null); case $c in hostapd|wpa_supplicant) echo -n "$c ";; esac; done)]" \
       "run=[$(ls /run/airhop 2>/dev/null | tr '\n' ' ')]"
}
# same_state NAME: both namespaces are back as they were before the scenario.
same_state() {
  local name=$1 now_rx now_tx
  now_rx=$(wifi_state rx); now_tx=$(wifi_state tx)
  if [ "$now_rx" = "$RX_BEFORE" ] && [ "$now_tx" = "$TX_BEFORE" ]; then
    ok "$name: both devices' Wi-Fi as before ($now_rx)"
  else
    bad "$name: left behind: rx $now_rx (was $RX_BEFORE); tx $now_tx (was $TX_BEFORE)"
  fi
}
# jfield FILE STAGE ROLE: the first hotspot event of that stage and role, as its time.
hs_at() { awk -v s="\"stage\":\"$2\"" -v r="\"role\":\"$3\"" 'index($0, "\"event\":\"hotspot\"") && index($0, s) && index($0, r) {print $1; exit}' "$1"; }
# heard_cannot_join NAME: the receiver (--join-only) could not join the
# sender's hotspot; the sender heard so and closed it within 5 s.
heard_cannot_join() {
  local rxf=$O/rx-$1.jsonl txf=$O/tx-$1.jsonl rf tc took
  rf=$(hs_at "$rxf" failed join); tc=$(hs_at "$txf" closed host)
  took=$(secs "$rf" "$tc")
  result "TIME $V $1: receiver's join failed -> sender's hotspot closed: $took s"
  if [ "$SEND_RC" = 8 ] && [ -n "$(hs_at "$txf" up host)" ] \
     && [ "$took" != "?" ] && awk -v t="$took" 'BEGIN{exit !(t <= 5)}'; then
    ok "$1: the sender heard the receiver could not join and closed its hotspot $took s later; sender exit 8, \"$(tail -1 "$O/tx-$1.err")\""
  else
    bad "$1: sender exit $SEND_RC, hotspot closed $took s after the receiver's join failed (at most 5 s): $(tail -2 "$O/tx-$1.err" | tr '\n' ' '); $(grep -h '"hotspot"' "$txf" "$rxf" | tail -3 | tr '\n' ' ')"
  fi
  stop_receiver
}
# heard_abandon NAME: the sender's join failed; it tells the receiver over
# BLE (an abandon notice), and the receiver, still running, takes its
# hotspot down within 5 s of the failure rather than at its connect
# deadline (a minute and more).
heard_abandon() {
  local rxf=$O/rx-$1.jsonl txf=$O/tx-$1.jsonl
  wait_for 20 "[ -n \"\$(hs_at $rxf closed host)\" ]"
  local failed closed took
  failed=$(hs_at "$txf" failed join); closed=$(hs_at "$rxf" closed host)
  took=$(secs "$failed" "$closed")
  result "TIME $V $1: sender's join failed -> receiver's hotspot closed: $took s"
  if [ "$took" != "?" ] && awk -v t="$took" 'BEGIN{exit !(t <= 5)}'; then
    ok "$1: the receiver heard the sender give up and closed its hotspot $took s after the join failed"
  else
    bad "$1: the receiver's hotspot closed $took s after the sender's join failed (at most 5 s): $(grep -h hotspot "$rxf" | tail -2 | tr '\n' ' ')"
  fi
}
# term_receiver: SIGTERM, as a service manager would; airhop tears down first.
term_receiver() {
  for p in $(ip netns pids rx); do [ "$(cat /proc/$p/comm 2>/dev/null)" = airhop ] && kill -TERM $p; done
  wait_for 30 "! ip netns pids rx | xargs -r -n1 -I{} cat /proc/{}/comm 2>/dev/null | grep -qx airhop"
}
# stop_receiver: the same, then whatever else runs in rx.
stop_receiver() { term_receiver; kill_ns rx; }
# airhop_gone NS: no airhop process left in the namespace.
airhop_gone() { ! ip netns pids "$1" | xargs -r -n1 -I{} cat /proc/{}/comm 2>/dev/null | grep -qx airhop; }

# hwsim_up: three mac80211_hwsim radios, one each in rx, tx and ap (the
# third access point, "home", that both devices start on; issue 16).
hwsim_up() {
  [ -e /sys/module/mac80211_hwsim ] && return 0
  modprobe mac80211_hwsim radios=3 || { bad "mac80211_hwsim did not load"; return 1; }
  wait_for 10 '[ "$(ls /sys/class/ieee80211 | wc -l)" -ge 3 ]' || { bad "no hwsim radios"; return 1; }
  local phys; phys=($(ls /sys/class/ieee80211))
  ip netns add ap; ip -n ap link set lo up
  iw phy "${phys[0]}" set netns name rx && iw phy "${phys[1]}" set netns name tx \
    && iw phy "${phys[2]}" set netns name ap \
    || { bad "could not move the radios into the namespaces"; return 1; }
  ok "hwsim: ${phys[0]} in rx ($(wlan_of rx)), ${phys[1]} in tx ($(wlan_of tx)), ${phys[2]} in ap ($(wlan_of ap))"
}
# home_up: the home network: hostapd in namespace ap, WPA2, 2.4 GHz
# channel 1, clients isolated from each other (as on most public and many
# home networks), so rx and tx do not reach each other through it.
HOME_SSID=airlab-home HOME_PASS=airlab-home-pass
home_up() {
  [ -s /run/home-ap.pid ] && kill -0 "$(cat /run/home-ap.pid)" 2>/dev/null && return 0
  local wl; wl=$(wlan_of ap)
  printf 'interface=%s\ndriver=nl80211\nssid=%s\nhw_mode=g\nchannel=1\nwpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_passphrase=%s\nap_isolate=1\n' \
    "$wl" "$HOME_SSID" "$HOME_PASS" > $W/home-ap.conf
  ip netns exec ap hostapd -B -P /run/home-ap.pid $W/home-ap.conf > "$LAB/out/home-ap.log" 2>&1
  ip -n ap addr add 192.168.77.1/24 dev "$wl"
  wait_for 20 "ip netns exec ap iw dev $wl info | grep -q 'type AP'" \
    || { bad "home: the third access point did not start: $(tail -2 "$LAB/out/home-ap.log" | tr '\n' ' ')"; return 1; }
}
# on_home NS: the namespace's Wi-Fi is associated to the home network.
on_home() { ip netns exec "$1" iw dev "$(wlan_of "$1")" link 2>/dev/null | grep -q "SSID: $HOME_SSID"; }
# back_home NAME BEFORE_RX BEFORE_TX STATEFN: after a hotspot transfer,
# both devices are on the home network again with the same addresses
# (STATEFN NS prints what is compared).
back_home() {
  local name=$1 brx=$2 btx=$3 f=$4 t0=$EPOCHREALTIME
  wait_for 30 "[ \"\$($f rx)\" = \"\$brx\" ] && [ \"\$($f tx)\" = \"\$btx\" ]"
  local arx atx; arx=$($f rx); atx=$($f tx)
  if [ "$arx" = "$brx" ] && [ "$atx" = "$btx" ] && on_home rx && on_home tx; then
    ok "$name: both devices back on $HOME_SSID with the same addresses, $(secs "$t0" "$EPOCHREALTIME") s after airhop exited (rx: $arx; tx: $atx)"
  else
    bad "$name: not restored: rx $arx (was $brx); tx $atx (was $btx)"
  fi
}
# home_transfer NAME STATEFN H: with both devices on the home network, a
# transfer over a hotspot (--hotspot: the home network isolates clients),
# then one whose receiver is stopped with SIGTERM once the sender has
# joined, then one the sender hosts; after each, both devices are back on
# the home network.
home_transfer() {
  local name=$1 f=$2 H=$3 brx btx
  brx=$($f rx); btx=$($f tx)
  reg_note "$name"
  start_receiver "$name" --yes --once --hotspot $H && {
    send "$name" --wait 90 $H $W/payload.bin
    wait_for 40 "airhop_gone rx"
    # The hostapd backend borrowed the receiver's own wpa_supplicant (home):
    # its up event says so.
    local hb; hb=$(grep '"stage":"up"' "$O/rx-$name.jsonl" | grep -o '"backend":"[^"]*"')
    if [ "$SEND_RC" = 0 ] && cmp -s $W/payload.bin $W/inbox-$name/payload.bin \
       && grep -q '"role":"host"' "$O/rx-$name.jsonl" \
       && { [ "$name" != home ] || [ "$hb" = '"backend":"wpa_supplicant"' ]; }; then
      ok "$name: 8 MiB over a hotspot while both devices were on $HOME_SSID, bytes identical (host: $hb; joiner: $(grep '"stage":"up"' "$O/tx-$name.jsonl" | grep -o '"security":"[^"]*"' || echo "security not reported"))"
    else
      bad "$name: send exit $SEND_RC (host: $hb): $(tail -2 "$O/tx-$name.err" | tr '\n' ' ')"
    fi
    # A borrowed wpa_supplicant's access point offers SAE beside WPA2, as
    # hostapd does, and the joiner (borrowed too) negotiates SAE; on
    # 5 GHz when the domain opened it.
    result "TIME $V $name accept -> hotspot up: $(secs "$(hs_at "$O/rx-$name.jsonl" starting host)" "$(hs_at "$O/rx-$name.jsonl" up host)") s"
    if [ "$name" = home ]; then
      local band='"band":"'; [ -n "$HOME_5G" ] && band='"band":"5 GHz"'
      if grep '"stage":"up"' "$O/rx-$name.jsonl" | grep '"security":"WPA2/WPA3"' | grep -q "$band" \
         && grep '"stage":"up"' "$O/tx-$name.jsonl" | grep -q '"security":"WPA3-SAE"'; then
        ok "$name: WPA3-SAE negotiated with the borrowed wpa_supplicant's access point ($(grep -o '"band":"[^"]*","channel":[0-9]*' "$O/rx-$name.jsonl" | head -1))"
      else
        bad "$name: the borrowed access point gave no WPA3-SAE: $(grep -h '"stage":"up"' "$O/rx-$name.jsonl" "$O/tx-$name.jsonl" | tr '\n' ' ')"
      fi
    fi
    back_home "$name" "$brx" "$btx" "$f"
  }
  reg_note "$name-term"
  start_receiver "$name-term" --yes --once --hotspot $H && {
    ( wait_for 120 "[ -n \"\$(hs_at $O/tx-$name-term.jsonl up join)\" ]" && term_receiver ) &
    local killer=$!
    send "$name-term" --wait 90 $H $W/payload.bin
    wait $killer
    wait_for 40 "airhop_gone rx"
    if [ -n "$(hs_at "$O/tx-$name-term.jsonl" up join)" ] && grep -q '"stage":"closed"' "$O/rx-$name-term.jsonl"; then
      ok "$name-term: the receiver, stopped with SIGTERM once the sender had joined, closed its hotspot (sender exit $SEND_RC)"
    else
      bad "$name-term: $(grep -h '"hotspot"' "$O/rx-$name-term.jsonl" | tail -2 | tr '\n' ' ') sender exit $SEND_RC: $(tail -2 "$O/tx-$name-term.err" | tr '\n' ' ')"
    fi
    back_home "$name-term" "$brx" "$btx" "$f"
  }
  # The other way round: the receiver only joins, so the sender hosts;
  # both go back home all the same.
  KEEP_RX=1 sender_hosts "$name-sender-hosts" "$H"
  back_home "$name-sender-hosts" "$brx" "$btx" "$f"
}

# home_kill H: the receiver, hosting on its borrowed wpa_supplicant, is
# killed with SIGKILL once the sender has joined: nothing of it can put
# the network back. The next airhop run on that device (here a send that
# finds nobody) undoes what the journal in its private folder says, and
# both devices are on the home network again.
home_kill() {
  local H=$1 brx btx
  brx=$(wifi_state rx); btx=$(wifi_state tx)
  start_receiver home-kill --yes --once --hotspot $H && {
    # Only airhop: the device's own wpa_supplicant runs in rx too.
    ( wait_for 120 "[ -n \"\$(hs_at $O/tx-home-kill.jsonl up join)\" ]" \
        && for p in $(ip netns pids rx); do
             [ "$(cat /proc/$p/comm 2>/dev/null)" = airhop ] && kill -9 $p
           done ) &
    local killer=$!
    send home-kill --wait 90 $H $W/payload.bin
    wait $killer
    wait_for 10 "airhop_gone rx"
    local left; left=$(wifi_state rx)
    if [ -z "$(hs_at "$O/tx-home-kill.jsonl" up join)" ] || on_home rx \
       || ! echo "$left" | grep -q "daemons=\[wpa_supplicant"; then
      bad "home-kill: the receiver was not left on its hotspot (sender exit $SEND_RC; rx $left)"
      return
    fi
    ip netns exec rx $AIRHOP --config-dir $W/rx-conf --transport ble --adapter hci0 --name Bob \
      send --to Nobody --wait 1 $H $W/payload.bin > "$O/rx-recover.out" 2> "$O/rx-recover.err"
    if grep -q "removed the hotspot a stopped airhop left" "$O/rx-recover.err"; then
      ok "home-kill: after SIGKILL the receiver stayed on its hotspot ($left); its next run said \"$(grep -m1 'removed the hotspot' "$O/rx-recover.err")\""
    else
      bad "home-kill: the next run did not put the network back: $(tail -2 "$O/rx-recover.err" | tr '\n' ' ')"
    fi
    back_home home-kill "$brx" "$btx" wifi_state
  }
}

# sender_hosts NAME H: the receiver cannot host (`--join-only`, as a board
# whose Wi-Fi has no AP mode): the sender hosts, its credentials sealed in
# the invitation, and the receiver joins and says its address in its reply.
sender_hosts() {
  local name=$1 H=$2
  reg_note "$name"
  start_receiver "$name" --yes --once --join-only $H && {
    send "$name" --wait 90 $H $W/payload.bin
    wait_for 40 "airhop_gone rx"
    local rxf=$O/rx-$name.jsonl txf=$O/tx-$name.jsonl
    if [ "$SEND_RC" = 0 ] && cmp -s $W/payload.bin $W/inbox-$name/payload.bin \
       && [ -n "$(hs_at "$txf" up host)" ] && [ -n "$(hs_at "$rxf" up join)" ] \
       && [ -z "$(hs_at "$rxf" starting host)" ] && [ -z "$(hs_at "$txf" starting join)" ]; then
      ok "$name: the receiver could not host (--join-only), so the sender hosted and the receiver joined; 8 MiB, bytes identical ($(grep -h '"stage":"up"' "$txf" "$rxf" | grep -o '"role":"[a-z]*"\|"band":"[^"]*"\|"security":"[^"]*"' | tr '\n' ' '))"
    else
      bad "$name: send exit $SEND_RC: $(tail -2 "$O/tx-$name.err" | tr '\n' ' '); receiver: $(tail -2 "$O/rx-$name.err" | tr '\n' ' '); $(grep -h '"hotspot"' "$txf" "$rxf" | tail -3 | tr '\n' ' ')"
    fi
    if grep -q '"stage":"closed"' "$rxf" && grep -q '"stage":"closed"' "$txf" && ! grep -q '"problem"' "$rxf" "$txf"; then
      ok "$name: both sides report the hotspot removed and the interface restored"
    else
      bad "$name: no clean teardown event: $(grep -h '"hotspot"' "$rxf" "$txf" | tail -2 | tr '\n' ' ')"
    fi
    local acc up joined
    acc=$(hs_at "$txf" starting host); up=$(hs_at "$txf" up host); joined=$(hs_at "$rxf" up join)
    result "TIME $V $name sender's hotspot starting -> up: $(secs "$acc" "$up") s; -> receiver joined: $(secs "$acc" "$joined") s; -> first byte: $(secs "$acc" "$(at "$rxf" started)") s"
    # (rx runs its NetworkManager in the nm mode, and its home network's
    # wpa_supplicant in a home step: only airhop goes.)
    [ "$V" = nm ] || [ -n "$KEEP_RX" ] || kill_ns rx
  }
}

wifi_variant() {
  V=wifi; ADV=extended
  O=$LAB/out/$V; mkdir -p "$O"
  say "=== wifi: btvirt -l3, two mac80211_hwsim radios, no shared network ==="
  hwsim_up || return 1
  ip -n rx link del vrx 2>/dev/null   # no shared network any more
  RX_BEFORE=$(wifi_state rx); TX_BEFORE=$(wifi_state tx)
  bt_up "-l3" || return 1
  local H="--hotspot-backend hostapd"

  # 1. End to end: BLE rendezvous, the receiver hosts, the sender joins, 8 MiB.
  RX_ENV= TX_ENV=
  start_receiver hotspot --yes --once $H && {
    send hotspot --wait 90 $H $W/payload.bin
    wait_for 40 "! ip netns pids rx | grep -q ."
    local rxf=$O/rx-hotspot.jsonl txf=$O/tx-hotspot.jsonl
    if [ "$SEND_RC" = 0 ] && cmp -s $W/payload.bin $W/inbox-hotspot/payload.bin; then
      ok "hotspot: 8 MiB over BLE rendezvous + hotspot (hostapd/wpa_supplicant) + QUIC, bytes identical"
    else
      bad "hotspot: send exit $SEND_RC: $(tail -3 "$O/tx-hotspot.err" | tr '\n' ' ')"
    fi
    if grep -q '"stage":"closed"' "$rxf" && grep -q '"stage":"closed"' "$txf" && ! grep -q '"problem"' "$rxf" "$txf"; then
      ok "hotspot: both sides report the hotspot removed and the interface restored"
    else
      bad "hotspot: no clean teardown event: $(grep -h '"hotspot"' "$rxf" "$txf" | tail -2 | tr '\n' ' ')"
    fi
    same_state hotspot
    local acc up joined first
    acc=$(hs_at "$rxf" starting host); up=$(hs_at "$rxf" up host); joined=$(hs_at "$txf" up join); first=$(at "$rxf" started)
    result "TIME wifi accept -> hotspot up: $(secs "$acc" "$up") s"
    result "TIME wifi hotspot up -> joined: $(secs "$up" "$joined") s (the joiner started at accept: $(secs "$acc" "$joined") s after it)"
    result "TIME wifi joined -> first byte: $(secs "$joined" "$first") s"
    result "TIME wifi first byte -> 8 MiB done: $(secs "$first" "$(at "$rxf" done)") s"
    # WPA3: the radios have protected management frames, so the host
    # offers SAE beside WPA2 and the joiner, preferring it, negotiates SAE.
    if grep '"stage":"up"' "$rxf" | grep -q '"security":"WPA2/WPA3"' \
       && grep '"stage":"up"' "$txf" | grep -q '"security":"WPA3-SAE"'; then
      ok "hotspot: WPA3-SAE negotiated (the host offered WPA2/WPA3 transition mode)"
    else
      bad "hotspot: not WPA3-SAE: $(grep -h '"stage":"up"' "$rxf" "$txf" | tr '\n' ' ')"
    fi
    if grep -q '"band":"2.4 GHz","channel":6' "$rxf" && grep -q '"band":"2.4 GHz","channel":6' "$txf"; then
      ok "hotspot: on 2.4 GHz channel 6: the world regulatory domain allows no access point on 5 GHz"
    else
      bad "hotspot: not on 2.4 GHz channel 6 under the world domain: $(grep -h '"starting"' "$rxf" | head -1)"
    fi
    kill_ns rx
  }

  # 1b. 5 GHz: under a regulatory domain that lets an access point start on
  # channel 36 (US), both radios can use 5 GHz, so the host puts the
  # hotspot there, at 80 MHz (802.11ac), and the joiner scans only 5180 MHz.
  ip netns exec rx iw phy > "$O/iw-phy-world.txt" 2>&1
  if iw reg set US && wait_for 10 "ip netns exec rx iw phy | grep -qE '5180(\.0)? MHz \[36\] \([0-9.]+ dBm\)\$'"; then
    ip netns exec rx iw phy > "$O/iw-phy-us.txt" 2>&1
    start_receiver 5ghz --yes --once $H && {
      send 5ghz --wait 90 $H $W/payload.bin
      wait_for 40 "! ip netns pids rx | grep -q ."
      local f5=$O/rx-5ghz.jsonl
      if [ "$SEND_RC" = 0 ] && cmp -s $W/payload.bin $W/inbox-5ghz/payload.bin \
         && grep -q '"role":"host".*"band":"5 GHz","channel":36' "$f5" \
         && grep -q '"role":"join".*"band":"5 GHz","channel":36' "$O/tx-5ghz.jsonl"; then
        ok "5ghz: 8 MiB over a hotspot on 5 GHz channel 36 (US domain), bytes identical"
      else
        bad "5ghz: send exit $SEND_RC: $(tail -2 "$O/tx-5ghz.err" | tr '\n' ' '); $(grep -h '"starting"' "$f5" | head -1)"
      fi
      result "TIME wifi 5ghz accept -> hotspot up: $(secs "$(hs_at "$f5" starting host)" "$(hs_at "$f5" up host)") s"
      kill_ns rx
    }
    same_state 5ghz
  else
    bad "5ghz: the US regulatory domain did not open channel 36: $(iw reg get 2>&1 | head -3 | tr '\n' ' ')"
  fi
  world_again

  # 1c. Either side hosts: a receiver that cannot.
  sender_hosts sender-hosts "$H"
  same_state sender-hosts

  # 2. Both on "a LAN" that does not connect them: the probe fails, then the hotspot.
  ip link add vrx type veth peer name vtx; ip link set vrx netns rx; ip link set vtx netns tx
  ip -n rx addr add 10.78.0.1/24 dev vrx; ip -n rx link set vrx up
  ip -n tx addr add 10.79.0.2/24 dev vtx; ip -n tx link set vtx up
  start_receiver probe --yes --once $H && {
    send probe --wait 90 $H $W/payload.bin
    if [ "$SEND_RC" = 0 ] && cmp -s $W/payload.bin $W/inbox-probe/payload.bin \
       && grep -q '"role":"join"' "$O/tx-probe.jsonl"; then
      ok "probe: the announced LAN address was unreachable, the hotspot took over, bytes identical"
    else
      bad "probe: send exit $SEND_RC: $(tail -3 "$O/tx-probe.err" | tr '\n' ' ')"
    fi
    wait_for 40 "! ip netns pids rx | grep -q ."; kill_ns rx
  }
  ip -n rx link del vrx 2>/dev/null
  same_state probe

  # 3. A wrong passphrase: the access point runs with another key than the
  # one sealed in the reply (a hostapd wrapper edits its config).
  mkdir -p $W/shim-key $W/shim-never
  printf '#!/bin/sh\nsed -i "s/^wpa_psk=.*/wpa_psk=%s/; s/^sae_password=.*/sae_password=%s/" "$1"\nexec /usr/sbin/hostapd "$@"\n' \
    "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" > $W/shim-key/hostapd
  # 4. A hotspot that never comes up: hostapd that never enables its AP.
  printf '#!/bin/sh\necho "nl80211: Could not configure driver mode"\nexec sleep 600\n' > $W/shim-never/hostapd
  chmod +x $W/shim-key/hostapd $W/shim-never/hostapd
  # The joiner's wpa_supplicant output is kept (a wrapper tees it).
  mkdir -p $W/shim-tee
  printf '#!/bin/bash\nexec /usr/sbin/wpa_supplicant "$@" > >(tee -a %s/wpa-tx-wrongkey.log) 2>&1\n' "$O" > $W/shim-tee/wpa_supplicant
  chmod +x $W/shim-tee/wpa_supplicant
  RX_ENV="PATH=$W/shim-key:$PATH" TX_ENV="PATH=$W/shim-tee:$PATH"
  start_receiver wrongkey --yes --once $H --hotspot-timeout 30 && {
    send wrongkey --wait 90 $H --hotspot-timeout 30 $W/payload.bin
    if [ "$SEND_RC" = 8 ] && grep -q '"failed_stage":"join"' "$O/tx-wrongkey.jsonl" \
       && grep -q 'wrong passphrase' "$O/tx-wrongkey.err"; then
      ok "wrongkey: sender exit 8, \"$(tail -1 "$O/tx-wrongkey.err")\""
    else
      bad "wrongkey: sender exit $SEND_RC: $(tail -2 "$O/tx-wrongkey.err" | tr '\n' ' ')"
    fi
    heard_abandon wrongkey
    stop_receiver
  }
  TX_ENV=
  same_state wrongkey
  RX_ENV="PATH=$W/shim-never:$PATH"
  start_receiver never --yes --once $H --hotspot-timeout 15 && {
    send never --wait 90 $H --hotspot-timeout 20 $W/payload.bin
    wait_for 30 "! ip netns pids rx | grep -q ."
    if [ "$SEND_RC" = 8 ] && grep -q '"failed_stage":"create"' "$O/rx-never.jsonl" \
       && grep -q '"failed_stage":"join"' "$O/tx-never.jsonl"; then
      ok "never: receiver \"$(grep -h 'hotspot create' "$O/rx-never.err" | tail -1)\"; sender exit 8, \"$(tail -1 "$O/tx-never.err")\""
    else
      bad "never: sender exit $SEND_RC: $(tail -2 "$O/tx-never.err" | tr '\n' ' '); receiver: $(tail -2 "$O/rx-never.err" | tr '\n' ' ')"
    fi
    kill_ns rx
  }
  same_state never
  # 5. A join that times out: the joiner's wpa_supplicant takes 10 s to
  # start (a slow radio), the sender allows 4.
  mkdir -p $W/shim-slow
  printf '#!/bin/sh\nsleep 10\nexec /usr/sbin/wpa_supplicant "$@"\n' > $W/shim-slow/wpa_supplicant
  chmod +x $W/shim-slow/wpa_supplicant
  RX_ENV= TX_ENV="PATH=$W/shim-slow:$PATH"
  start_receiver jointimeout --yes --once $H --hotspot-timeout 30 && {
    send jointimeout --wait 90 $H --hotspot-timeout 4 $W/payload.bin
    if [ "$SEND_RC" = 8 ] && grep -q '"failed_stage":"join"' "$O/tx-jointimeout.jsonl" \
       && grep -q 'within 4 s' "$O/tx-jointimeout.err"; then
      ok "jointimeout: sender exit 8, \"$(tail -1 "$O/tx-jointimeout.err")\""
    else
      bad "jointimeout: sender exit $SEND_RC: $(tail -2 "$O/tx-jointimeout.err" | tr '\n' ' ')"
    fi
    heard_abandon jointimeout
    stop_receiver
  }
  TX_ENV=
  same_state jointimeout
  # 5b. The same when the sender hosts: the receiver (--join-only) cannot
  # join within its 4 s; it says so over BLE (an abandon notice indicated
  # after its reply), and the sender takes its hotspot down within 5 s.
  RX_ENV="PATH=$W/shim-slow:$PATH" TX_ENV=
  start_receiver rxjoinfail --yes --once --join-only $H --hotspot-timeout 4 && {
    send rxjoinfail --wait 90 $H --hotspot-timeout 30 $W/payload.bin
    heard_cannot_join rxjoinfail
  }
  same_state rxjoinfail
  # 5c. The same with the devices found over a LAN (UDP multicast, TCP
  # rendezvous) instead of BLE, the hotspot asked for: the notice goes
  # back on the invitation's TCP connection, kept open for it.
  ip link add vrx type veth peer name vtx; ip link set vrx netns rx; ip link set vtx netns tx
  ip -n rx addr add 10.77.0.1/24 dev vrx; ip -n rx link set vrx up
  ip -n tx addr add 10.77.0.2/24 dev vtx; ip -n tx link set vtx up
  RX_TRANSPORT="--transport lan" TX_TRANSPORT="--transport lan"
  start_receiver lanjoinfail --yes --once --hotspot --join-only $H --hotspot-timeout 4 && {
    send lanjoinfail --wait 90 --hotspot $H --hotspot-timeout 30 $W/payload.bin
    heard_cannot_join lanjoinfail
  }
  RX_ENV= RX_TRANSPORT= TX_TRANSPORT=
  ip -n rx link del vrx 2>/dev/null
  same_state lanjoinfail

  # 6. The network is put back. Each device is on the home network through
  # a wpa_supplicant of its own (as a board without NetworkManager is);
  # airhop borrows the interface over that wpa_supplicant's control
  # socket, and gives it back.
  if home_up; then
    printf 'ctrl_interface=/run/wpa_supplicant\nnetwork={\n\tssid="%s"\n\tpsk="%s"\n\tkey_mgmt=WPA-PSK\n}\n' \
      "$HOME_SSID" "$HOME_PASS" > $W/home-sta.conf
    local ns n=2
    for ns in rx tx; do
      ip netns exec $ns wpa_supplicant -B -D nl80211 -i "$(wlan_of $ns)" -c $W/home-sta.conf \
        -P /run/home-$ns.pid > "$O/home-$ns.log" 2>&1
      ip -n $ns addr add 192.168.77.$n/24 dev "$(wlan_of $ns)"; n=$((n + 1))
    done
    if wait_for 30 "on_home rx && on_home tx"; then
      ok "home: both devices on $HOME_SSID (rx $(wifi_state rx); tx $(wifi_state tx))"
      # Under a domain that opens channel 36 (US), the borrowed access
      # points of the home steps go to 5 GHz, and back home on 2.4 GHz.
      HOME_5G=
      iw reg set US && wait_for 10 "ip netns exec rx iw phy | grep -qE '5180(\.0)? MHz \[36\] \([0-9.]+ dBm\)\$'" && HOME_5G=1
      home_transfer home wifi_state "$H"
      home_kill "$H"
      world_again
    else
      bad "home: the devices did not associate to $HOME_SSID: $(tail -2 "$O/home-rx.log" | tr '\n' ' ')"
    fi
    for ns in rx tx; do
      [ -s /run/home-$ns.pid ] && kill "$(cat /run/home-$ns.pid)"
      wait_for 10 "! [ -e /run/wpa_supplicant/$(wlan_of $ns) ]"
      ip -n $ns addr flush dev "$(wlan_of $ns)"; ip -n $ns link set "$(wlan_of $ns)" down
    done
  fi
  bt_down
}

# ---- NetworkManager -----------------------------------------------------------

# nm_up NS: a NetworkManager of its own for the namespace: its own D-Bus
# (NetworkManager and its wpa_supplicant on it; BlueZ stays on the system
# bus) and, in its own mount namespace, its own /run/NetworkManager and
# /var/lib/NetworkManager. airhop finds it through AIRHOP_NM_DBUS_ADDRESS.
# Its dispatcher runs from the start: NetworkManager calls it before every
# activation and deactivation, and a bus that has to start it (there is no
# systemd here) answers only at its 25 s activation timeout, which made
# leaving the home network take 25 s.
# world_again: back to the world regulatory domain after a US step, and
# say so in reg.log (each phy's channel 36 and the kernel's view), since a
# domain that did not take changes every hotspot after it.
world_again() {
  iw reg set 00
  if ! wait_for 10 "ip netns exec rx iw phy | grep -qE 'MHz \[36\].*no IR' && ip netns exec tx iw phy | grep -qE 'MHz \[36\].*no IR'"; then
    say "the world domain did not take within 10 s"
  fi
  reg_note "after iw reg set 00"
}
# reg_note WHAT: the regulatory domain and channel 36 of each phy, in reg.log.
reg_note() {
  { echo "== $(up) s: $1"; iw reg get | grep -E '^(global|phy|country)'
    for ns in rx tx; do echo "$ns: $(ip netns exec $ns iw phy | grep -E 'MHz \[36\]')"; done; } >> "$O/reg.log" 2>&1
}
nm_up() {
  local ns=$1 d=/run/nm-$1
  mkdir -p $d/conf $d/connections /run/NetworkManager /var/lib/NetworkManager
  printf '[main]\nplugins=keyfile\ndhcp=internal\n[keyfile]\npath=%s\nunmanaged-devices=interface-name:lo;interface-name:v*\n[logging]\nlevel=INFO\n' \
    "$d/connections" > $d/conf/NetworkManager.conf
  dbus-daemon --config-file=/usr/share/dbus-1/system.conf --address=unix:path=$d/bus --nopidfile --fork --print-pid > $d/dbus.pid
  wait_for 10 "[ -S $d/bus ]" || { bad "nm-$ns: its D-Bus did not start"; return 1; }
  ip netns exec "$ns" unshare -m sh -c "
    mount -t tmpfs none /run/NetworkManager && mount -t tmpfs none /var/lib/NetworkManager &&
    mount -t tmpfs none /run/udev && /lib/systemd/systemd-udevd --daemon &&
    udevadm trigger --action=add --subsystem-match=net && udevadm settle --timeout=20 &&
    export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$d/bus &&
    { wpa_supplicant -u -s > $O/wpa-$ns.log 2>&1 & } &&
    { /usr/lib/NetworkManager/nm-dispatcher --persist > $O/nm-dispatcher-$ns.log 2>&1 & } &&
    exec NetworkManager --debug --log-level=INFO --config $d/conf/NetworkManager.conf" > "$O/nm-$ns.log" 2>&1 &
  local wl; wl=$(wlan_of "$ns")
  wait_for 20 "DBUS_SYSTEM_BUS_ADDRESS=unix:path=$d/bus nmcli -t -f DEVICE device 2>/dev/null | grep -qx $wl"
  DBUS_SYSTEM_BUS_ADDRESS=unix:path=$d/bus nmcli device set "$wl" managed yes >> "$O/nm-$ns.log" 2>&1
  if wait_for 40 "DBUS_SYSTEM_BUS_ADDRESS=unix:path=$d/bus nmcli -t -f DEVICE,STATE device 2>/dev/null | grep -q '^$wl:disconnected'"; then
    ok "nm-$ns: NetworkManager $(NetworkManager --version) manages $wl ($(DBUS_SYSTEM_BUS_ADDRESS=unix:path=$d/bus nmcli -t -f DEVICE,TYPE,STATE device | tr '\n' ' '))"
  else
    bad "nm-$ns: NetworkManager did not manage $wl: $(DBUS_SYSTEM_BUS_ADDRESS=unix:path=$d/bus nmcli -t device 2>&1 | tr '\n' ' ') $(grep -iE 'error|warn|fail' "$O/nm-$ns.log" | tail -4 | tr '\n' ' ')"
    return 1
  fi
}
nm_down() {
  kill_ns rx tx
  for ns in rx tx; do [ -s /run/nm-$ns/dbus.pid ] && kill "$(cat /run/nm-$ns/dbus.pid)"; done
}
# nm_state NS: NetworkManager's profiles and the interface's state.
nm_state() {
  DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/nm-$1/bus nmcli -t -f NAME,DEVICE connection show 2>&1 | tr '\n' ' '
  echo -n "| $(wifi_state "$1" | sed 's/ daemons=[^]]*]//; s/link=[a-z]* //')"
}

nm_variant() {
  V=nm; ADV=extended
  O=$LAB/out/$V; mkdir -p "$O"
  say "=== nm: the NetworkManager backend, a NetworkManager per device ==="
  ip -n rx link del vrx 2>/dev/null
  # NetworkManager manages only devices udev has seen: each namespace runs
  # a udevd of its own (net uevents reach only their own namespace).
  mkdir -p /run/udev
  hwsim_up || return 1
  nm_up rx && nm_up tx || { nm_down; return 1; }
  local rxb txb; rxb=$(nm_state rx); txb=$(nm_state tx)
  bt_up "-l3" || { nm_down; return 1; }
  local H="--hotspot-backend networkmanager"
  RX_ENV="AIRHOP_NM_DBUS_ADDRESS=unix:path=/run/nm-rx/bus" TX_ENV="AIRHOP_NM_DBUS_ADDRESS=unix:path=/run/nm-tx/bus"
  start_receiver nm --yes --once $H && {
    send nm --wait 90 $H $W/payload.bin
    wait_for 40 "! ip netns pids rx | xargs -r -n1 -I{} cat /proc/{}/comm 2>/dev/null | grep -qx airhop"
    local rxf=$O/rx-nm.jsonl txf=$O/tx-nm.jsonl
    if [ "$SEND_RC" = 0 ] && cmp -s $W/payload.bin $W/inbox-nm/payload.bin; then
      ok "nm: 8 MiB over BLE rendezvous + NetworkManager hotspot (ipv4.method shared) + QUIC, bytes identical"
    else
      bad "nm: send exit $SEND_RC: $(tail -3 "$O/tx-nm.err" | tr '\n' ' ') / receiver: $(tail -2 "$O/rx-nm.err" | tr '\n' ' ')"
    fi
    local acc up joined first
    acc=$(hs_at "$rxf" starting host); up=$(hs_at "$rxf" up host); joined=$(hs_at "$txf" up join); first=$(at "$rxf" started)
    result "TIME nm accept -> hotspot up: $(secs "$acc" "$up") s"
    result "TIME nm hotspot up -> joined: $(secs "$up" "$joined") s (the joiner started at accept: $(secs "$acc" "$joined") s after it)"
    result "TIME nm joined -> first byte: $(secs "$joined" "$first") s"
    # NetworkManager's access point offers SAE beside WPA2 on these radios;
    # each side's wpa_supplicant says what it offers or negotiated.
    if grep '"stage":"up"' "$rxf" | grep -q '"security":"WPA2/WPA3"' \
       && grep '"stage":"up"' "$txf" | grep -q '"security":"WPA3-SAE"'; then
      ok "nm: WPA3-SAE negotiated; the host offered WPA2/WPA3 (both read back from their wpa_supplicant)"
    else
      bad "nm: not WPA3-SAE from WPA2/WPA3: $(grep -h '"stage":"up"' "$rxf" "$txf" | tr '\n' ' ')"
    fi
  }
  # 5 GHz: under US, NetworkManager hosts on channel 36 too.
  if iw reg set US && wait_for 10 "ip netns exec rx iw phy | grep -qE '5180(\.0)? MHz \[36\] \([0-9.]+ dBm\)\$'"; then
    start_receiver nm5 --yes --once $H && {
      send nm5 --wait 90 $H $W/payload.bin
      wait_for 40 "airhop_gone rx"
      local f5=$O/rx-nm5.jsonl
      if [ "$SEND_RC" = 0 ] && cmp -s $W/payload.bin $W/inbox-nm5/payload.bin \
         && grep -q '"role":"host".*"band":"5 GHz","channel":36' "$f5" \
         && grep -q '"role":"join".*"band":"5 GHz","channel":36' "$O/tx-nm5.jsonl"; then
        ok "nm5: 8 MiB over a NetworkManager hotspot on 5 GHz channel 36 (US domain), bytes identical"
      else
        bad "nm5: send exit $SEND_RC: $(tail -2 "$O/tx-nm5.err" | tr '\n' ' '); $(grep -h '"hotspot"' "$f5" | tail -2 | tr '\n' ' ')"
      fi
      result "TIME nm 5ghz accept -> hotspot up: $(secs "$(hs_at "$f5" starting host)" "$(hs_at "$f5" up host)") s"
    }
  else
    bad "nm5: the US regulatory domain did not open channel 36"
  fi
  world_again
  sender_hosts nm-sender-hosts "$H"
  # airhop deletes its profile before it exits; a short wait covers
  # NetworkManager's own bookkeeping after that.
  wait_for 10 '[ "$(nm_state rx)" = "$rxb" ] && [ "$(nm_state tx)" = "$txb" ]'
  local rxa txa; rxa=$(nm_state rx); txa=$(nm_state tx)
  if [ "$rxa" = "$rxb" ] && [ "$txa" = "$txb" ]; then
    ok "nm: no profile left, both devices as before (rx: $rxa; tx: $txa)"
  else
    bad "nm: left behind: rx $rxa (was $rxb); tx $txa (was $txb)"
  fi
  # The network is put back: each device starts on the home network (a
  # NetworkManager profile that does not autoconnect, so only airhop can
  # have brought it back).
  if home_up; then
    local ns n=2
    for ns in rx tx; do
      DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/nm-$ns/bus timeout 60 nmcli connection add type wifi \
        ifname "$(wlan_of $ns)" con-name home ssid "$HOME_SSID" connection.autoconnect no \
        wifi-sec.key-mgmt wpa-psk wifi-sec.psk "$HOME_PASS" \
        ipv4.method manual ipv4.addresses 192.168.77.$n/24 ipv6.method ignore >> "$O/nm-$ns.log" 2>&1
      DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/nm-$ns/bus timeout 60 nmcli connection up home >> "$O/nm-$ns.log" 2>&1
      n=$((n + 1))
    done
    if wait_for 30 "on_home rx && on_home tx"; then
      ok "nm-home: both devices on $HOME_SSID (rx: $(nm_state rx); tx: $(nm_state tx))"
      home_transfer nm-home nm_state "$H"
    else
      bad "nm-home: the devices did not associate to $HOME_SSID: $(nm_state rx) / $(nm_state tx)"
    fi
  fi
  RX_ENV= TX_ENV=
  bt_down; nm_down
}

for m in $(echo "$MODE" | tr ',' ' '); do
  case $m in
    le)   bt_variant le "-L -l4" legacy ;;
    ext)  PRIVACY=device bt_variant ext "-l4" extended ;;
    wifi) wifi_variant ;;
    nm)   nm_variant ;;
  esac
done
dmesg > "$LAB/out/dmesg.txt"
result "DONE in $(up) s of guest time"
sync
busybox poweroff -f
