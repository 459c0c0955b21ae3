#!/usr/bin/env bash
# Issue 21, point 4, by hand (not in make test; about 2.5 minutes): 60,000
# orders at full speed with events.retention_ms = 60000 against a real
# RabbitMQ and Consul dev agent on loopback, and the outbox's size every
# 10 s from the first order to 60 s after the last. ORDERS, RETENTION_MS,
# CONNS (wrk connections, 32), NODE_THREADS (64), AFTER_S (60) change it.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
bench_need wrk wrk
make -j2 >/dev/null
MESHNODE_BIN=$PWD/build/meshnode exec /usr/bin/python3 bench/outbox_prune.py
