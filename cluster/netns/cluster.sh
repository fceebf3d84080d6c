#!/usr/bin/env bash
# A multi-host Jindou cluster on one machine: N network namespaces ("hosts"), each joined
# to the root namespace by its own veth pair, with optional tc netem delay/rate.
# Host I has address 10.77.I.2; the root namespace reaches it as 10.77.I.1's peer.
#
#   cluster/netns/cluster.sh up N [--prefix P] [--delay 2ms] [--rate 1gbit]
#   cluster/netns/cluster.sh address I                # prints 10.77.I.2
#   cluster/netns/cluster.sh exec I [--prefix P] CMD…   # runs CMD inside host I
#   cluster/netns/cluster.sh down [--prefix P]
#   cluster/netns/cluster.sh demo MODEL N [--delay 2ms]  # up, a worker per host, a coordinator
#                                                       # in the root namespace; Ctrl-C tears down
# Needs root and iproute2. Traffic stays inside this machine.
set -euo pipefail

prefix=jd
delay=""
rate=""
command=${1:-}
shift || true

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --delay) delay=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]+"${args[@]}"}"

namespace() { echo "${prefix}-h$1"; }
root_link() { echo "${prefix}v$1"; }   # interface names are limited to 15 characters

netem() {
  local target=("$@")
  local spec=()
  [ -n "$delay" ] && spec+=(delay "$delay")
  [ -n "$rate" ] && spec+=(rate "$rate")
  if [ ${#spec[@]} -gt 0 ]; then
    # netem needs the sch_netem kernel module; without it the cluster still works, undelayed.
    "${target[@]}" "${spec[@]}" 2>/dev/null || echo "cluster.sh: tc netem unavailable on this kernel; no delay/rate applied" >&2
  fi
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
    # Delay/rate both ways: on the host's egress and on the root side's egress.
    netem tc -n "$ns" qdisc add dev eth0 root netem
    netem tc qdisc add dev "$link" root netem
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
    trap down EXIT
    down; up "$n"
    workers=()
    for ((i = 0; i < n; i++)); do
      ip netns exec "$(namespace "$i")" "$jindoud" worker --model "$model" --listen "10.77.$i.2:7070" \
        --experts "contiguous:$i/$n" --name "host-$i" > "/tmp/${prefix}-worker-$i.out" &
      workers+=("10.77.$i.2:7070")
    done
    for ((i = 0; i < n; i++)); do
      until grep -q '^ready' "/tmp/${prefix}-worker-$i.out" 2>/dev/null; do sleep 0.1; done
    done
    "$jindoud" coordinator --model "$model" --listen 127.0.0.1:8080 --placement contiguous \
      --workers "$(IFS=,; echo "${workers[*]}")"
    ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
