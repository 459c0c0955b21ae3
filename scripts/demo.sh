#!/usr/bin/env bash
# The discovery demo: a Consul dev agent, a RabbitMQ broker, two users nodes
# sharing one SQLite file and one orders node, all on free loopback ports. It
# creates a user, places an order (orders finds users through Consul) and
# shows its OrderCreated event arriving from the broker's queue, kills one
# users node with kill -9 and shows orders still succeeding. Everything it
# started is stopped on exit, by PID. Usage: scripts/demo.sh [build/meshnode]
set -euo pipefail
bin=$(realpath "${1:-build/meshnode}")
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
consul=$(scripts/deps.sh | tail -n1)
dir=$(mktemp -d /tmp/meshnode-demo.XXXXXX)
pids=()

cleanup() {
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	echo "demo: stopped everything; logs in $dir" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
say() { printf '\n== %s\n' "$*"; }

http=$(free_port)
addr=http://127.0.0.1:$http
say "consul agent -dev on $addr"
setsid "$consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -http-port "$http" \
	-dns-port -1 -grpc-port -1 -serf-lan-port "$(free_port)" -serf-wan-port "$(free_port)" \
	-server-port "$(free_port)" >"$dir/consul.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do
	curl -sf -m 1 "$addr/v1/status/leader" | grep -q ':' && break
	sleep 0.1
done

# The broker: tests/integration/rabbitserver.py's (Debian's rabbitmq-server
# on free loopback ports, its own epmd and directories), stopped when this
# process gets SIGTERM.
say "RabbitMQ (the events' broker; about 7 s)"
/usr/bin/python3 - "$dir/amqp-port" >"$dir/rabbit.log" 2>&1 <<'PY' &
import os, signal, sys, threading
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "integration"))
import rabbitserver
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
mq = rabbitserver.RabbitServer()
try:
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write("%d\n" % mq.amqp_port)
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    done.wait()
finally:
    mq.stop()
PY
pids+=($!)
for _ in $(seq 300); do [ -s "$dir/amqp-port" ] && break; sleep 0.1; done
amqp=$(cat "$dir/amqp-port")
echo "demo: broker on 127.0.0.1:$amqp" >&2

# node NAME PORT MODULES: starts a node with its own config file
node() {
	cat >"$dir/$1-$2.cfg" <<CFG
service = { name = "$1"; address = "127.0.0.1"; port = $2; modules = [ $3 ]; };
server = { threads = 16; };
database = { path = "$dir/$1.db"; };
consul = { address = "$addr"; check_interval_ms = 1000; check_timeout_ms = 1000; };
peers = { users = { timeout_ms = 1000; }; };
events = { enabled = true; broker_address = "127.0.0.1:$amqp"; queue = "orders"; };
CFG
	CONSUL_HTTP_ADDR=$addr setsid "$bin" -c "$dir/$1-$2.cfg" >"$dir/$1-$2.log" 2>&1 &
	pids+=($!)
	echo "demo: $1 on 127.0.0.1:$2 (pid $!)" >&2
}

u1=$(free_port) u2=$(free_port) o=$(free_port)
say "two users nodes sharing $dir/users.db, one orders node"
node users "$u1" '"users"'
u1_pid=${pids[-1]}
node users "$u2" '"users"'
node orders "$o" '"orders"'
for _ in $(seq 150); do
	n=$(curl -sf "$addr/v1/health/service/users?passing" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' || echo 0)
	[ "$n" = 2 ] && curl -sf "http://127.0.0.1:$o/health" >/dev/null && break
	sleep 0.1
done
curl -s "$addr/v1/health/service/users?passing" |
	python3 -c 'import json,sys; [print("  passing:", e["Service"]["ID"]) for e in json.load(sys.stdin)]'

say "POST /users on one users node"
curl -s -XPOST "http://127.0.0.1:$u1/users" -H 'Content-Type: application/json' \
	-d '{"name":"Ada","email":"ada@example.com"}'
echo
say "POST /orders on the orders node (it checks the user through Consul)"
curl -s -XPOST "http://127.0.0.1:$o/orders" -H 'Content-Type: application/json' \
	-d '{"user_id":1,"product":"book","quantity":2}'
echo
say "its OrderCreated event, from the broker's durable queue 'orders'"
/usr/bin/python3 tests/integration/amqp_consumer.py --port "$amqp" --queue orders --count 1 \
	--wait 20 2>/dev/null | sed 's/^/  /'
event_seen=$?
say "POST /orders for a user that does not exist"
curl -s -w ' (%{http_code})' -XPOST "http://127.0.0.1:$o/orders" \
	-H 'Content-Type: application/json' -d '{"user_id":99,"product":"book","quantity":1}'
echo

say "kill -9 the first users node (pid $u1_pid), then 10 orders"
kill -KILL "$u1_pid"
wait "$u1_pid" 2>/dev/null || true
ok=0
for _ in $(seq 10); do
	code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "http://127.0.0.1:$o/orders" \
		-H 'Content-Type: application/json' -d '{"user_id":1,"product":"pen","quantity":1}')
	[ "$code" = 201 ] && ok=$((ok + 1))
done
echo "  $ok of 10 orders succeeded"

say "the orders node's view of users (GET /peers/users)"
curl -s "http://127.0.0.1:$o/peers/users" | python3 -c '
import json, sys
v = json.load(sys.stdin)
print("  consul index %d, stale %d ms" % (v["index"], v["stale_ms"]))
for i in v["instances"]:
    print("  %-28s %s:%d circuit %-9s calls %d failures %d" % (i["id"], i["address"], i["port"],
          i["circuit"], i["calls"], i["failures"]))'
[ "$ok" = 10 ] && [ "$event_seen" = 0 ]
