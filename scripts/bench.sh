#!/usr/bin/env bash
# `make bench`: wrk on loopback against meshnode (sqlite and memory stores)
# and a bare one-write civetweb handler, interleaved in one run, medians of
# ROUNDS rounds; then peer calls against a Consul dev agent and two users
# nodes, three ways side by side (bench/peer_modes.c: meshnode's discovery,
# a fixed address, a Consul query per call) and POST /orders end to end.
# Writes bench/RESULTS.md with the machine and the date. Bounded: each wrk
# run lasts DURATION seconds, each peer mode DURATION/2. Then the hostile-
# connection part (bench/hostile.sh: idle and slow connections against the
# shipped defaults, beside bare civetweb; about 4-5 minutes; HOSTILE=0 skips
# it), which appends its section to bench/RESULTS.md.
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
cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude $(pkg-config --cflags libcurl) -o "$work/peer_modes" \
	bench/peer_modes.c "$(dirname "$bin")/libmeshnode.a" \
	-lcivetweb -lcurl -ljansson -lconfig -lsqlite3 -lm -pthread
consul=$(scripts/deps.sh | tail -n1)
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
rss_bare=$(rss "${pids[0]}") rss_sqlite=$(rss "${pids[1]}") rss_memory=$(rss "${pids[2]}")

# ---- peer calls: a dev agent, two users nodes sharing a file, one orders node
chttp=$(free_port)
caddr=http://127.0.0.1:$chttp
setsid "$consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -http-port "$chttp" \
	-dns-port -1 -grpc-port -1 -serf-lan-port "$(free_port)" -serf-wan-port "$(free_port)" \
	-server-port "$(free_port)" >"$work/consul.log" 2>&1 &
pids+=($!)
wait_http "$caddr/v1/status/leader"
mesh_node() { # name modules; sets node_port
	local port; port=$(free_port)
	cat >"$work/$1-$port.cfg" <<CFG
service = { name = "$1"; port = $port; modules = [ $2 ]; };
server = { threads = $THREADS; };
consul = { address = "$caddr"; check_interval_ms = 1000; check_timeout_ms = 1000; };
database = { path = "$work/mesh-$1.db"; };
log = { level = "warn"; };
CFG
	"$bin" -c "$work/$1-$port.cfg" >"$work/$1-$port.log" 2>&1 &
	pids+=($!)
	wait_http "http://127.0.0.1:$port/health"
	node_port=$port
}
mesh_node users '"users"'; users1=$node_port
mesh_node users '"users"'
mesh_node orders '"orders"'; orders_port=$node_port
curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
	-d '{"name":"Ada","email":"ada@example.com"}' "http://127.0.0.1:$users1/users"
for _ in $(seq 150); do
	[ "$(curl -sf "$caddr/v1/health/service/users?passing" | grep -o '"ServiceID"' | wc -l)" -ge 4 ] && break
	sleep 0.1
done
declare -A peer
for r in $(seq "$ROUNDS"); do
	while read -r mode cps p50 p99 fails; do
		peer[$mode]+="$cps $p50 $p99 $fails;"
		echo "bench: peer $mode round: $cps calls/s, p50 $p50 ms, p99 $p99 ms, $fails failed" >&2
	done < <("$work/peer_modes" "$caddr" "http://127.0.0.1:$users1/users/1" 8 $((DURATION / 2 > 0 ? DURATION / 2 : 1)))
	out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/post_order.lua "http://127.0.0.1:$orders_port/orders")
	results["meshnode orders, POST /orders"]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "99%" {print $2}' <<<"$out");"
	grep -q "Non-2xx" <<<"$out" && echo "bench: POST /orders had non-2xx answers" >&2
done
consul_requests=$(curl -sf "http://127.0.0.1:$orders_port/metrics" | awk '/^meshnode_consul_requests_total\{op="health_watch"/ {s+=$2} END {print s+0}')
orders_done=$(curl -sf "http://127.0.0.1:$orders_port/metrics" | awk '/^http_requests_total\{method="POST",endpoint="\/orders",status="201"/ {s+=$2} END {print s+0}')

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
	echo "Peak RSS after the run: bare $rss_bare, meshnode sqlite $rss_sqlite, meshnode memory $rss_memory."
	echo
	echo "## Peer calls through Consul discovery"
	echo
	echo "A Consul 1.8.7 dev agent, two users nodes (one SQLite file), one orders node. The"
	echo "user check (\`GET /users/1\` on a users instance) made three ways in one process,"
	echo "8 threads, keep-alive, $((DURATION / 2 > 0 ? DURATION / 2 : 1)) s per way per round, medians of $ROUNDS rounds (bench/peer_modes.c):"
	echo
	echo "| way | calls/s | p50 (ms) | p99 (ms) | failed | vs fixed address |"
	echo "|---|---|---|---|---|---|"
	fixed=$(median <<<"${peer[fixed]}" | awk '{print $1}')
	for k in discovery fixed per_call; do
		m=$(median <<<"${peer[$k]}")
		read -r cps p50 p99 fails <<<"$m"
		case $k in
		discovery) label="meshnode: resolver snapshot + peer client" ;;
		fixed) label="a fixed address, no discovery" ;;
		per_call) label="a Consul health query per call (reference design)" ;;
		esac
		echo "| $label | $cps | $p50 | $p99 | $fails | $(awk -v a="$cps" -v b="$fixed" 'BEGIN {printf "%.2f", a/b}') |"
	done
	echo
	m=$(median <<<"${results["meshnode orders, POST /orders"]}")
	echo "End to end, \`POST /orders\` on the orders node (user check through discovery, then a"
	echo "SQLite insert), wrk \`-c$CONNS\`: ${m%% *} req/s, p99 $(echo "${m##* }" | to_ms) ms. The orders node"
	echo "made $consul_requests health_watch requests to Consul for $orders_done orders."
} >bench/RESULTS.md
cat bench/RESULTS.md

# ---- hostile connections: its own agent and nodes, with nothing above left running
cleanup
trap - EXIT
if [ "${HOSTILE:-1}" != 0 ]; then
	bench/hostile.sh "$bin"
fi
