#!/usr/bin/env bash
# Discovery through blocking health queries against discovery through
# Consul's DNS interface (issue 13, point 4), side by side in one run. Part
# of `make bench` (DNS=0 skips it); also runs alone:
#   bench/dns_vs_http.sh [build/meshnode]
# A Consul dev agent with its DNS port on, two users nodes (one SQLite
# file), two orders nodes that differ only in peers.users.discovery
# ("http", "dns"). Then, ROUNDS rounds, the order of the two swapped every
# round:
#  1. calls: wrk -t2 -cCONNS -dSECS POST /orders on each orders node;
#  2. a new instance's first call: a third users node starts while a light
#     stream of orders (wrk -c2) runs on one orders node; the time from its
#     registration (passing at once: the node registers its check passing)
#     to the first GET /users/{id} it answers, both read from its own log
#     (debug level: a line per request, with the time in ms); the node
#     stops before the next.
# The users nodes have 256 threads: civetweb keeps a thread per kept-alive
# connection, and an orders node keeps up to 64 to each users node; with
# 64 threads, whichever orders node came second was short of users
# threads (0.53x the first in one run, whatever its discovery).
# Medians; writes the "## Discovery: blocking queries and DNS" section of
# bench/RESULTS.md. About 2 minutes. Everything started here is stopped by
# PID on exit (bench/lib.sh).
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
ROUNDS=${ROUNDS:-5}
SECS=${DNS_SECONDS:-5}
CONNS=${CONNS:-50}
py=/usr/bin/python3
t_begin=$(date +%s)

. bench/lib.sh
bench_need wrk wrk
consul=$(scripts/deps.sh | tail -n1)
consul_dev_start "$consul" dns

for _ in 1 2; do
	mesh_node_start users '"users"' sqlite warn 256
done
curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
	-d '{"name":"Ada","email":"ada@example.com"}' "http://127.0.0.1:$node_port/users"
passing() { curl -sf "$caddr/v1/health/service/users?passing=1" | $py -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
for _ in $(seq 150); do [ "$(passing)" = 2 ] && break; sleep 0.1; done

declare -A oport
for mode in http dns; do
	port=$(free_port)
	cat >"$work/orders-$mode.cfg" <<CFG
service = { name = "orders"; port = $port; modules = [ "orders" ]; };
server = { threads = 64; };
consul = { address = "$caddr"; dns_address = "$cdns"; check_interval_ms = 1000; check_timeout_ms = 1000; };
database = { driver = "memory"; };
log = { level = "warn"; };
peers = { users = { discovery = "$mode"; }; };
CFG
	"$bin" -c "$work/orders-$mode.cfg" >"$work/orders-$mode.log" 2>&1 &
	pids+=($!)
	wait_http "http://127.0.0.1:$port/health"
	oport[$mode]=$port
	# the first call follows the service; its view then has both
	curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
		-d '{"user_id":1,"product":"book","quantity":1}' "http://127.0.0.1:$port/orders"
done

user_gets() { # PORT: GET /users/{id} a users node answered
	curl -sf "http://127.0.0.1:$1/metrics" |
		awk '/^http_requests_total\{/ && /method="GET"/ && /endpoint="\/users\/\{id\}"/ {s += $NF} END {print s + 0}'
}
view_size() { curl -sf "http://127.0.0.1:${oport[$1]}/peers/users" | $py -c 'import json,sys; print(len(json.load(sys.stdin)["instances"]))'; }

declare -A calls first this
pair=""
for r in $(seq "$ROUNDS"); do
	order="http dns"
	[ $((r % 2)) = 0 ] && order="dns http"
	for mode in $order; do
		out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s bench/post_order.lua \
			"http://127.0.0.1:${oport[$mode]}/orders" 2>&1)
		rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
		p99=$(awk '$1 == "99%" {print $2}' <<<"$out" | bench_ms)
		non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
		calls[$mode]+="$rps $p99 ${non2xx:-0};"
		this[$mode]=$rps
		echo "dns_vs_http: round $r $mode: $rps req/s, p99 $p99 ms, non-2xx ${non2xx:-0}" >&2
	done
	pair+="$(awk -v a="${this[dns]}" -v b="${this[http]}" 'BEGIN {printf "%.2f", a / b}') (${this[http]%.*}/${this[dns]%.*});"
	for mode in $order; do
		wrk -t1 -c2 -d20s -s bench/post_order.lua "http://127.0.0.1:${oport[$mode]}/orders" \
			>/dev/null 2>&1 &
		load=$!
		mesh_node_start users '"users"' sqlite debug 256
		new=$node_port
		newpid=$node_pid
		for _ in $(seq 150); do
			[ "$(user_gets "$new")" != 0 ] && break
			sleep 0.1
		done
		kill "$load" 2>/dev/null || true
		wait "$load" 2>/dev/null || true
		ms=$($py - "$work/users-$new.log" <<'PY'
import datetime, json, sys
reg = first = None
for line in open(sys.argv[1], errors="replace"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    t = datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    if reg is None and e["msg"].startswith("registered service"):
        reg = t
    if reg is not None and first is None and e["msg"].startswith("GET /users/"):
        first = t
print("%.0f" % ((first - reg).total_seconds() * 1000) if reg and first else "n/a")
PY
)
		first[$mode]+="$ms;"
		echo "dns_vs_http: round $r $mode: new instance's first call ${ms} ms after it passed" >&2
		bench_stop "$newpid"
		for _ in $(seq 200); do
			[ "$(passing)" = 2 ] && [ "$(view_size http)" = 2 ] && [ "$(view_size dns)" = 2 ] && break
			sleep 0.05
		done
	done
done

med() { tr ';' '\n' | awk 'NF && $1 != "n/a"' | sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "n/a")}'; }
read -r hr hp hn <<<"$(bench_median <<<"${calls[http]}")"
read -r dr dp dn <<<"$(bench_median <<<"${calls[dns]}")"
hf=$(med <<<"${first[http]}")
df=$(med <<<"${first[dns]}")
ratio=$(med <<<"$pair")
watches=$(curl -sf "http://127.0.0.1:${oport[http]}/metrics" |
	awk '/^meshnode_consul_requests_total\{/ && /op="health_watch"/ {s += $NF} END {print s + 0}')
sec=$(mktemp)
{
	echo "## Discovery: blocking queries and DNS"
	echo
	echo "- date: $(bench_stamp)"
	echo "- machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r); shared with other work, loopback only"
	echo "- bench/dns_vs_http.sh: a Consul $("$consul" version | head -n1 | awk '{print $2}') dev agent with its DNS port on, two users nodes (one SQLite file), two orders nodes (memory store, server.threads 64) that differ only in \`peers.users.discovery\`; $ROUNDS rounds, the order swapped each round, medians; $(($(date +%s) - t_begin)) s in all"
	echo "- calls: wrk \`-t2 -c$CONNS -d${SECS}s\` POST /orders (the user check through discovery, then the insert); a new instance's first call: a third users node started under a light stream of orders (wrk -c2), from its registration (passing at once) to the first GET /users/{id} it answered, both from its log (ms); users nodes with 256 threads (see the script)"
	echo
	echo "| discovery | POST /orders req/s | p99 (ms) | non-2xx | new instance's first call (ms) |"
	echo "|---|---|---|---|---|"
	echo "| http (blocking queries) | $hr | $hp | $hn | $hf |"
	echo "| dns (SRV over TCP, every second) | $dr | $dp | $dn | $df |"
	echo
	echo "dns / http calls/s, median of the rounds' ratios: **$ratio** (each round: $pair"
	echo "ratio (http/dns req/s)). Each round's first-call times (ms), http: ${first[http]} dns: ${first[dns]}"
	echo "The http orders node made $watches health_watch requests in all; the dns one asks the"
	echo "agent's DNS once a second whatever the load, and sees a change at its next lookup."
} >"$sec"
results_section "$sec" "The mesh at scale"
rm -f "$sec"
cat <<EOF >&2
dns_vs_http: http $hr req/s (p99 $hp ms), first call $hf ms; dns $dr req/s (p99 $dp ms), first call $df ms; ratio $ratio
EOF
