#!/usr/bin/env bash
# `make run`: runs one node in the foreground against a Consul agent, and
# leaves nothing running when it ends.
#
#   scripts/run.sh [BINARY]        (make run: scripts/run.sh build/meshnode)
#
# 1. The agent: the one answering at CONSUL_HTTP_ADDR (default
#    http://127.0.0.1:8500), else a `consul agent -dev` started here on that
#    address (8500 when free and CONSUL_HTTP_ADDR is unset, else a free
#    port), its other ports (server, serf LAN/WAN, DNS) free ones, so two
#    runs live side by side; its log in a directory of this run.
# 2. KV: imports the keys of consul/kv-seed.json that are missing, then says
#    which keys KV holds for the node (they win over config/meshnode.cfg).
# 3. The node: config/meshnode.cfg, on its port (8080) when free, else on a
#    free one (SERVER_PORT), said so.
# 4. Once the agent reports the node passing, prints the commands to try,
#    with the real addresses.
# 5. Ctrl-C, SIGTERM or SIGHUP (any number of them) stops the node (which
#    deregisters), then the agent started here, each by PID, each waited
#    for within a bound; exit 0 when the node stopped cleanly, else its
#    status. A node that stops on its own ends the run with its status.
#
# Ctrl-C in a terminal goes to the whole foreground process group, make
# included, and make interrupted prints an error and dies of SIGINT however
# its child ended. So when the terminal's foreground group is make's, this
# script moves into a process group of its own and makes it the foreground
# one (restored when it exits): ^C reaches this script alone, and make sees
# its child exit 0. The node and the agent run in sessions of their own
# (setsid) and get only the signals sent here.
set -uo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"

if [ -z "${MESHNODE_RUN_TTY:-}" ] && [ -t 0 ]; then
	export MESHNODE_RUN_TTY=-
	exec python3 -c '
import os, signal, sys
try:
    fg = os.tcgetpgrp(0)
except OSError:
    fg = -1
if fg == os.getpgrp() and fg != os.getpid():
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.setpgid(0, 0)
        os.tcsetpgrp(0, os.getpgrp())
        os.environ["MESHNODE_RUN_TTY"] = str(fg)
    except OSError:
        try:
            os.setpgid(0, fg)  # back with make: ^C as before
        except OSError:
            pass
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])
' "$BASH" "${BASH_SOURCE[0]}" "$@"
fi
tty_pgrp=${MESHNODE_RUN_TTY:--}
unset MESHNODE_RUN_TTY
if [ "$tty_pgrp" != - ]; then
	# In the foreground alone: ^Z would stop this script and leave the
	# terminal to nobody.
	trap '' TSTP TTIN TTOU
fi

say() { printf 'run: %s\n' "$*" >&2; }

agent_pid=
node_pid=
node_rc=
run_dir=
signals=0
trap 'signals=$((signals + 1))' INT TERM HUP

# Stops 'pid' (SIGTERM, then SIGKILL after 'secs' seconds) and reaps it.
# Further signals meanwhile only count: the stop goes on.
stop_pid() {
	local pid=$1 what=$2 secs=$3 i
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "$what (pid $pid) still running after ${secs}s; killing it"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
}

cleanup() {
	local rc=$?
	trap 'signals=$((signals + 1))' INT TERM HUP
	if [ -n "$node_pid" ]; then
		say "stopping the node (pid $node_pid)"
		stop_pid "$node_pid" node "$node_stop_secs"
		node_rc=$?
		node_pid=
		[ "$node_rc" = 0 ] || rc=$node_rc
	fi
	if [ -n "$agent_pid" ]; then
		say "stopping the dev agent (pid $agent_pid)"
		stop_pid "$agent_pid" "consul agent" 10
		agent_pid=
	fi
	[ -n "$run_dir" ] && rm -rf "$run_dir"
	if [ "$tty_pgrp" != - ]; then
		python3 -c 'import os, sys; os.tcsetpgrp(0, int(sys.argv[1]))' "$tty_pgrp" 2>/dev/null
	fi
	exit "$rc"
}
trap cleanup EXIT
node_stop_secs=15

# Ends the run (through cleanup) once a signal came.
stop_if_asked() {
	if [ "$signals" -gt 0 ]; then
		say "stopping (signal received)"
		exit 0
	fi
}

consul=$(scripts/deps.sh | tail -n1)
stop_if_asked
addr=${CONSUL_HTTP_ADDR:-}
addr_given=${addr:+1}
addr=${addr:-http://127.0.0.1:8500}
case "$addr" in http://*|https://*) ;; *) addr="http://$addr" ;; esac
export CONSUL_HTTP_ADDR=$addr

# Ports free on 127.0.0.1 for TCP (and UDP with the u suffix): each argument
# is 'PORT' (that one when free, else a free one), '0' or '0u'.
free_ports() {
	python3 - "$@" <<'PY'
import socket, sys
def free(port, udp):
    socks = []
    try:
        for kind in ([socket.SOCK_STREAM, socket.SOCK_DGRAM] if udp else [socket.SOCK_STREAM]):
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            port = s.getsockname()[1]
        return port
    except OSError:
        return None
    finally:
        for s in socks:
            s.close()
out = []
for arg in sys.argv[1:]:
    udp = arg.endswith("u")
    want = int(arg.rstrip("u"))
    port = free(want, udp) if want else None
    while port is None or port in out:
        port = free(0, udp)
    out.append(port)
print(" ".join(map(str, out)))
PY
}

agent_answers() {
	curl -sf --noproxy '*' -m 2 "$addr/v1/status/leader" 2>/dev/null | grep -q ':'
}

agent_started=
if ! agent_answers; then
	hostport=${addr#*://}
	hostport=${hostport%%/*}
	host=${hostport%:*}
	port=${hostport##*:}
	[ "$port" = "$hostport" ] && port=8500
	case "$addr" in
	http://127.0.0.1[:/]*|http://127.0.0.1|http://localhost[:/]*|http://localhost) ;;
	*) say "no agent answers at $addr, and a dev agent is only started on http://127.0.0.1"; exit 1 ;;
	esac
	run_dir=$(mktemp -d "${TMPDIR:-/tmp}/meshnode-run.XXXXXX")
	log="$run_dir/consul-dev.log"
	for attempt in 1 2 3; do
		# CONSUL_HTTP_ADDR names the port; without it 8500 when free.
		if [ -n "$addr_given" ]; then
			read -r dns lan wan server < <(free_ports 0u 0u 0u 0)
			http=$port
		else
			read -r http dns lan wan server < <(free_ports 8500 0u 0u 0u 0)
			addr="http://127.0.0.1:$http"
			export CONSUL_HTTP_ADDR=$addr
		fi
		say "no agent at $addr; starting consul agent -dev (http $http, server $server, serf $lan/$wan, dns $dns; log: $log)"
		setsid "$consul" agent -dev -config-file consul/dev.hcl -http-port "$http" \
			-dns-port "$dns" -serf-lan-port "$lan" -serf-wan-port "$wan" \
			-server-port "$server" </dev/null >"$log" 2>&1 &
		agent_pid=$!
		for _ in $(seq 150); do
			stop_if_asked
			agent_answers && break
			kill -0 "$agent_pid" 2>/dev/null || break
			sleep 0.1
		done
		if agent_answers; then
			say "dev agent up at $addr (pid $agent_pid)"
			agent_started=1
			break
		fi
		stop_pid "$agent_pid" "consul agent" 5
		agent_pid=
		tail -n 5 "$log" >&2
		if [ -z "$addr_given" ] && [ "$http" = 8500 ] && agent_answers; then
			say "another agent came up at $addr meanwhile: using it"
			break
		fi
		[ "$attempt" = 3 ] && { say "the dev agent did not start (log above)"; exit 1; }
	done
fi
stop_if_asked

# Seed only the keys that are missing (an operator's values stay), then say
# which keys KV holds for this node: they win over config/meshnode.cfg.
kv_report() {
	python3 - "$addr" consul/kv-seed.json "$1" <<'PY'
import base64, json, sys, urllib.error, urllib.parse, urllib.request
addr, seed, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
http = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def get(path):
    try:
        with http.open(addr + path, timeout=2) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
seeded = []
for item in json.load(open(seed)):
    key = item["key"]
    if get("/v1/kv/" + urllib.parse.quote(key)) is not None:
        continue
    req = urllib.request.Request(addr + "/v1/kv/" + urllib.parse.quote(key),
                                 data=base64.b64decode(item["value"]), method="PUT")
    http.open(req, timeout=2).read()
    seeded.append(key)
held = []
for p in ("config/shared/", prefix):
    for e in get("/v1/kv/" + urllib.parse.quote(p) + "?recurse") or []:
        if e["Key"].endswith("/"):
            continue
        v = base64.b64decode(e["Value"] or b"").decode("utf-8", "replace")
        held.append((e["Key"], v if len(v) <= 40 else v[:37] + "..."))
if held:
    print("run: consul kv holds, winning over config/meshnode.cfg:", file=sys.stderr)
    for k, v in held[:20]:
        why = "seeded now from " + seed if k in seeded else "already there"
        print("run:   %s = %s  (%s)" % (k, v, why), file=sys.stderr)
    if len(held) > 20:
        print("run:   ... and %d more" % (len(held) - 20), file=sys.stderr)
else:
    print("run: consul kv holds no key for the node: config/meshnode.cfg decides", file=sys.stderr)
PY
}

# The node's effective settings (file, KV, environment), from the node.
print_config() {
	"$bin" -c config/meshnode.cfg --print-config 2>"${run_dir:-/tmp}/print-config.err" |
		python3 -c '
import json, sys
s = json.load(sys.stdin)["settings"]
print(" ".join(str(s[k]["value"]) for k in sys.argv[1:]))
' "$@"
}
[ -n "$run_dir" ] || run_dir=$(mktemp -d "${TMPDIR:-/tmp}/meshnode-run.XXXXXX")
if ! read -r name prefix port < <(print_config service.name consul.kv_prefix service.port); then
	cat "$run_dir/print-config.err" >&2
	exit 2
fi
if ! kv_report "$prefix"; then
	say "cannot read or seed consul kv at $addr"
	exit 1
fi
read -r free < <(free_ports "$port")
if [ "$free" != "$port" ]; then
	say "port $port is taken; the node listens on $free instead (SERVER_PORT=$free)"
	export SERVER_PORT=$free
	port=$free
fi
read -r id address < <(print_config service.id service.address)
stop_if_asked

say "starting $bin as '$id' on $address:$port (Ctrl-C stops it)"
t0=$(date +%s.%N)
setsid "$bin" -c config/meshnode.cfg </dev/null &
node_pid=$!

# Passing: the agent's own verdict on this instance (200 when passing).
passing=
for _ in $(seq 300); do
	stop_if_asked
	kill -0 "$node_pid" 2>/dev/null || break
	code=$(curl -s --noproxy '*' -o /dev/null -m 1 -w '%{http_code}' "$addr/v1/agent/health/service/id/$id")
	if [ "$code" = 200 ]; then
		passing=1
		break
	fi
	sleep 0.1
done
if [ -n "$passing" ]; then
	took=$(python3 -c 'import sys, time; print("%.1f" % (time.time() - float(sys.argv[1])))' "$t0")
	c="$top/scripts/consul"
	h="http://$address:$port"
	cat <<EOF

run: '$id' is registered and passing in Consul, ${took}s after the node started.
     node $h, agent $addr${agent_started:+ (started here; UI $addr/ui)}
     Try, in another terminal:

export CONSUL_HTTP_ADDR=$addr
curl -s '$addr/v1/health/service/$name?passing'
curl -s -XPOST -H 'Content-Type: application/json' -d '{"name":"Ada","email":"ada-$$@example.com"}' $h/users
curl -s '$h/users?limit=10'
$c kv put ${prefix}features/bulk_import true
curl -s $h/config
$c kv put ${prefix}log/level debug
$c kv delete ${prefix}log/level
$c kv put ${prefix}maintenance true
$c kv put ${prefix}maintenance false
kill -HUP $node_pid

     (bulk_import and log.level change live in /config; maintenance true takes the
     node out of ?passing, false brings it back; SIGHUP re-reads the file and KV.)
     Stop: Ctrl-C here, or kill $$.

EOF
elif kill -0 "$node_pid" 2>/dev/null; then
	say "'$id' is not passing in Consul after 30 s; see $addr/v1/health/checks/$name"
fi

# Wait for the node, or a signal. Not a plain `wait "$node_pid"`: a signal
# that came just before it (during the last command) would be counted but
# leave it blocked. A short sleep waited for in the background wakes the
# loop, and a signal cuts the wait short.
while kill -0 "$node_pid" 2>/dev/null; do
	stop_if_asked
	sleep 0.5 &
	wait $!
done
stop_if_asked
wait "$node_pid"
rc=$?
node_pid=
say "the node exited with status $rc"
exit "$rc"
