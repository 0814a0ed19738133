#!/bin/bash
# Instructions and system calls per request, rmemcached (epoll and
# io_uring) beside memcached -t 1, for a fixed request count.
#
#   bench/per-request.sh [requests]        (default 100000; make bench-profile)
#
# Instructions: the server runs under `valgrind --tool=callgrind` with
# instrumentation off; it is switched on (callgrind_control -i on) only
# around the measured requests, after a prefill, so start-up and prefill
# are not counted.  Every thread of the server is counted (memcached's
# background threads included).  System calls: `strace -c -f` attached
# to the running server for the measured requests only.
#
# The load is rmc-loadgen's default mix: 50 connections, pipeline 1,
# set:get 1:10, 32-byte values, 100,000 keys.  Environment: RMEMCACHED,
# MEMCACHED and LOADGEN override the binaries.
set -euo pipefail

N=${1:-100000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RMC=${RMEMCACHED:-$ROOT/target/release/rmemcached}
MC=${MEMCACHED:-/usr/bin/memcached}
LOADGEN=${LOADGEN:-$ROOT/target/release/rmc-loadgen}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

for tool in valgrind callgrind_control strace; do
    command -v $tool >/dev/null || { echo "$0: $tool is not installed" >&2; exit 2; }
done

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until the server at $1 answers, or gives up after 30 s.
wait_up() {
    for _ in $(seq 300); do
        "$LOADGEN" --server "127.0.0.1:$1" --requests 1 --connections 1 >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$0: server on port $1 did not come up" >&2
    return 1
}

load() {
    "$LOADGEN" --server "127.0.0.1:$1" --requests "$2" ${3:-} >/dev/null
}

# instructions <label> <server argv...>: prints instructions per request.
instructions() {
    local label=$1; shift
    local port; port=$(free_port)
    # valgrind caps the descriptor limit; memcached sets it to -c exactly.
    (ulimit -n 524; exec valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$OUT/cg.$label.%p" "$@" -p "$port" -U 0 -c 512 -l 127.0.0.1) \
        >"$OUT/cg.$label.log" 2>&1 &
    local pid=$!
    wait_up "$port"
    load "$port" 20000 --prefill
    callgrind_control -i on $pid >/dev/null 2>&1
    load "$port" "$N"
    callgrind_control -i off $pid >/dev/null 2>&1
    kill -INT $pid; wait $pid || true
    local total
    total=$(grep -h '^summary:\|^totals:' "$OUT"/cg.$label.* | awk '{s += $2} END {print s}')
    echo $(( total / N ))
}

# syscalls <label> <server argv...>: prints "per-request total (name rate, ...)".
syscalls() {
    local label=$1; shift
    local port; port=$(free_port)
    "$@" -p "$port" -U 0 -l 127.0.0.1 &
    local pid=$!
    wait_up "$port"
    load "$port" 20000 --prefill
    strace -c -f -p $pid -o "$OUT/st.$label" 2>/dev/null &
    local spid=$!
    sleep 1
    load "$port" "$N"
    kill -INT $spid; wait $spid || true
    kill $pid; wait $pid || true
    awk -v n="$N" '
        $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
            total += $4
            if ($4 > n / 100) parts = parts sprintf("%s%s %.3f", sep, $NF, $4 / n)
            if ($4 > n / 100) sep = ", "
        }
        END { printf "%.3f (%s)\n", total / n, parts }' "$OUT/st.$label"
}

user=()
[ "$(id -u)" = 0 ] && user=(-u root)

printf '%-18s %14s  %s\n' server instr/request "syscalls/request"
for spec in "rmemcached|$RMC" "rmemcached-uring|$RMC -o io_uring" "memcached|$MC -t 1"; do
    label=${spec%%|*}
    read -r -a argv <<<"${spec#*|}"
    i=$(instructions "$label" "${argv[@]}" "${user[@]}")
    s=$(syscalls "$label" "${argv[@]}" "${user[@]}")
    printf '%-18s %14s  %s\n' "$label" "$i" "$s"
done
echo "($N requests: 50 connections, pipeline 1, set:get 1:10, 32 B values, after a 20,000-request prefill)"
