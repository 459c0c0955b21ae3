# Shared by the bench scripts (sourced, not run): a work directory and the
# PIDs of what a script starts, both cleaned up on exit (TERM, then KILL
# after 15 s); free loopback ports; waiting for an HTTP answer; a Consul
# dev agent on free ports. Sets: work, pids, caddr (and cdns with DNS) after
# consul_dev_start.
work=$(mktemp -d)
pids=()
bench_cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap bench_cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done; echo "bench: $1 never answered" >&2; return 1; }

# Starts `consul agent -dev` (binary $1) on free ports, logging to
# $work/consul.log, and waits for its leader. With $2 = dns its DNS
# interface is on too, at $cdns ("127.0.0.1:PORT").
consul_dev_start() {
	local chttp pid try dns_port=-1
	# a free port may be taken again before the agent binds it: a new
	# set of ports, up to three times
	for try in 1 2 3; do
		chttp=$(free_port)
		caddr=http://127.0.0.1:$chttp
		if [ "${2:-}" = dns ]; then
			dns_port=$(free_port)
			cdns=127.0.0.1:$dns_port
		fi
		setsid "$1" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -http-port "$chttp" \
			-dns-port "$dns_port" -grpc-port -1 -serf-lan-port "$(free_port)" -serf-wan-port "$(free_port)" \
			-server-port "$(free_port)" -log-level warn >"$work/consul.log" 2>&1 &
		pid=$!
		pids+=($pid)
		for _ in $(seq 300); do
			curl -sf -o /dev/null "$caddr/v1/status/leader" && return 0
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill "$pid" 2>/dev/null || true
		echo "bench: the consul dev agent did not answer (try $try): $(tail -n 2 "$work/consul.log")" >&2
	done
	return 1
}

# Installs Debian package $2 when command $1 is missing (wrk, perf).
bench_need() {
	command -v "$1" >/dev/null && return 0
	local sudo_cmd=()
	[ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
	DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q "$2" >/dev/null
}

# Builds a bench program: cc OUT SOURCES... against build/libmeshnode.a
# (the library beside the binary $bin), with symbols for perf.
bench_cc() {
	local out=$1
	shift
	cc -O2 -g -std=c11 -Wall -Wextra -D_GNU_SOURCE -Iinclude -Ibench \
		$(pkg-config --cflags libcurl) -o "$out" "$@" "$(dirname "$bin")/libmeshnode.a" \
		-lcivetweb -lcurl -ljansson -lconfig -lsqlite3 -lresolv -lm -pthread
}

# Starts a meshnode ($bin) registered in the agent at $caddr and waits for
# its /health: NAME 'MODULES' DRIVER LOG_LEVEL [THREADS]. Sets node_port and
# node_pid (no subshell: the PID must reach pids); logs to
# $work/NAME-PORT.log.
mesh_node_start() {
	local port
	port=$(free_port)
	cat >"$work/$1-$port.cfg" <<CFG
service = { name = "$1"; port = $port; modules = [ $2 ]; };
server = { threads = ${5:-64}; };
consul = { address = "$caddr"; check_interval_ms = 1000; check_timeout_ms = 1000; };
database = { driver = "$3"; path = "$work/mesh-$1.db"; };
log = { level = "$4"; };
CFG
	"$bin" -c "$work/$1-$port.cfg" >"$work/$1-$port.log" 2>&1 &
	node_pid=$!
	pids+=($node_pid)
	wait_http "http://127.0.0.1:$port/health"
	node_port=$port
}

# Stops one process started here (TERM, then KILL after 15 s) and takes it
# out of pids.
bench_stop() {
	local p keep=()
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 150); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	pids=("${keep[@]}")
}

# The median line of ';'-separated records, by their first (numeric) field.
bench_median() { tr ';' '\n' | awk 'NF' | sort -n -k1 | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }

# wrk's "850.12us" / "1.20ms" / "2.01s" in milliseconds ("n/a" for none).
bench_ms() { awk '{v=$1; if (v == "") {print "n/a"; exit} if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.2f", v}'; }

# "date; commit" for a section of bench/RESULTS.md.
bench_stamp() {
	echo "$(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src include bench ':!bench/RESULTS.md' 2>/dev/null || echo ' with local changes')"
}

# Puts the markdown section in file $1 (it starts "## <title>") into
# bench/RESULTS.md in place of the one with the same title, or before the
# section titled $2 when there is none, or at the end.
results_section() {
	/usr/bin/python3 - "$1" "${2:-}" <<'PY'
import re, sys
sec = open(sys.argv[1]).read()
title = sec.split("\n", 1)[0]
try:
    text = open("bench/RESULTS.md").read()
except FileNotFoundError:
    text = ""
parts = [p for p in re.split(r"(?m)^(?=## )", text) if p.strip()]
old = next((i for i, p in enumerate(parts) if p.split("\n", 1)[0] == title), None)
if old is not None:
    parts[old] = sec
else:
    at = next((i for i, p in enumerate(parts) if sys.argv[2] and p.startswith("## " + sys.argv[2])),
              len(parts))
    parts.insert(at, sec)
open("bench/RESULTS.md", "w").write("\n".join(p.strip("\n") + "\n" for p in parts))
PY
}

# Starts a meshnode users node ($bin) with the shipped defaults (nothing
# under server.* or consul.check_*) registered with the agent at $caddr;
# sets mport and mpid (no subshell: the PID must reach pids).
start_default_node() {
	mport=$(free_port)
	cat >"$work/meshnode.cfg" <<CFG
service = { port = $mport; };
consul = { address = "$caddr"; };
database = { path = "$work/users.db"; };
CFG
	"$bin" -c "$work/meshnode.cfg" >"$work/meshnode.log" 2>&1 &
	mpid=$!
	pids+=("$mpid")
	wait_http "http://127.0.0.1:$mport/health"
}

# The shipped default of setting $1 (from --print-config of $bin; no agent
# is asked).
bench_default_setting() {
	printf 'consul = { address = "http://127.0.0.1:1"; };\n' >"$work/print-config.cfg"
	"$bin" --print-config -c "$work/print-config.cfg" 2>/dev/null |
		/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["settings"][sys.argv[1]]["value"])' "$1"
}
