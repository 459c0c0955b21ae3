#!/usr/bin/env bash
# Consul Connect side by side (issue 23, point 8): the same paths in plain
# HTTP, over meshnode's native mutual TLS, and through a pair of
# `consul connect proxy` sidecars in front of plain nodes (what a service
# that cannot speak Connect runs). Part of `make bench`; also alone:
#   bench/connect.sh [build/meshnode]
# One Consul dev agent (Connect on; intentions allow by default). Each of
# ROUNDS rounds starts fresh processes and measures, one after the other:
#  1. GET /users/1 on CONNS kept-alive connections: a plain users node, then
#     a native one (connect.enabled, admin listener on);
#  2. new connections per second, one request each (a TCP connect, and with
#     TLS a full handshake: the client offers no session to resume):
#     HCONNS connections, plain and native;
#  3. POST /orders (user 1, so the orders node calls users): plain client ->
#     plain orders -> plain users; mTLS client -> native orders -> native
#     users (the peer call over Connect); mTLS client -> orders' sidecar ->
#     plain orders -> orders' sidecar upstream -> users' sidecar -> plain
#     users (the proxy pair).
# The client is bench/tls_load.c, the same for all (wrk cannot present a
# client certificate); with TLS it presents the leaf of a service "web",
# as a Connect caller would. Nodes run on their shipped defaults but for
# ports, names and the Connect settings. Ratios are the medians of the
# rounds' ratios. Everything started here is stopped by PID (bench/lib.sh).
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6}
CONNS=${CONNS:-50}
HCONNS=${HCONNS:-8}
py=/usr/bin/python3
t_begin=$(date +%s)

. bench/lib.sh
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$work/tls_load" bench/tls_load.c -lssl -lcrypto -pthread
consul=$(scripts/deps.sh | tail -n1)
consul_dev_start "$consul"
tsv=$work/results.tsv
: >"$tsv"

# The client's identity: the leaf of "web" and every current root.
curl -sf "$caddr/v1/agent/connect/ca/leaf/web" >"$work/leaf.json"
curl -sf "$caddr/v1/agent/connect/ca/roots" >"$work/roots.json"
$py - "$work" <<'PY'
import json, sys
w = sys.argv[1]
leaf = json.load(open(w + "/leaf.json"))
open(w + "/web.crt", "w").write(leaf["CertPEM"])
open(w + "/web.key", "w").write(leaf["PrivateKeyPEM"])
roots = json.load(open(w + "/roots.json"))
open(w + "/roots.pem", "w").write("".join(r["RootCert"] for r in roots["Roots"]))
PY
chmod 600 "$work/web.key"
tls_env=(TLS_CERT="$work/web.crt" TLS_KEY="$work/web.key" TLS_CA="$work/roots.pem")

# node NAME MODULES CONNECT(0|1): starts a node; sets port, admin, npid.
# With CONNECT=1, Connect on and the admin listener on a port of its own.
node() {
	port=$(free_port)
	admin=$port
	local extra=""
	if [ "$3" = 1 ]; then
		admin=$(free_port)
		extra="connect = { enabled = true; }; admin = { port = $admin; };"
	fi
	cat >"$work/$1-$port.cfg" <<CFG
service = { name = "$1"; port = $port; modules = [ $2 ]; };
consul = { address = "$caddr"; };
database = { path = "$work/$1-$port.db"; };
$extra
CFG
	"$bin" -c "$work/$1-$port.cfg" >"$work/$1-$port.log" 2>&1 &
	npid=$!
	pids+=("$npid")
	wait_http "http://127.0.0.1:$admin/health"
	for _ in $(seq 200); do
		curl -sf "$caddr/v1/health/checks/$1" | grep -q passing && return 0
		sleep 0.05
	done
	echo "bench: $1 never passed" >&2
	return 1
}

# create_user PORT TLS(0|1): user 1 on a users node.
create_user() {
	local scheme=http tls=()
	if [ "$2" = 1 ]; then
		scheme=https
		tls=(-k --cert "$work/web.crt" --key "$work/web.key")
	fi
	curl -sf "${tls[@]}" -H 'Content-Type: application/json' \
		-d '{"name":"bench","email":"bench@example.com"}' "$scheme://127.0.0.1:$1/users" >/dev/null
}

# load LABEL CONNS MODE TLS(0|1) PORT METHOD PATH [BODY]: one tls_load run,
# its line recorded as "round label req/s p50 p99 answers failures".
load() {
	local label=$1 c=$2 mode=$3 tls=$4 p=$5
	shift 5
	local out
	if [ "$tls" = 1 ]; then
		out=$(env "${tls_env[@]}" "$work/tls_load" 127.0.0.1 "$p" "$c" "$DURATION" "$mode" "$@")
	else
		out=$(env TLS_CERT= "$work/tls_load" 127.0.0.1 "$p" "$c" "$DURATION" "$mode" "$@")
	fi
	printf '%s\t%s\t%s\n' "$round" "$label" "$out" | tr ' ' '\t' >>"$tsv"
}

order='{"user_id":1,"product":"bench","quantity":1}'
for round in $(seq "$ROUNDS"); do
	# plain: users and orders
	node users '"users"' 0
	up=$port upid=$npid
	create_user "$up" 0
	node orders '"orders"' 0
	op=$port opid=$npid
	load get_plain "$CONNS" keep 0 "$up" GET /users/1
	load new_plain "$HCONNS" new 0 "$up" GET /users/1
	load orders_plain "$CONNS" keep 0 "$op" POST /orders "$order"
	bench_stop "$opid"
	bench_stop "$upid"

	# native: the same over Connect
	node users '"users"' 1
	up=$port upid=$npid
	create_user "$up" 1
	node orders '"orders"' 1
	op=$port opid=$npid
	load get_native "$CONNS" keep 1 "$up" GET /users/1
	load new_native "$HCONNS" new 1 "$up" GET /users/1
	load orders_native "$CONNS" keep 1 "$op" POST /orders "$order"
	bench_stop "$opid"
	bench_stop "$upid"

	# the proxy pair: plain nodes, each behind `consul connect proxy`; the
	# plain users node is "users-app", and "users" is the orders sidecar's
	# upstream listener, registered by hand, so the plain orders node
	# reaches users only through the two proxies
	node users-app '"users"' 0
	up=$port upid=$npid
	create_user "$up" 0
	sup=$(free_port)
	"$consul" connect proxy -http-addr "${caddr#http://}" -service users \
		-service-addr "127.0.0.1:$up" -listen "127.0.0.1:$sup" -register \
		>"$work/proxy-users-$round.log" 2>&1 &
	pids+=("$!")
	spu=$!
	upstream=$(free_port)
	curl -sf -X PUT -d "{\"ID\":\"users-upstream\",\"Name\":\"users\",\"Address\":\"127.0.0.1\",\"Port\":$upstream}" \
		"$caddr/v1/agent/service/register" >/dev/null
	node orders '"orders"' 0
	op=$port opid=$npid
	sop=$(free_port)
	"$consul" connect proxy -http-addr "${caddr#http://}" -service orders \
		-service-addr "127.0.0.1:$op" -listen "127.0.0.1:$sop" -register \
		-upstream "users:$upstream" >"$work/proxy-orders-$round.log" 2>&1 &
	pids+=("$!")
	spo=$!
	pair_up=0
	for _ in $(seq 200); do
		if env "${tls_env[@]}" "$work/tls_load" 127.0.0.1 "$sop" 1 0.2 keep POST /orders "$order" |
			awk '$4 > 0 && $5 == 0 {ok=1} END {exit !ok}'; then
			pair_up=1
			break
		fi
		sleep 0.1
	done
	if [ "$pair_up" != 1 ]; then
		echo "bench: the proxy pair never placed an order: $(tail -n 3 "$work/proxy-orders-$round.log")" >&2
		exit 1
	fi
	load orders_proxy "$CONNS" keep 1 "$sop" POST /orders "$order"
	bench_stop "$spo"
	bench_stop "$opid"
	curl -sf -X PUT "$caddr/v1/agent/service/deregister/users-upstream" >/dev/null
	bench_stop "$spu"
	bench_stop "$upid"
done

$py - "$tsv" "$ROUNDS" "$DURATION" "$CONNS" "$HCONNS" "$(bench_stamp)" "$(( $(date +%s) - t_begin ))" \
	"$("$consul" version | head -n1)" >"$work/section.md" <<'PY'
import statistics, sys
tsv, rounds, duration, conns, hconns, stamp, took, cver = sys.argv[1:9]
runs = {}
for line in open(tsv):
    r, label, rps, p50, p99, n, fails = line.split("\t")
    runs.setdefault(label, {})[int(r)] = (float(rps), float(p50), float(p99), int(n), int(fails))

def med(label, k):
    return statistics.median(v[k] for v in runs[label].values())

def ratio(a, b, k=0):
    per = [runs[a][r][k] / runs[b][r][k] for r in sorted(runs[a]) if runs[b][r][k] > 0]
    return statistics.median(per), per

def row(name, conns_, a, b, target=None):
    q, per = ratio(a, b)
    verdict = ("" if target is None else
               " %s (target ≥ %.1f)" % ("met" if q >= target else "**not met**", target))
    return ("| %s | %s | %s req/s, p99 %.2f ms | %s req/s, p99 %.2f ms | **%.2f** (%s)%s | %d, %d |"
            % (name, conns_, "{:,.0f}".format(med(b, 0)), med(b, 2), "{:,.0f}".format(med(a, 0)),
               med(a, 2), q, "; ".join("%.2f" % x for x in per), verdict,
               sum(v[4] for v in runs[b].values()), sum(v[4] for v in runs[a].values())))

print("## Consul Connect (issue 23)\n")
print("- date: %s" % stamp)
print("- machine: 2 cores, AMD EPYC; loopback only; the client, the nodes, the agent and the proxies share the two cores: compare the ratios")
print("- bench/connect.sh, %s s in all: %s dev agent; %s rounds, fresh processes each round; bench/tls_load.c (one client for every row: the same code with and without TLS), %s s per run; medians (ratios: the median of the rounds' ratios, each round's in brackets)" % (took, cver, rounds, duration))
print("- nodes on their shipped defaults (SQLite, server.threads 512) but for ports, names and, for native, `connect.enabled = true` and an admin port; the mTLS client presents the leaf of a service `web` (intentions allow by default in dev mode); TLS rows: TLS 1.3, P-256 leaves from the agent's CA, no session resumption (a Connect server refuses it)")
print("- proxy pair: `consul connect proxy -service users -service-addr <plain users>` and `-service orders -service-addr <plain orders> -upstream users:<port>`, the plain orders node reaching users only through its sidecar's upstream listener")
print()
print("| row | conns | plain | native Connect | native / plain | failures (plain, native) |")
print("|---|---|---|---|---|---|")
print(row("`GET /users/{id}`, kept-alive", conns, "get_native", "get_plain", 0.8))
print(row("`POST /orders` (the peer call over mTLS when native)", conns, "orders_native", "orders_plain", 0.8))
print(row("new connections: one `GET /users/{id}` each (handshakes/s when native)", hconns, "new_native", "new_plain"))
print()
q, per = ratio("orders_native", "orders_proxy")
p99q, p99per = ratio("orders_native", "orders_proxy", 2)
print("| `POST /orders`, %s conns | proxy pair | native | native / proxy pair |" % conns)
print("|---|---|---|---|")
print("| req/s | %s | %s | **%.2f** (%s) %s (target ≥ 2.0) |" % (
    "{:,.0f}".format(med("orders_proxy", 0)), "{:,.0f}".format(med("orders_native", 0)), q,
    "; ".join("%.2f" % x for x in per), "met" if q >= 2.0 else "**not met**"))
print("| p99 (ms) | %.2f | %.2f | **%.2f** (%s) %s (target ≤ 0.5) |" % (
    med("orders_proxy", 2), med("orders_native", 2), p99q, "; ".join("%.2f" % x for x in p99per),
    "met" if p99q <= 0.5 else "**not met**"))
print("| failures | %d | %d | |" % (sum(v[4] for v in runs["orders_proxy"].values()),
                                    sum(v[4] for v in runs["orders_native"].values())))
PY
cat "$work/section.md"
results_section "$work/section.md"
