#!/usr/bin/env bash
# A flood of Consul KV keys under a node's prefix (issue 9), standalone:
#     bench/kv_flood.sh [build/meshnode]
# A Consul dev agent on free ports and a meshnode `users` node with its
# shipped caps (consul.kv_max_keys 10000, consul.kv_max_bytes 4 MiB). The
# node's RSS (VmRSS, and VmHWM for the peak) is read from /proc: before,
# with a 100,000-key flood under config/users/ (refused by the caps), once
# it is deleted, with a 10,000-key listing of valid peer settings
# (accepted: at the cap, not over it), and once that is deleted too. The
# reload of the 10,000-key listing is timed twice: as the node logs it, and
# in process by bench/kv_reload.c (config_load() alone, medians).
# Prints a markdown section on stdout; progress goes to stderr.
# Bounded: every wait has a count and a deadline; about one to two minutes.
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
py=/usr/bin/python3
lib=$(dirname "$bin")/libmeshnode.a
if [ ! -x "$bin" ] || [ ! -f "$lib" ]; then
	echo "kv_flood: build first (make): $bin, $lib" >&2
	exit 2
fi
. bench/lib.sh

say() { printf 'kv_flood: %s\n' "$*" >&2; }

cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -o "$work/kv_reload" bench/kv_reload.c "$lib" \
	-pthread -lcivetweb -lcurl -ljansson -lconfig -lsqlite3 -lresolv -lm
consul=$(scripts/deps.sh | tail -n1)
consul_dev_start "$consul"

# Writes keys with Consul transactions (64 operations each: Consul 1.8.7's
# limit), four in flight; deletes a folder. Every request has a timeout.
cat >"$work/kv.py" <<'PY'
import base64, json, sys, threading, urllib.request
addr, verb, prefix = sys.argv[1], sys.argv[2], sys.argv[3]

def call(method, path, body=None):
    req = urllib.request.Request(addr + path, data=body, method=method)
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()

if verb == "delete":
    call("DELETE", "/v1/kv/%s?recurse" % prefix)
    sys.exit(0)
n, kind = int(sys.argv[4]), sys.argv[5]
def pair(i):
    if kind == "peers":
        return "%speers/p%d/timeout_ms" % (prefix, i), str(1000 + i % 5000)
    return "%sk%06d" % (prefix, i), "x"
batches = [range(b, min(b + 64, n)) for b in range(0, n, 64)]
failed = []
def worker(mine):
    try:
        for batch in mine:
            ops = []
            for i in batch:
                k, v = pair(i)
                ops.append({"KV": {"Verb": "set", "Key": k,
                                   "Value": base64.b64encode(v.encode()).decode()}})
            call("PUT", "/v1/txn", json.dumps(ops).encode())
    except Exception as e:  # noqa: BLE001 - reported below
        failed.append(repr(e))
threads = [threading.Thread(target=worker, args=(batches[k::4],)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=300)
if failed or any(t.is_alive() for t in threads):
    sys.exit("kv.py: %s" % (failed[:1] or "timed out"))
PY
kv() { $py "$work/kv.py" "$caddr" "$@"; }

start_default_node

status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$mpid/status"; }
mib() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }
metric() {
	curl -sf "http://127.0.0.1:$mport/metrics" |
		awk -v m="$1" 'index($0, m) == 1 { print $NF; found = 1 } END { if (!found) print "" }'
}
refused() { metric 'meshnode_config_kv_listing_refused{prefix="config/users/"}'; }
# wait_for WHAT SECONDS COMMAND...: polls every 0.25 s, at most SECONDS.
wait_for() {
	local what=$1 secs=$2
	shift 2
	for _ in $(seq $((secs * 4))); do "$@" && return 0; sleep 0.25; done
	say "gave up waiting for $what after ${secs}s"
	return 1
}
settled() { sleep 3; } # the watch's last read of a flood and the trim after it
# The node has applied what Consul holds under its prefix: its KV index
# reached the prefix's (read with ?keys, names only).
consul_index() {
	curl -s -D - -o /dev/null "$caddr/v1/kv/config/users/?keys" |
		awk 'tolower($1) == "x-consul-index:" { print $2 + 0 }'
}
caught_up() { [ "$(metric meshnode_config_kv_index)" -ge "$1" ] 2>/dev/null; }

rows=()
row() { # phase, keys, note
	rows+=("| $1 | $2 | $(mib "$(status_kb VmRSS)") | $(mib "$(status_kb VmHWM)") | $3 |")
}

sleep 2
row "started, no keys" 0 ""

say "writing 100,000 keys under config/users/flood/"
t0=$(date +%s.%N)
kv set config/users/flood/ 100000 flat
flood_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
wait_for "the refusal" 30 test "$(refused)" = 1
settled
reason=$(grep -o "kv listing of 'config/users/' refused: [^;]*" "$work/meshnode.log" | head -n1 |
	sed "s/.*refused: //")
row "100,000-key flood, refused" 100000 "written in ${flood_s} s; refused: ${reason:-?}"

say "deleting the flood"
kv delete config/users/flood/
wait_for "the listing accepted again" 30 test "$(refused)" = 0
settled
row "flood deleted" 0 ""

say "writing 10,000 peers.<name>.timeout_ms keys"
kv set config/users/ 10000 peers
index=$(consul_index)
wait_for "the node at kv index $index" 60 caught_up "$index"
settled
[ "$(refused)" = 0 ] || say "the 10,000-key listing was refused"
node_ms=$(grep -o "configuration reloaded (config/users/) at kv index $index in [0-9.]* ms" \
	"$work/meshnode.log" | tail -n1 | awk '{ print $(NF-1) }')
n_peers=$(grep -c '"peers\.p[0-9]*\.timeout_ms"' <(curl -sf "http://127.0.0.1:$mport/config" |
	$py -c 'import json,sys; [print(json.dumps(k)) for k in json.load(sys.stdin)["settings"]]') || true)
row "10,000 valid peer keys, accepted" 10000 "its reload ${node_ms:-?} ms as logged; RSS read before any GET /config"
config_kb=$(curl -sf "http://127.0.0.1:$mport/config" | wc -c | awk '{ printf "%d", $1 / 1024 }')
row "the same, after two GET /config" 10000 "/config is ${config_kb} KiB: ${n_peers} peers, six settings each"

say "deleting the peers"
kv delete config/users/peers/
index=$(consul_index)
wait_for "the node at kv index $index" 30 caught_up "$index"
settled
row "peers deleted" 0 ""

lines=$(grep -c '"level":"warn"' "$work/meshnode.log" || true)
refusals=$(grep -c "kv listing of 'config/users/' refused" "$work/meshnode.log" || true)
rejected=$(metric 'meshnode_config_reloads_total{result="rejected"}')

say "timing config_load() in process"
reload_rows=$("$work/kv_reload" 10000 9)

echo "## KV flood (issue 9)"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src include 2>/dev/null || echo ' with local changes to src/include')"
echo "- machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; shared with other work"
echo "- a Consul $("$consul" version | head -n1 | awk '{ print $2 }') dev agent; one meshnode \`users\` node with the shipped caps (consul.kv_max_keys 10000, consul.kv_max_bytes 4194304); keys written with /v1/txn, 64 operations each, 4 in flight"
echo
echo "| phase | keys under config/users/ | VmRSS MiB | VmHWM MiB (peak so far) | note |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "The node logged $lines warning lines in all, $refusals of them the refusal of config/users/;"
echo "meshnode_config_reloads_total{result=\"rejected\"} ended at ${rejected:-?}."
echo
echo "config_load() of a 10,000-key listing as a reload (bench/kv_reload.c: one"
echo "thread, medians of 9 runs; CPU time is the cost, wall time includes waiting"
echo "for a core on a shared machine):"
echo
echo "| keys | count | CPU ms (median) | wall ms (median) | wall ms (slowest) |"
echo "|---|---|---|---|---|"
echo "$reload_rows"
