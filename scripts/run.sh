#!/usr/bin/env bash
# `make run`: makes sure a Consul agent answers at CONSUL_HTTP_ADDR (starting
# `consul agent -dev` when none does, and stopping it again when the node
# stops), seeds the KV keys of consul/kv-seed.json that are not set yet, and
# runs the node in the foreground with config/meshnode.cfg.
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

consul=$(scripts/deps.sh | tail -n1)
addr=${CONSUL_HTTP_ADDR:-http://127.0.0.1:8500}
case "$addr" in http://*|https://*) ;; *) addr="http://$addr" ;; esac
export CONSUL_HTTP_ADDR=$addr

agent_pid=
node_pid=
cleanup() {
	[ -n "$node_pid" ] && kill -TERM "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
	if [ -n "$agent_pid" ]; then
		echo "run: stopping the dev agent (pid $agent_pid)" >&2
		kill -TERM "$agent_pid" 2>/dev/null || true
		wait "$agent_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! curl -sf -m 2 "$addr/v1/status/leader" | grep -q ':'; then
	port=${addr##*:}
	port=${port%%/*}
	mkdir -p data
	echo "run: no agent at $addr; starting consul agent -dev on 127.0.0.1:$port (log: data/consul-dev.log)" >&2
	setsid "$consul" agent -dev -config-file consul/dev.hcl -http-port "$port" \
		>data/consul-dev.log 2>&1 &
	agent_pid=$!
	for _ in $(seq 100); do
		curl -sf -m 1 "$addr/v1/status/leader" | grep -q ':' && break
		kill -0 "$agent_pid" 2>/dev/null || { tail -20 data/consul-dev.log >&2; exit 1; }
		sleep 0.1
	done
fi

# Seed only the keys that are missing: an operator's values stay.
python3 - "$addr" consul/kv-seed.json <<'PY'
import json, sys, urllib.request, urllib.error, base64
addr, path = sys.argv[1], sys.argv[2]
for item in json.load(open(path)):
    url = f"{addr}/v1/kv/{item['key']}"
    try:
        urllib.request.urlopen(url, timeout=2)
        continue
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    req = urllib.request.Request(url, data=base64.b64decode(item["value"]), method="PUT")
    urllib.request.urlopen(req, timeout=2)
    print(f"run: seeded {item['key']}", file=sys.stderr)
PY

echo "run: starting $bin (Ctrl-C stops it); check it with: curl '$addr/v1/health/service/users?passing'" >&2
"$bin" -c config/meshnode.cfg &
node_pid=$!
set +e
wait "$node_pid"
rc=$?
node_pid=
exit $rc
