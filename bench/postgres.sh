#!/usr/bin/env bash
# PostgreSQL beside SQLite (issue 11, point 4), standalone or from make bench:
#     bench/postgres.sh [build/meshnode]
# A throwaway PostgreSQL 15 started the way the tests start theirs
# (bench/pg_serve.py over tests/integration/pgserver.py: a free port,
# fsync off), one users node on it and one on SQLite, same settings
# otherwise (server.threads $THREADS, log level warn, no Consul agent).
# wrk measures GET /users/1 and POST /users (bench/post_user.lua: a new
# email every request) on both, interleaved, ROUNDS rounds of DURATION
# seconds; medians by req/s. Writes the section "PostgreSQL beside SQLite"
# of bench/RESULTS.md (results_section) and prints it. Bounded: every wait
# has a count; about ROUNDS x 4 x DURATION seconds plus a few.
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-50}
THREADS=${THREADS:-64}
[ -x "$bin" ] || { echo "postgres: build first (make): $bin" >&2; exit 2; }

. bench/lib.sh
bench_need wrk wrk
say() { printf 'postgres: %s\n' "$*" >&2; }

# ---- the server
/usr/bin/python3 bench/pg_serve.py "$work/pg.info" bench 2>"$work/pg_serve.log" &
pg_pid=$!
pids+=("$pg_pid")
for _ in $(seq 600); do
	[ -s "$work/pg.info" ] && break
	kill -0 "$pg_pid" 2>/dev/null || { say "the server did not start: $(cat "$work/pg_serve.log")"; exit 1; }
	sleep 0.05
done
[ -s "$work/pg.info" ] || { say "the server was not ready within 30 s"; exit 1; }
read -r pg_host pg_port pg_start <"$work/pg.info"
say "PostgreSQL 15 on $pg_host:$pg_port, ready ${pg_start} s after spawn"

start_node() { # driver 'database settings'; sets node_port (no subshell: the PID must reach pids)
	local port
	port=$(free_port)
	cat >"$work/$1.cfg" <<CFG
service = { name = "bench-$1"; port = $port; };
server = { threads = $THREADS; };
consul = { address = "http://127.0.0.1:1"; };
database = { driver = "$1"; $2 };
log = { level = "warn"; };
CFG
	"$bin" -c "$work/$1.cfg" >"$work/$1.log" 2>&1 &
	pids+=($!)
	wait_http "http://127.0.0.1:$port/health"
	for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$port/ready" && break; sleep 0.05; done
	curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
		-d '{"name":"Ada","email":"ada@example.com"}' "http://127.0.0.1:$port/users" ||
		{ say "$1: the first POST /users failed: $(tail -n 5 "$work/$1.log")"; exit 1; }
	node_port=$port
}
start_node sqlite "path = \"$work/bench.db\";"
sqlite_port=$node_port
start_node postgres "host = \"$pg_host\"; port = $pg_port; user = \"bench\"; password = \"bench\"; name = \"bench\";"
postgres_port=$node_port
pool=$(curl -sf "http://127.0.0.1:$postgres_port/config" |
	/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["settings"]["database.pool_size"]["value"])' 2>/dev/null || echo "?")

declare -A results
run() { # name url [wrk options...] [-- script args...]
	local name=$1 url=$2 out rps p99 non2xx opts=()
	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		opts+=("$1")
		shift
	done
	# wrk takes the URL before the script's arguments: <options> <url> -- <args>
	out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "${opts[@]}" "$url" "$@")
	rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	results[$name]+="$rps $p99 ${non2xx:-0};"
	say "$name round: $rps req/s, p99 $p99, non-2xx ${non2xx:-0}"
}
for r in $(seq "$ROUNDS"); do
	run "GET /users/1, SQLite" "http://127.0.0.1:$sqlite_port/users/1"
	run "GET /users/1, PostgreSQL" "http://127.0.0.1:$postgres_port/users/1"
	run "POST /users, SQLite" "http://127.0.0.1:$sqlite_port/users" -s bench/post_user.lua -- "r$r"
	run "POST /users, PostgreSQL" "http://127.0.0.1:$postgres_port/users" -s bench/post_user.lua -- "r$r"
done
rows_pg=$(curl -sf "http://127.0.0.1:$postgres_port/metrics" | awk '/^http_requests_total\{method="POST",endpoint="\/users",status="201"/ {s+=$2} END {print s+0}')

section=$work/section.md
{
	echo "## PostgreSQL beside SQLite"
	echo
	echo "- date: $(bench_stamp)"
	echo "- machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1); shared with other work, loopback only"
	echo "- bench/postgres.sh: PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}') started as the tests start it (fsync and full_page_writes off, a copy of one initdb, ready ${pg_start} s after spawn), over TCP on loopback; one users node on it (database.pool_size $pool) and one on SQLite (WAL), no Consul agent, server.threads $THREADS, log level warn"
	echo "- $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2), \`-t2 -c$CONNS -d${DURATION}s --latency\`, $ROUNDS interleaved rounds, medians by req/s; POST /users sends a new email every request (bench/post_user.lua); the PostgreSQL node answered $rows_pg POST /users with 201"
	echo "- wrk, the node and PostgreSQL share the two cores: compare the ratios, not the absolute figures"
	echo
	echo "| request | SQLite req/s | SQLite p99 (ms) | PostgreSQL req/s | PostgreSQL p99 (ms) | PostgreSQL / SQLite | non-2xx (SQLite, PostgreSQL) |"
	echo "|---|---|---|---|---|---|---|"
	for req in "GET /users/1" "POST /users"; do
		read -r s_rps s_p99 s_bad <<<"$(bench_median <<<"${results["$req, SQLite"]}")"
		read -r p_rps p_p99 p_bad <<<"$(bench_median <<<"${results["$req, PostgreSQL"]}")"
		echo "| \`$req\` | $s_rps | $(bench_ms <<<"$s_p99") | $p_rps | $(bench_ms <<<"$p_p99") | $(awk -v a="$p_rps" -v b="$s_rps" 'BEGIN {printf "%.2f", a/b}') | $s_bad, $p_bad |"
	done
} >"$section"
results_section "$section" "The mesh at scale"
cat "$section"
