#!/usr/bin/env bash
# meshnode against the reference design it grew from (issue 14): the Go
# users service of bench/goref (net/http, users in a map, POST /orders
# asking Consul's health endpoint on every call), bare civetweb
# (bench/bare.c) and meshnode on its shipped defaults, side by side in one
# run. Part of `make bench` (the first section of bench/RESULTS.md); also
# runs alone:
#   bench/vs_go.sh [build/meshnode]
# A Consul dev agent; then ROUNDS rounds, each with fresh processes:
#  1. start to passing: a Go users service, then a meshnode users node, each
#     timed from its spawn to Consul listing it as passing; idle RSS 3 s
#     later (before any request but Consul's);
#  2. a Go orders service and a meshnode orders node (shipped defaults but
#     for service.name and service.modules), bare civetweb with meshnode's
#     default thread count;
#  3. GET /users/1, GET /health, POST /orders (user 1, end to end) and
#     POST /users (a new email each request), each at CONNS_LIST (50 200)
#     connections: wrk -t2 -cN -dDURATION --latency, Go and meshnode one
#     after the other, the order of the two swapped every round; bare
#     civetweb on GET /users/1, and a meshnode users node on its memory
#     store (the store Go has; not the default) on GET and POST /users;
#  4. peak RSS (VmHWM) of each service: after GET /users/1, and at the
#     end (POST /users grows Go's map).
# Golang is Debian's golang-go, installed here when missing (not by
# `make test`); the build is offline (GOPROXY=off, the standard library
# only). Ratios are medians of the rounds' ratios. About 7 minutes with the
# defaults (3 rounds of 6 s runs). Everything started here is stopped by
# PID on exit (bench/lib.sh).
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6}
CONNS_LIST=${CONNS_LIST:-50 200}
py=/usr/bin/python3
t_begin=$(date +%s)

. bench/lib.sh
bench_need wrk wrk
bench_need go golang-go
export GOCACHE="$work/gocache" GOPATH="$work/gopath" GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
(cd bench/goref && go build -o "$work/goref" .)
cc -O2 -o "$work/bare" bench/bare.c -lcivetweb -pthread
consul=$(scripts/deps.sh | tail -n1)
consul_dev_start "$consul"
default_threads=$(bench_default_setting server.threads)
tsv=$work/results.tsv
: >"$tsv"
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$1" "$2" "$3" "$4" >>"$tsv"; }
rss_mb() { awk -v k="$2:" '$1 == k {printf "%.2f", $2/1024}' "/proc/$1/status"; }

# spawn_go NAME [USERS_SERVICE]: sets sport, spid, t0
spawn_go() {
	sport=$(free_port)
	t0=$(date +%s%N)
	PORT=$sport SERVICE_NAME=$1 USERS_SERVICE=${2:-gousers} CONSUL_HTTP_ADDR=$caddr \
		"$work/goref" >"$work/go-$1-$sport.log" 2>&1 &
	spid=$!
	pids+=("$spid")
}
# spawn_mesh NAME MODULE [DRIVER]: shipped defaults but for the port, the
# agent, the database file and (for orders) the name and module; sets
# sport, spid, t0
spawn_mesh() {
	sport=$(free_port)
	cat >"$work/$1-$sport.cfg" <<CFG
service = { name = "$1"; port = $sport; modules = [ "$2" ]; };
consul = { address = "$caddr"; };
database = { driver = "${3:-sqlite}"; path = "$work/$1-$round.db"; };
CFG
	t0=$(date +%s%N)
	"$bin" -c "$work/$1-$sport.cfg" >"$work/$1-$sport.log" 2>&1 &
	spid=$!
	pids+=("$spid")
}
# passing SERVICE TARGET: records the start to passing time (ms)
passing() {
	local ms
	ms=$($py bench/vs_go.py passing "$caddr" "$1" "$sport" "$t0")
	[ "$ms" != timeout ] || { echo "bench: $1 never passed in Consul" >&2; return 1; }
	record "start to passing" - "$2" "$ms"
	echo "bench: round $round: $2 $1 passing after $ms ms" >&2
}
add_user() { curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
	-d '{"name":"Ada","email":"ada@example.com"}' "http://127.0.0.1:$1/users"; }
wait_order() {
	for _ in $(seq 300); do
		curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
			-d '{"user_id":1,"product":"book","quantity":1}' "http://127.0.0.1:$1/orders" && return 0
		sleep 0.05
	done
	echo "bench: no order went through on port $1" >&2
	return 1
}
# load ROW CONNS TARGET URL [SCRIPT [SCRIPT_ARG]]
load() {
	local row=$1 c=$2 target=$3 url=$4 out rps p99 non2xx script=()
	[ -z "${5:-}" ] || script=(-s "$5" "$url" -- "${6:-}")
	[ -n "${5:-}" ] || script=("$url")
	out=$(wrk -t2 -c"$c" -d"${DURATION}s" --latency "${script[@]}")
	# 2xx answers per second: a service that answers errors fast
	# (Go's orders when Consul refuses it) gets no credit for them
	rps=$(awk '/Requests\/sec/ {r = $2} /requests in/ {n = $1} /Non-2xx/ {e = $NF}
		END {printf "%.2f", (n > 0 ? r * (n - e) / n : 0)}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out" | bench_ms)
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	record "$row" "$c" "$target" "$rps	$p99	${non2xx:-0}"
	echo "bench: round $round c$c $target $row: $rps 2xx/s, p99 $p99 ms, non-2xx ${non2xx:-0}" >&2
}

for round in $(seq "$ROUNDS"); do
	spawn_go gousers; go_users=$sport go_users_pid=$spid; passing gousers go
	spawn_mesh users users; mn_users=$sport mn_users_pid=$spid; passing users meshnode
	sleep 3
	record "idle RSS" - go "$(rss_mb "$go_users_pid" VmRSS)"
	record "idle RSS" - meshnode "$(rss_mb "$mn_users_pid" VmRSS)"
	record "idle RSS, anonymous" - go "$(rss_mb "$go_users_pid" RssAnon)"
	record "idle RSS, anonymous" - meshnode "$(rss_mb "$mn_users_pid" RssAnon)"
	spawn_mesh usersmem users memory; mn_mem=$sport mn_mem_pid=$spid
	spawn_go goorders gousers; go_orders=$sport go_orders_pid=$spid
	spawn_mesh orders orders; mn_orders=$sport mn_orders_pid=$spid
	bare_port=$(free_port)
	"$work/bare" "$bare_port" "$default_threads" &
	bare_pid=$!
	pids+=("$bare_pid")
	wait_http "http://127.0.0.1:$mn_mem/health"
	for p in "$go_users" "$mn_users" "$mn_mem"; do add_user "$p"; done
	wait_http "http://127.0.0.1:$bare_port/users/1"
	wait_http "http://127.0.0.1:$go_orders/health"
	wait_http "http://127.0.0.1:$mn_orders/health"
	wait_order "$go_orders"
	wait_order "$mn_orders"
	if [ $((round % 2)) = 1 ]; then order=(go meshnode); else order=(meshnode go); fi
	# POST /users last: it grows Go's map (and meshnode's file)
	for row in "GET /users/{id}" "GET /health" "POST /orders" "POST /users"; do
		for c in $CONNS_LIST; do
			for t in "${order[@]}"; do
				if [ "$t" = go ]; then u=$go_users o=$go_orders; else u=$mn_users o=$mn_orders; fi
				case $row in
				"GET /users/{id}")
					load "$row" "$c" "$t" "http://127.0.0.1:$u/users/1"
					[ "$t" = go ] || load "$row" "$c" bare "http://127.0.0.1:$bare_port/users/1"
					[ "$t" = go ] || load "$row" "$c" memory "http://127.0.0.1:$mn_mem/users/1" ;;
				"GET /health") load "$row" "$c" "$t" "http://127.0.0.1:$u/health" ;;
				"POST /orders") load "$row" "$c" "$t" "http://127.0.0.1:$o/orders" bench/post_order.lua ;;
				"POST /users")
					load "$row" "$c" "$t" "http://127.0.0.1:$u/users" bench/post_user.lua "r$round-c$c"
					[ "$t" = go ] || load "$row" "$c" memory "http://127.0.0.1:$mn_mem/users" bench/post_user.lua "m$round-c$c" ;;
				esac
			done
		done
		if [ "$row" = "GET /users/{id}" ]; then
			record "peak RSS, GET /users/{id}" - go "$(rss_mb "$go_users_pid" VmHWM)"
			record "peak RSS, GET /users/{id}" - meshnode "$(rss_mb "$mn_users_pid" VmHWM)"
		fi
	done
	record "peak RSS, all rows" - go "$(rss_mb "$go_users_pid" VmHWM)"
	record "peak RSS, all rows" - meshnode "$(rss_mb "$mn_users_pid" VmHWM)"
	record "peak RSS, orders" - go "$(rss_mb "$go_orders_pid" VmHWM)"
	record "peak RSS, orders" - meshnode "$(rss_mb "$mn_orders_pid" VmHWM)"
	for p in "$go_orders_pid" "$mn_orders_pid" "$bare_pid" "$go_users_pid" "$mn_users_pid" "$mn_mem_pid"; do
		bench_stop "$p"
	done
done

meta=$work/meta.md
cat >"$meta" <<META
- date: $(bench_stamp)
- machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r); loopback only
- bench/vs_go.sh, $(($(date +%s) - t_begin)) s in all: a Consul $("$consul" version | head -n1 | awk '{print $2}') dev agent; $ROUNDS rounds, fresh processes each round, the order of Go and meshnode swapped every round; $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2) \`-t2 -c{$(echo "$CONNS_LIST" | tr ' ' ,)} -d${DURATION}s --latency\`; medians (ratios: the median of the rounds' ratios, each round's in brackets)
- Go: bench/goref built with $(go version | awk '{print $3}') (Debian's golang-go), GOMAXPROCS = $(nproc); users in a map; its POST /orders asks Consul's \`/v1/health/service/gousers?passing\` on every call, then calls the instance it picked (its transport keeps idle connections, 256 per host); its registration has an HTTP check every 10 s, as the reference design's
- meshnode: shipped defaults (server.threads $default_threads, SQLite in WAL with synchronous=NORMAL, log level info, Consul check every 10 s); the orders node sets only service.name and service.modules; its user check goes through discovery (blocking queries)
- req/s counts 2xx answers only (wrk's rate times its share of 2xx); POST /users sends a new email every request (bench/post_user.lua); POST /orders is for user 1 (bench/post_order.lua)
- peak RSS is VmHWM of the users service after its GET /users/{id} runs, and after all its runs (POST /users, last, grows Go's map); idle RSS is VmRSS 3 s after it passed in Consul (anonymous: RssAnon, without the shared libraries' pages)
- wrk, Consul and the services share the two cores: compare the ratios, not the absolute figures
META
section=$work/section.md
$py bench/vs_go.py table "$tsv" "$meta" >"$section"
results_section "$section" "PostgreSQL beside SQLite"
cat "$section"
