#!/usr/bin/env bash
# The hostile-connection part of `make bench` (issue 8, point 2); also runs
# alone: bench/hostile.sh [build/meshnode]. A Consul dev agent on free ports,
# meshnode with its SHIPPED defaults (only service.port, database.path in a
# temp dir and consul.address are set) and the bare civetweb handler
# (bench/bare.c, same thread count as meshnode's default) side by side, each
# attacked by bench/hostile.py; then the sweep on meshnode. Writes (or
# replaces) the "Hostile connections" section at the end of bench/RESULTS.md.
# Bounded: every phase of hostile.py stops by itself; about 4-5 minutes.
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
py=/usr/bin/python3

if ! command -v wrk >/dev/null; then
	sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
	"${sudo_cmd[@]}" apt-get install -y -q wrk >/dev/null
fi
. bench/lib.sh

cc -O2 -o "$work/bare" bench/bare.c -lcivetweb -pthread
consul=$(scripts/deps.sh | tail -n1)

consul_dev_start "$consul"

# meshnode, shipped defaults: nothing under server.* or consul.check_*.
start_default_node
curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
	-d '{"name":"Ada","email":"ada@example.com"}' "http://127.0.0.1:$mport/users"
setting() { curl -sf "http://127.0.0.1:$mport/config" | $py -c 'import json,sys; s=json.load(sys.stdin)["settings"][sys.argv[1]]; print(s["value"], s["source"])' "$1"; }
read -r threads threads_src <<<"$(setting server.threads)"
read -r idle_ms _ <<<"$(setting server.idle_timeout_ms)"
read -r read_ms _ <<<"$(setting server.read_timeout_ms)"
read -r check_ms _ <<<"$(setting consul.check_interval_ms)"
read -r check_to _ <<<"$(setting consul.check_timeout_ms)"
[ "$threads_src" = default ] || echo "hostile: server.threads is not the default ($threads_src)" >&2

bport=$(free_port)
"$work/bare" "$bport" "$threads" &
bpid=$!
pids+=($bpid)
wait_http "http://127.0.0.1:$bport/users/1"

# Wait for the first Consul check to pass before attacking.
for _ in $(seq $((check_ms / 250 + 40))); do
	curl -sf "$caddr/v1/health/checks/users" | grep -q '"passing"' && break
	sleep 0.25
done

# Sweep: around the thread count (where a thread-per-connection server runs
# out) and the issue's 300..1200; stops at the first N where every probe fails.
sweep_slow=$(printf '%s\n' $((threads / 2)) $((threads * 3 / 4)) $((threads * 7 / 8)) $((threads * 31 / 32)) \
	"$threads" $((threads * 5 / 4)) 300 600 900 1200 |
	awk '$1 > 0' | sort -n -u | paste -sd,)
sweep_idle=1000,2000,4000,8000
t0=$(date +%s)
$py bench/hostile.py run --port "$mport" --pid "$mpid" --consul "$caddr" --service users \
	--scenarios idle,slow,slowka,served,sweep --sweep-slow "$sweep_slow" --sweep-idle "$sweep_idle" \
	--sweep-stop --json "$work/meshnode.json"
$py bench/hostile.py run --port "$bport" --pid "$bpid" --scenarios idle,slow,slowka,served \
	--json "$work/bare.json"
took=$(($(date +%s) - t0))

section=$work/section.md
{
	echo "## Hostile connections"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src include 2>/dev/null || echo ' with local changes to src/include')"
	echo "- machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r); shared with other work, loopback only"
	echo "- meshnode with its shipped defaults: server.threads = $threads, idle_timeout_ms = $idle_ms,"
	echo "  read_timeout_ms = $read_ms; Consul check every $check_ms ms, timeout $check_to ms (a Consul $("$consul" version | head -n1 | awk '{print $2}') dev agent)."
	echo "  Bare civetweb: bench/bare.c with $threads threads and civetweb's own timeouts (keep-alive 500 ms,"
	echo "  request 30000 ms), no Consul check."
	echo "- bench/hostile.py (bench/hostile.sh), $took s in all. Probes: 50 fresh connections, \`GET /health\`"
	echo "  with \`Connection: close\`, one every 100 ms, 5 s timeout, timed from connect() to the last byte;"
	echo "  over 50 probes the p99 is the slowest one, and a failed probe counts as slower than the timeout."
	echo "  Each attack holds about 13 s after its ramp, so at least one Consul check runs under it; the"
	echo "  Consul column is the worst of the agent's \`/v1/health/checks/users\` read once a second."
	echo "- Slow headers: one byte every 2 s of a ~110-byte head, the connection opened again when the"
	echo "  server closes it. \"After one keep-alive request\": an ordinary request first, then the slow"
	echo "  head on the same connection (civetweb 1.15 gives a head after the first request the keep-alive"
	echo "  timeout as its deadline instead of the request timeout)."
	echo
	$py bench/hostile.py table --col "meshnode=$work/meshnode.json" --col "bare civetweb=$work/bare.json"
} >"$section"

# Replace an earlier hostile section (always the last one) or append.
if [ -f bench/RESULTS.md ]; then
	awk '/^## Hostile connections/ {exit} {print}' bench/RESULTS.md >"$work/results.md"
	# no blank line pile-up before the section
	sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$work/results.md" >"$work/results.trim"
	{ cat "$work/results.trim"; echo; cat "$section"; } >bench/RESULTS.md
else
	cp "$section" bench/RESULTS.md
fi
cat "$section"
