# Shared by the bench scripts (sourced, not run): a work directory and the
# PIDs of what a script starts, both cleaned up on exit (TERM, then KILL
# after 15 s); free loopback ports; waiting for an HTTP answer; a Consul
# dev agent on free ports. Sets: work, pids, caddr (after consul_dev_start).
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
# $work/consul.log, and waits for its leader.
consul_dev_start() {
	local chttp
	chttp=$(free_port)
	caddr=http://127.0.0.1:$chttp
	setsid "$1" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -http-port "$chttp" \
		-dns-port -1 -grpc-port -1 -serf-lan-port "$(free_port)" -serf-wan-port "$(free_port)" \
		-server-port "$(free_port)" -log-level warn >"$work/consul.log" 2>&1 &
	pids+=($!)
	wait_http "$caddr/v1/status/leader"
}
