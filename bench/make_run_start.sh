#!/usr/bin/env bash
# How long `make run` takes from the command to "registered and passing in
# Consul", on this machine as it is (a fresh clone on a machine without the
# packages pays for apt, the Consul download and the build; a warm one only
# for the agent and the node), then how it stops: SIGTERM to make's run,
# exit status, anything left. Run from the checkout:
#   bench/make_run_start.sh
# Prints one line of figures; exit non-zero when it did not get to passing
# or did not stop cleanly. No tty: make run behaves as under a service
# manager (the pty case is tests/integration/test_make_run.py's).
set -u
cd "$(dirname "$0")/.."
log=$(mktemp "${TMPDIR:-/tmp}/make-run.XXXXXX")
trap 'rm -f "$log"' EXIT

t0=$(date +%s.%N)
setsid make run >"$log" 2>&1 </dev/null &
pid=$!
deadline=$((SECONDS + 1500))
while ! grep -q "is registered and passing in Consul" "$log"; do
	if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
		tail -30 "$log"
		echo "make run: not passing (exit or timeout)"
		kill -TERM -- "-$pid" 2>/dev/null
		exit 1
	fi
	sleep 0.05
done
t1=$(date +%s.%N)
node_took=$(sed -n "s/.*passing in Consul, \([0-9.]*\)s after the node started.*/\1/p" "$log" | head -1)
pids=$(sed -n 's/.*(pid \([0-9]*\)).*/\1/p' "$log" | sort -u)
pkill -TERM -P "$pid"   # scripts/run.sh, make's child
wait "$pid"
rc=$?
left=
for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
printf 'make run: passing %.1f s after the command (node passing %s s after it started); ' \
	"$(python3 -c "print($t1 - $t0)")" "${node_took:-?}"
printf 'SIGTERM: exit %d, left running: %s\n' "$rc" "${left:-none}"
[ "$rc" = 0 ] && [ -z "$left" ]
