#!/usr/bin/env bash
# A multi-host Jindou cluster on one machine: N network namespaces ("hosts"), each joined
# to the root namespace by its own veth pair, with optional emulated links.
# Host I has address 10.77.I.2; the root namespace reaches it as 10.77.I.1's peer.
#
#   cluster/netns/cluster.sh up N [--prefix P] [--rate 1gbit]
#   cluster/netns/cluster.sh address I                # prints 10.77.I.2
#   cluster/netns/cluster.sh exec I [--prefix P] CMD…   # runs CMD inside host I
#   cluster/netns/cluster.sh down [--prefix P]
#   cluster/netns/cluster.sh demo MODEL N [--rtt 200us] [--jitter 20us] [--rate 1gbit]
#                          # up, a worker per host, a coordinator in the root namespace
#                          # reaching each worker through a delay relay; Ctrl-C tears down
#
# Links: --rate shapes both directions of every veth pair with tc tbf (works on kernels
# without sch_netem). Delay cannot come from tc here, so --rtt/--jitter start
# `jindouctl link relay` in the root namespace: host I's worker is reached at 10.77.I.1:7170,
# which forwards to 10.77.I.2:7070 with half the RTT added each way. `jindouctl link probe`
# against `jindouctl link echo` in a host measures the result.
# Needs root and iproute2. Traffic stays inside this machine.
set -euo pipefail

prefix=jd
rtt=""
jitter=""
rate=""
command=${1:-}
shift || true

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --rtt) rtt=$2; shift 2 ;;
    --delay) rtt=$2; shift 2 ;;   # older spelling: the added round trip
    --jitter) jitter=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]+"${args[@]}"}"

namespace() { echo "${prefix}-h$1"; }
root_link() { echo "${prefix}v$1"; }   # interface names are limited to 15 characters

# tbf on one interface: burst of at least 256 KB (veth hands tbf 64 KB GSO segments) or
# 1 ms at the rate, a 10 ms queue.
shape() {
  [ -n "$rate" ] || return 0
  tc "$@" root tbf rate "$rate" burst "$(burst_bytes)" latency 10ms
}
burst_bytes() {
  local bits
  bits=$(echo "$rate" | awk '{ v = $1 + 0; u = tolower($1); sub(/^[0-9.]+/, "", u);
    m = (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : (u == "gbit") ? 1e9 : 1; printf "%d", v * m }')
  local bytes=$((bits / 8 / 1000))
  [ "$bytes" -lt 262144 ] && bytes=262144
  echo "$bytes"
}

up() {
  local n=$1
  for ((i = 0; i < n; i++)); do
    local ns; ns=$(namespace "$i")
    local link; link=$(root_link "$i")
    ip netns add "$ns"
    ip link add "$link" type veth peer name eth0 netns "$ns"
    ip addr add "10.77.$i.1/24" dev "$link"
    ip link set "$link" up
    ip -n "$ns" addr add "10.77.$i.2/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    # Rate both ways: on the host's egress and on the root side's egress.
    shape -n "$ns" qdisc add dev eth0
    shape qdisc add dev "$link"
  done
}

down() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^${prefix}-h" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns delete "$ns" || true
  done
  for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^${prefix}v" || true); do
    ip link delete "$link" 2>/dev/null || true
  done
}

case "$command" in
  up) up "${1:?number of hosts}" ;;
  down) down ;;
  address) echo "10.77.${1:?host index}.2" ;;
  exec) i=${1:?host index}; shift; exec ip netns exec "$(namespace "$i")" "$@" ;;
  demo)
    model=${1:?model directory}; n=${2:-2}
    here=$(cd "$(dirname "$0")/../.." && pwd)
    jindoud=${JINDOUD:-$here/.build/release/jindoud}
    jindouctl=${JINDOUCTL:-$here/.build/release/jindouctl}
    trap 'kill $(jobs -p) 2>/dev/null; down' EXIT
    down; up "$n"
    workers=()
    links=()
    for ((i = 0; i < n; i++)); do
      ip netns exec "$(namespace "$i")" "$jindoud" worker --model "$model" --listen "10.77.$i.2:7070" \
        --experts "contiguous:$i/$n" --name "host-$i" > "/tmp/${prefix}-worker-$i.out" &
      if [ -n "$rtt" ]; then
        links+=(--link "10.77.$i.1:7170=10.77.$i.2:7070")
        workers+=("10.77.$i.1:7170")
      else
        workers+=("10.77.$i.2:7070")
      fi
    done
    if [ -n "$rtt" ]; then
      "$jindouctl" link relay "${links[@]}" --rtt "$rtt" ${jitter:+--jitter "$jitter"} > "/tmp/${prefix}-relay.out" &
      until [ "$(grep -c '^ready' "/tmp/${prefix}-relay.out" 2>/dev/null)" = "$n" ]; do sleep 0.1; done
    fi
    for ((i = 0; i < n; i++)); do
      until grep -q '^ready' "/tmp/${prefix}-worker-$i.out" 2>/dev/null; do sleep 0.1; done
    done
    "$jindoud" coordinator --model "$model" --listen 127.0.0.1:8080 --placement contiguous \
      --workers "$(IFS=,; echo "${workers[*]}")"
    ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
