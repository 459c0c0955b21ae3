#!/usr/bin/env bash
# The mesh at scale (issue 9): what one peer call costs the node as the mesh
# grows. Part of `make bench` (MESH=0 skips it); also runs alone:
#   bench/mesh_scale.sh [build/meshnode]
# A Consul dev agent on free ports and two users nodes (memory store), then:
#  1. discovery vs fixed addresses: bench/peer_modes.c, the resolver snapshot
#     + peer client beside plain GETs spread round robin over the same two
#     users nodes (and a Consul query per call), ROUNDS rounds, medians;
#  2. a CPU profile of the discovery way (bench/profile_peer.sh) with 2
#     instances and with PROFILE_AT (PROFILE=0 skips both);
#  3. an orders node under ORDERS_SECONDS of POST /orders with 2 instances;
#  4. for N in MESH_N: N passing instances of 'users' (the two real ones and
#     N-2 that bench/mesh_load.py registers on external nodes, pointing at
#     them); bench/mesh_scale.c calls through the resolver + peer client
#     from 8 threads for MESH_SECONDS s per point, in ROUNDS rounds going up,
#     down, up (medians); the first time 1000 and 10000 come, the health
#     answer's size and parse time (median of 10);
#  5. the orders node again with the largest N: peak RSS, and the resolver's
#     "published in" time when it logs one.
# Writes (or replaces) the "## The mesh at scale" section of bench/RESULTS.md,
# before "## Hostile connections". Bounded: each point stops by its clock
# (calls still inside the peer client are cut by the process's exit), wrk by
# its own; about 4 minutes with the defaults. Everything started here is
# stopped by PID on exit (bench/lib.sh).
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
ROUNDS=${ROUNDS:-3}
MESH_N=${MESH_N:-2 100 1000 10000}
MESH_SECONDS=${MESH_SECONDS:-3}
PEER_SECONDS=${PEER_SECONDS:-4}
PEER_ROUNDS=${PEER_ROUNDS:-5}
ORDERS_SECONDS=${ORDERS_SECONDS:-20}
PROFILE=${PROFILE:-1}
PROFILE_AT=${PROFILE_AT:-1000}
CONNS=${CONNS:-50}
py=/usr/bin/python3
t_begin=$(date +%s)

. bench/lib.sh
bench_need wrk wrk
bench_cc "$work/peer_modes" bench/peer_modes.c bench/peer_api.c
bench_cc "$work/mesh_scale" bench/mesh_scale.c bench/peer_api.c
consul=$(scripts/deps.sh | tail -n1)
consul_dev_start "$consul"

users=() ports=()
for _ in 1 2; do
	mesh_node_start users '"users"' memory warn
	ports+=("$node_port")
	users+=("http://127.0.0.1:$node_port/users/1")
	curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
		-d '{"name":"Ada","email":"ada@example.com"}' "http://127.0.0.1:$node_port/users"
done
urls=$(IFS=,; echo "${users[*]}")
port_list=$(IFS=,; echo "${ports[*]}")
passing() { curl -sf "$caddr/v1/health/service/users?passing=1" | $py -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
for _ in $(seq 150); do [ "$(passing)" = 2 ] && break; sleep 0.1; done

extra=0 # instances mesh_load.py has registered
mesh_to() { # N: N passing instances in all; sets took (seconds)
	local want=$(($1 - 2))
	took=$($py bench/mesh_load.py "$caddr" "$extra" "$want" "$port_list")
	extra=$want
}

# ---- 1, 2: the three ways with the two users nodes only
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
meets() { awk -v a="$1" -v t="$2" 'BEGIN {print (a != "n/a" && a + 0 >= t) ? "met" : "**not met**"}'; }

# PEER_ROUNDS rounds, the order of discovery and fixed swapped every round
# (drift on a shared machine falls on both); each round's discovery/fixed
# ratio is kept, of calls/s and of the client's CPU per call
declare -A peer
pair_cps="" pair_cpu=""
for r in $(seq "$PEER_ROUNDS"); do
	order=discovery,fixed,per_call
	[ $((r % 2)) = 0 ] && order=fixed,discovery,per_call
	declare -A this=()
	while read -r mode cps p50 p99 fails cpu; do
		peer[$mode]+="$cps $p50 $p99 $fails $cpu;"
		this[$mode]="$cps $cpu"
		echo "mesh: peer $mode round $r: $cps calls/s, p50 $p50 ms, p99 $p99 ms, $fails failed, $cpu us CPU a call" >&2
	done < <("$work/peer_modes" "$caddr" "$urls" 8 "$PEER_SECONDS" "$order")
	read -r dc dcpu <<<"${this[discovery]:-0 0}"
	read -r fc fcpu <<<"${this[fixed]:-0 0}"
	pair_cps+="$(ratio "$dc" "$fc");"
	pair_cpu+="$(ratio "$fcpu" "$dcpu");"
done
profile() { # N: the profile section for the mesh as it is
	echo "#### With $1 passing instances"
	echo
	bench/profile_peer.sh "$work/peer_modes" "$caddr" "$urls" 4 "$(dirname "$bin")/libmeshnode.a" ||
		echo "(bench/profile_peer.sh failed)"
	echo
}
[ "$PROFILE" = 0 ] || profile 2 >"$work/profile-2.md"

# ---- 3, 5: an orders node under POST /orders; sets orders_line
orders_run() { # N
	local out rps p99 non2xx timeouts hwm rss published
	mesh_node_start orders '"orders"' sqlite info
	# the first order starts the node's watch of 'users'; load starts once its view holds N
	curl -s -o /dev/null -m 30 -XPOST -H 'Content-Type: application/json' \
		-d '{"user_id":1,"product":"book","quantity":1}' "http://127.0.0.1:$node_port/orders" || true
	for _ in $(seq 300); do
		[ "$(curl -sf "http://127.0.0.1:$node_port/metrics" |
			awk '/^meshnode_peer_instances\{service="users"\}/ {print $2}')" = "$1" ] && break
		sleep 0.2
	done
	out=$(wrk -t2 -c"$CONNS" -d"${ORDERS_SECONDS}s" --latency -s bench/post_order.lua \
		"http://127.0.0.1:$node_port/orders")
	hwm=$(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$node_pid/status")
	rss=$(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$node_pid/status")
	rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out" | bench_ms)
	[ "${rps:-0}" != 0 ] || p99=n/a
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	timeouts=$(awk '/Socket errors/ {print $NF}' <<<"$out")
	published=$(grep -o 'published in [0-9.]* ms' "$work/orders-$node_port.log" | tail -n1 || true)
	orders_line="| $1 | ${rps:-0} | ${p99:-n/a} | ${non2xx:-0} | ${timeouts:-0} | $hwm | $rss | ${published:+${published#published in }} |"
	echo "mesh: orders with $1 instances: $rps req/s, p99 $p99, VmHWM $hwm, VmRSS $rss${published:+, $published}" >&2
	bench_stop "$node_pid"
}
orders_run 2
orders_rows=$orders_line

# ---- 4: the per-N rounds
declare -A point parse loaded
read -ra ns <<<"$MESH_N"
for r in $(seq "$ROUNDS"); do
	order=("${ns[@]}")
	if [ $((r % 2)) = 0 ]; then
		order=()
		for ((i = ${#ns[@]} - 1; i >= 0; i--)); do order+=("${ns[i]}"); done
	fi
	for n in "${order[@]}"; do
		mesh_to "$n"
		[ -n "${loaded[$n]:-}" ] || loaded[$n]=$took
		line=$("$work/mesh_scale" calls "$caddr" "$n" 8 "$MESH_SECONDS") || line=
		if [ -n "$line" ]; then
			point[$n]+="${line#* };"
			echo "mesh: N=$n round $r: $line" >&2
		else
			echo "mesh: N=$n round $r: no result" >&2
		fi
		if [ "$r" = 1 ] && { [ "$n" = 1000 ] || [ "$n" = 10000 ]; }; then
			parse[$n]=$("$work/mesh_scale" parse "$caddr" 10 || true)
			echo "mesh: N=$n health answer: ${parse[$n]}" >&2
		fi
		if [ "$r" = 1 ] && [ "$PROFILE" != 0 ] && [ "$n" = "$PROFILE_AT" ]; then
			profile "$n" >"$work/profile-$n.md"
		fi
	done
done
max=${ns[0]}
for n in "${ns[@]}"; do [ "$n" -gt "$max" ] && max=$n; done
mesh_to "$max"
orders_run "$max"
orders_rows+=$'\n'$orders_line

# ---- the section
section=$work/section.md
base=$(bench_median <<<"${point[2]:-}" | awk '{print $1}')
{
	echo "## The mesh at scale"
	echo
	echo "- date: $(bench_stamp)"
	echo "- machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r); shared with other work, loopback only"
	echo "- a Consul $("$consul" version | head -n1 | awk '{print $2}') dev agent, two users nodes (memory store, server.threads 64); bench/mesh_scale.sh, $(($(date +%s) - t_begin)) s in all"
	echo
	echo "### Per-call cost against the number of passing instances"
	echo
	echo "N passing instances of \`users\`: the two real users nodes and N-2 registered in the catalog"
	echo "by bench/mesh_load.py (\`/v1/txn\`, 31 instances per external node, each with a passing"
	echo "service check, pointing at the two real nodes in turn). One process (bench/mesh_scale.c):"
	echo "resolver + peer client as the node builds them, 8 threads calling \`GET /users/1\`, keep-alive;"
	echo "per point: wait for the snapshot to hold N, one warm-up call, 0.5 s not counted, $MESH_SECONDS s"
	echo "counted. $ROUNDS rounds over the Ns going up, down, up; the row of the median round by calls/s."
	echo "A call still running when the window closes is cut off (unfinished); a percentile that"
	echo "falls on one is shown as \">\" the time it had run."
	echo
	echo "| passing instances | calls/s | p50 (ms) | p99 (ms) | failed | unfinished | vs 2 instances | first call (ms) | snapshot ready (ms) | loaded in (s) |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	for n in "${ns[@]}"; do
		read -r cps p50 p99 fails unfinished ready warm <<<"$(bench_median <<<"${point[$n]:-}")"
		echo "| $n | ${cps:-n/a} | ${p50:-} | ${p99:-} | ${fails:-} | ${unfinished:-} | $(ratio "${cps:-0}" "${base:-0}") | ${warm:-} | ${ready:-} | ${loaded[$n]:-} |"
	done
	echo
	top_cps=$(bench_median <<<"${point[$max]:-}" | awk '{print $1}')
	r_max=$(ratio "${top_cps:-0}" "${base:-0}")
	echo "calls/s with $max instances / calls/s with 2: **$r_max** (target ≥ 0.90: $(meets "$r_max" 0.90))."
	echo
	echo "The health answer (\`GET /v1/health/service/users?passing\` from the dev agent, which"
	echo "pretty-prints; fetched once), parsed by \`consul_health_parse\`, median of 10:"
	echo
	echo "| passing instances | body | parse, median (ms) | parse, fastest (ms) |"
	echo "|---|---|---|---|"
	for n in 1000 10000; do
		[ -n "${parse[$n]:-}" ] || continue
		read -r pn bytes med fastest <<<"${parse[$n]}"
		echo "| $pn | $bytes bytes ($(awk -v b="$bytes" 'BEGIN {printf "%.1f MB", b / 1e6}')) | $med | $fastest |"
	done
	echo
	echo "An orders node (service.modules orders, SQLite, log level info, server.threads 64) following"
	echo "\`users\`, after ${ORDERS_SECONDS} s of \`POST /orders\` (wrk \`-t2 -c$CONNS\`, bench/post_order.lua); RSS from"
	echo "/proc/PID/status. \"Published in\": what the resolver logs as \`(parsed and published in X ms)\`"
	echo "for its last snapshot, empty when this build logs no such line."
	echo
	echo "| passing instances | POST /orders req/s | p99 (ms) | non-2xx | wrk timeouts | peak RSS (VmHWM) | RSS after (VmRSS) | published in |"
	echo "|---|---|---|---|---|---|---|---|"
	echo "$orders_rows"
	echo
	echo "### Discovery vs fixed addresses, same users processes"
	echo
	echo "The user check (\`GET /users/1\`) three ways in one process (bench/peer_modes.c), 8 threads,"
	echo "keep-alive, $PEER_SECONDS s per way per round, $PEER_ROUNDS rounds with the order of discovery and"
	echo "fixed swapped every round, the two users nodes only. Discovery spreads over both through"
	echo "the resolver's snapshot; the fixed way goes round robin over the same two URLs in each"
	echo "thread; per_call asks the agent before every call. \"CPU a call\" is the client process's"
	echo "user + system time per call (getrusage), steadier than calls/s on a shared machine."
	echo
	echo "| way | calls/s (median) | p50 (ms) | p99 (ms) | failed | CPU a call (us) | medians vs fixed |"
	echo "|---|---|---|---|---|---|---|"
	fixed=$(bench_median <<<"${peer[fixed]:-}" | awk '{print $1}')
	for k in discovery fixed per_call; do
		read -r cps p50 p99 fails cpu <<<"$(bench_median <<<"${peer[$k]:-}")"
		case $k in
		discovery) label="meshnode: resolver snapshot + peer client" ;;
		fixed) label="fixed addresses, round robin over the two users nodes" ;;
		per_call) label="a Consul health query per call (reference design)" ;;
		esac
		echo "| $label | ${cps:-n/a} | ${p50:-} | ${p99:-} | ${fails:-} | ${cpu:-} | $(ratio "${cps:-0}" "${fixed:-0}") |"
	done
	echo
	r_disc=$(tr ';' '\n' <<<"$pair_cps" | awk 'NF' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	r_cpu=$(tr ';' '\n' <<<"$pair_cpu" | awk 'NF' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	echo "discovery / fixed, calls/s, per round: $(tr ';' ' ' <<<"$pair_cps");"
	echo "median **$r_disc** (target ≥ 0.95: $(meets "$r_disc" 0.95)). Fixed's CPU a call / discovery's,"
	echo "per round: $(tr ';' ' ' <<<"$pair_cpu"); median **$r_cpu**."
	if [ "$PROFILE" != 0 ]; then
		echo
		echo "### Where a discovery call's CPU time goes"
		echo
		echo "bench/profile_peer.sh: \`perf record\` on bench/peer_modes in discovery mode only (the"
		echo "client process: the users nodes and the agent are not in it)."
		echo
		cat "$work/profile-2.md"
		[ ! -f "$work/profile-$PROFILE_AT.md" ] || cat "$work/profile-$PROFILE_AT.md"
	fi
} >"$section"

results_section "$section" "Hostile connections"
cat "$section"
