#!/usr/bin/env bash
# A meshnode cluster on separate "hosts" on this machine, to try by hand:
# network namespaces on a private bridge (10.213.x.0/24, no route out), three
# Consul servers, a client agent per host, users nodes on two hosts and an
# orders node on a third (tests/cluster/cluster.py, which the cluster test
# uses too). Needs root.
#   scripts/cluster.sh up       builds what is missing, starts it all, prints
#                               how to reach each node and agent
#   scripts/cluster.sh status   its processes and `consul members`
#   scripts/cluster.sh down     removes every process, namespace and the bridge
#                               it made (recorded in build/cluster/state.json)
#   scripts/cluster.sh down --run ID
#                               the same for a cluster whose state file is lost,
#                               found by the marker on its namespaces
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
case ${1:-} in
up)
	scripts/deps.sh cluster >/dev/null
	make --no-print-directory -s build/meshnode
	;;
down | status) ;;
*)
	echo "usage: scripts/cluster.sh up|down|status" >&2
	exit 2
	;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "scripts/cluster.sh: needs root (network namespaces and a bridge)" >&2
	exit 1
fi
# Debian's python3, as the tests use: the first python3 on PATH may be another
exec /usr/bin/python3 tests/cluster/cluster.py "$@"
