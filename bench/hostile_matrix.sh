#!/usr/bin/env bash
# Runs bench/hostile.py against meshnode once per setting set, to choose
# server.threads / idle_timeout_ms / read_timeout_ms from measurement:
#
#   bench/hostile_matrix.sh OUTDIR "MESHNODE_SERVER_THREADS=64" \
#       "MESHNODE_SERVER_THREADS=256 MESHNODE_SERVER_IDLE_TIMEOUT_MS=5000" ...
#
# One Consul dev agent on free ports; per argument a fresh meshnode with its
# shipped defaults except port, database path and consul address (written in
# its config file) and the given environment, then hostile.py (scenarios from
# HOSTILE_SCENARIOS, default idle,slow,slowka,served; extra wrk -c runs from
# HOSTILE_WRK_EXTRA, default 50). Prints the markdown table and leaves one
# JSON per setting set in OUTDIR. Every process started here is killed by PID
# on exit.
set -euo pipefail
bin=${BIN:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=$1; shift
mkdir -p "$out"
. bench/lib.sh
consul=$(scripts/deps.sh | tail -n1)

consul_dev_start "$consul"

rows=()
i=0
for setting in "$@"; do
	i=$((i + 1))
	port=$(free_port)
	mkdir -p "$work/n$i"
	cat >"$work/n$i/meshnode.cfg" <<CFG
service = { port = $port; };
consul = { address = "$caddr"; };
database = { path = "$work/n$i/users.db"; };
CFG
	# shellcheck disable=SC2086
	env $setting "$bin" -c "$work/n$i/meshnode.cfg" >"$work/n$i/log" 2>&1 &
	npid=$!
	pids+=($npid)
	if ! wait_http "http://127.0.0.1:$port/health"; then
		echo "matrix: [$setting] did not start:" >&2
		tail -n 3 "$work/n$i/log" >&2
		continue
	fi
	curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
		-d '{"name":"Ada","email":"ada@example.com"}' "http://127.0.0.1:$port/users"
	sleep 1
	echo "matrix: [$setting] pid $npid port $port" >&2
	/usr/bin/python3 bench/hostile.py run --port "$port" --pid "$npid" --consul "$caddr" --service users \
		--scenarios "${HOSTILE_SCENARIOS:-idle,slow,slowka,served}" --wrk-extra "${HOSTILE_WRK_EXTRA-50}" \
		${HOSTILE_ARGS:-} --json "$out/$i.json" || echo "matrix: hostile.py failed for [$setting]" >&2
	kill -TERM "$npid" 2>/dev/null || true
	for _ in $(seq 150); do kill -0 "$npid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$npid" 2>/dev/null || true
	wait "$npid" 2>/dev/null || true
	rows+=(--row "$setting=$out/$i.json")
done
/usr/bin/python3 bench/hostile.py matrix "${rows[@]}" | tee "$out/table.md"
