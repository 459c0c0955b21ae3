#!/usr/bin/env bash
# `make bench`: wrk on loopback against meshnode (sqlite and memory stores)
# and a bare one-write civetweb handler, interleaved in one run, medians of
# ROUNDS rounds; writes bench/RESULTS.md with the machine and the date.
# Bounded: each wrk run lasts DURATION seconds.
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-50}
THREADS=${THREADS:-64}

if ! command -v wrk >/dev/null; then
	sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
	"${sudo_cmd[@]}" apt-get install -y -q wrk >/dev/null
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cc -O2 -o "$work/bare" bench/bare.c -lcivetweb -pthread
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done; echo "bench: $1 never answered" >&2; return 1; }

start_node() { # driver; sets node_port (no subshell: the PID must reach pids)
	local driver=$1 port; port=$(free_port)
	cat >"$work/$driver.cfg" <<CFG
service = { name = "bench"; port = $port; };
server = { threads = $THREADS; };
consul = { address = "http://127.0.0.1:1"; };
database = { driver = "$driver"; path = "$work/bench.db"; };
log = { level = "warn"; };
CFG
	"$bin" -c "$work/$driver.cfg" >"$work/$driver.log" 2>&1 &
	pids+=($!)
	wait_http "http://127.0.0.1:$port/health"
	curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
		-d '{"name":"Ada","email":"ada@example.com"}' "http://127.0.0.1:$port/users"
	node_port=$port
}

bare_port=$(free_port)
"$work/bare" "$bare_port" "$THREADS" & pids+=($!)
wait_http "http://127.0.0.1:$bare_port/users/1"
start_node sqlite
sqlite_port=$node_port
start_node memory
memory_port=$node_port

declare -A results
run() { # name url
	local out rps p99
	out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$2")
	rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
	results[$1]+="$rps $p99;"
	echo "bench: $1 round: $rps req/s, p99 $p99" >&2
}
for r in $(seq "$ROUNDS"); do
	run "bare civetweb, GET /users/1" "http://127.0.0.1:$bare_port/users/1"
	run "meshnode sqlite, GET /users/1" "http://127.0.0.1:$sqlite_port/users/1"
	run "meshnode memory, GET /users/1" "http://127.0.0.1:$memory_port/users/1"
	run "meshnode, GET /health" "http://127.0.0.1:$sqlite_port/health"
done
rss() { awk '/VmHWM/ {print $2/1024 " MB"}' "/proc/$1/status"; }

median() { tr ';' '\n' | awk 'NF' | sort -n -k1 | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.2f", v}'; }
base=$(median <<<"${results["bare civetweb, GET /users/1"]}" | awk '{print $1}')
{
	echo "# meshnode benchmark"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
	echo "- $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2), loopback, \`-t2 -c$CONNS -d${DURATION}s --latency\`, $ROUNDS interleaved rounds, medians by req/s; server.threads = $THREADS"
	echo "- wrk shares the two cores with the server: compare the ratios, not the absolute figures"
	echo
	echo "| target | req/s | p99 (ms) | vs bare civetweb |"
	echo "|---|---|---|---|"
	for k in "bare civetweb, GET /users/1" "meshnode sqlite, GET /users/1" "meshnode memory, GET /users/1" "meshnode, GET /health"; do
		m=$(median <<<"${results[$k]}")
		rps=${m%% *}
		p99=$(echo "${m##* }" | to_ms)
		echo "| $k | $rps | $p99 | $(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.2f", a/b}') |"
	done
	echo
	echo "Peak RSS after the run: bare $(rss "${pids[0]}"), meshnode sqlite $(rss "${pids[1]}"), meshnode memory $(rss "${pids[2]}")."
} >bench/RESULTS.md
cat bench/RESULTS.md
