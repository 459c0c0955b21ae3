#!/usr/bin/env bash
# `make bench`: wrk on loopback against meshnode (sqlite and memory stores)
# and a bare one-write civetweb handler, interleaved in one run, medians of
# ROUNDS rounds; then POST /orders end to end against a Consul dev agent,
# two users nodes and an orders node. Writes bench/RESULTS.md with the
# machine and the date, keeping the sections the parts below own. Bounded:
# each wrk run lasts DURATION seconds. Then PostgreSQL beside SQLite
# (bench/postgres.sh: GET /users/1 and POST /users on a throwaway
# PostgreSQL 15 and on SQLite, interleaved; about 2 minutes; PG=0 skips it),
# the mesh at scale (bench/
# mesh_scale.sh: peer calls through discovery with 2 to 10,000 passing
# instances, discovery vs fixed addresses, a CPU profile, an orders node's
# RSS; about 4 minutes; MESH=0 skips it), discovery through blocking queries
# against DNS (bench/dns_vs_http.sh: calls/s and a new instance's first
# call; about a minute; DNS=0 skips it), the KV flood (bench/kv_flood.sh:
# RSS and reload time with 100,000 and 10,000 keys; one to two minutes;
# KVFLOOD=0 skips it) and the hostile-connection part
# (bench/hostile.sh: idle and slow connections against the shipped
# defaults, beside bare civetweb; about 4-5 minutes; HOSTILE=0 skips it),
# each of which writes its own section of bench/RESULTS.md.
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-50}
THREADS=${THREADS:-64}

. bench/lib.sh
bench_need wrk wrk
cc -O2 -o "$work/bare" bench/bare.c -lcivetweb -pthread
consul=$(scripts/deps.sh | tail -n1)

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
rss_bare=$(rss "${pids[0]}") rss_sqlite=$(rss "${pids[1]}") rss_memory=$(rss "${pids[2]}")

# ---- POST /orders end to end: a dev agent, two users nodes sharing a file, one orders node
consul_dev_start "$consul"
mesh_node_start users '"users"' sqlite warn "$THREADS"; users1=$node_port
mesh_node_start users '"users"' sqlite warn "$THREADS"
mesh_node_start orders '"orders"' sqlite warn "$THREADS"; orders_port=$node_port
curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
	-d '{"name":"Ada","email":"ada@example.com"}' "http://127.0.0.1:$users1/users"
for _ in $(seq 150); do
	[ "$(curl -sf "$caddr/v1/health/service/users?passing" | grep -o '"ServiceID"' | wc -l)" -ge 4 ] && break
	sleep 0.1
done
for r in $(seq "$ROUNDS"); do
	out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/post_order.lua "http://127.0.0.1:$orders_port/orders")
	results["meshnode orders, POST /orders"]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "99%" {print $2}' <<<"$out");"
	grep -q "Non-2xx" <<<"$out" && echo "bench: POST /orders had non-2xx answers" >&2
done
consul_requests=$(curl -sf "http://127.0.0.1:$orders_port/metrics" | awk '/^meshnode_consul_requests_total\{op="health_watch"/ {s+=$2} END {print s+0}')
orders_done=$(curl -sf "http://127.0.0.1:$orders_port/metrics" | awk '/^http_requests_total\{method="POST",endpoint="\/orders",status="201"/ {s+=$2} END {print s+0}')

base=$(bench_median <<<"${results["bare civetweb, GET /users/1"]}" | awk '{print $1}')
# the sections bench/postgres.sh, bench/dns_vs_http.sh, bench/mesh_scale.sh,
# bench/kv_flood.sh and bench/hostile.sh own stay until they rewrite them
kept=$work/kept.md
touch "$kept"
[ ! -f bench/RESULTS.md ] || awk '/^## (PostgreSQL beside SQLite|Discovery: blocking queries and DNS|The mesh at scale|KV flood|Hostile connections)/ {keep = 1} keep' bench/RESULTS.md >"$kept"
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
		m=$(bench_median <<<"${results[$k]}")
		rps=${m%% *}
		p99=$(echo "${m##* }" | bench_ms)
		echo "| $k | $rps | $p99 | $(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.2f", a/b}') |"
	done
	echo
	echo "Peak RSS after the run: bare $rss_bare, meshnode sqlite $rss_sqlite, meshnode memory $rss_memory."
	echo
	echo "## Peer calls through Consul discovery"
	echo
	echo "A Consul $("$consul" version | head -n1 | awk '{print $2}') dev agent, two users nodes (one SQLite file), one orders node."
	m=$(bench_median <<<"${results["meshnode orders, POST /orders"]}")
	echo "End to end, \`POST /orders\` on the orders node (user check through discovery, then a"
	echo "SQLite insert), wrk \`-c$CONNS\`, medians of $ROUNDS rounds: ${m%% *} req/s, p99 $(echo "${m##* }" | bench_ms) ms. The orders node"
	echo "made $consul_requests health_watch requests to Consul for $orders_done orders."
	echo
	echo "The user check made three ways side by side (discovery, fixed addresses over the same"
	echo "users nodes, a Consul query per call) is in \"The mesh at scale\" below (bench/mesh_scale.sh)."
	if [ -s "$kept" ]; then
		echo
		cat "$kept"
	fi
} >"$work/results.md"
mv "$work/results.md" bench/RESULTS.md
cat bench/RESULTS.md

# ---- PostgreSQL beside SQLite, the mesh at scale, DNS against blocking
# queries, the KV flood, then hostile connections: each with its own servers
# and nodes, nothing above left running
bench_cleanup
trap - EXIT
if [ "${PG:-1}" != 0 ]; then
	bench/postgres.sh "$bin"
fi
if [ "${MESH:-1}" != 0 ]; then
	bench/mesh_scale.sh "$bin"
fi
if [ "${DNS:-1}" != 0 ]; then
	bench/dns_vs_http.sh "$bin"
fi
if [ "${KVFLOOD:-1}" != 0 ]; then
	kv_section=$(mktemp)
	bench/kv_flood.sh "$bin" >"$kv_section"
	results_section "$kv_section" "Hostile connections"
	rm -f "$kv_section"
fi
if [ "${HOSTILE:-1}" != 0 ]; then
	bench/hostile.sh "$bin"
fi
