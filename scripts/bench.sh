#!/usr/bin/env bash
# `make bench`: writes bench/RESULTS.md, one section per part, each with its
# machine, date and commit; a part run alone rewrites only its own section.
#  - meshnode against the reference design (bench/vs_go.sh): the Go users
#    service of the design meshnode grew from, bare civetweb and meshnode
#    on its shipped defaults, side by side in one run, GET /users/{id},
#    POST /users, GET /health and POST /orders at 50 and 200 connections,
#    peak and idle RSS, start to passing in Consul; about 8 minutes;
#    VSGO=0 skips it;
#  - where a users node's time and memory go (bench/profile_users.sh: CPU,
#    context switches and system calls per request, perf's shares by
#    library, the idle RSS split; about 2 minutes; PROFILE=0);
#  - PostgreSQL beside SQLite (bench/postgres.sh; about 2 minutes; PG=0);
#  - the mesh at scale (bench/mesh_scale.sh: peer calls through discovery
#    with 2 to 10,000 passing instances, a CPU profile, an orders node's
#    RSS; about 4 minutes; MESH=0);
#  - discovery through blocking queries against DNS (bench/dns_vs_http.sh;
#    about a minute; DNS=0);
#  - the KV flood (bench/kv_flood.sh: RSS and reload time with 100,000 and
#    10,000 keys; one to two minutes; KVFLOOD=0);
#  - hostile connections (bench/hostile.sh: idle and slow connections
#    against the shipped defaults, beside bare civetweb; about 4-5 minutes;
#    HOSTILE=0);
#  - Consul Connect (bench/connect.sh: GET /users/{id}, new connections and
#    POST /orders in plain HTTP, native mutual TLS and through a pair of
#    `consul connect proxy` sidecars; about 3 minutes; CONNECT=0).
# Every wrk run is bounded in time; each part stops what it started by PID.
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# The file's head; the parts' sections below it stay until they rewrite them.
{
	echo "# meshnode benchmark"
	echo
	echo "\`make bench\` (scripts/bench.sh) writes each section below; each names its machine,"
	echo "date and commit. The machines are shared and noisy: compare the ratios within a"
	echo "section (measured side by side in one run), not figures across sections."
	if [ -f bench/RESULTS.md ]; then
		echo
		awk '/^## / {keep = 1} keep' bench/RESULTS.md
	fi
} >bench/RESULTS.md.new
mv bench/RESULTS.md.new bench/RESULTS.md

if [ "${VSGO:-1}" != 0 ]; then
	bench/vs_go.sh "$bin"
fi
if [ "${PROFILE:-1}" != 0 ]; then
	bench/profile_users.sh "$bin"
fi
if [ "${PG:-1}" != 0 ]; then
	bench/postgres.sh "$bin"
fi
if [ "${MESH:-1}" != 0 ]; then
	bench/mesh_scale.sh "$bin"
fi
if [ "${DNS:-1}" != 0 ]; then
	bench/dns_vs_http.sh "$bin"
fi
if [ "${KVFLOOD:-1}" != 0 ]; then
	. bench/lib.sh
	kv_section=$work/kv_section.md
	bench/kv_flood.sh "$bin" >"$kv_section"
	results_section "$kv_section" "Hostile connections"
fi
if [ "${HOSTILE:-1}" != 0 ]; then
	bench/hostile.sh "$bin"
fi
if [ "${CONNECT:-1}" != 0 ]; then
	bench/connect.sh "$bin"
fi
