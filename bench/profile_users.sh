#!/usr/bin/env bash
# Where a users node's time and memory go (issue 14, point 2): a meshnode
# users node on its shipped defaults (SQLite) and bare civetweb
# (bench/bare.c, the same thread count), each under wrk on loopback, one
# row at a time:
#  - CPU per request and context switches per request (perf stat on the
#    server process), system calls per request (perf trace -s), and the
#    shares of the kernel, libc, SQLite, civetweb, jansson and meshnode in
#    the server's CPU samples (perf record, no call graphs);
#  - idle memory: VmRSS split into thread stacks, the shared libraries'
#    file pages, and the rest (heap, malloc arenas, SQLite), from smaps;
#    and what linking libcurl and its global init alone cost a C program.
# Writes the "## Where a users node's time and memory go" section of
# bench/RESULTS.md. Part of `make bench` (PROFILE=0 skips it); alone:
#   bench/profile_users.sh [build/meshnode]
# About 2 minutes. Needs perf (linux-perf, installed when missing) and the
# right to trace the processes it starts (root, or perf_event_paranoid <= 1).
set -euo pipefail
bin=${1:-build/meshnode}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
SECS=${PROFILE_SECONDS:-4}
py=/usr/bin/python3
t_begin=$(date +%s)

. bench/lib.sh
bench_need wrk wrk
bench_need perf linux-perf
cc -O2 -o "$work/bare" bench/bare.c -lcivetweb -pthread
cat >"$work/curl_init.c" <<'C'
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
/* VmRSS and RssFile of a program that links libcurl, with or without
 * curl_global_init() (argv[1] = "init"). */
int main(int argc, char **argv)
{
	char line[256];
	FILE *f;

	if (argc > 1 && strcmp(argv[1], "init") == 0)
		curl_global_init(CURL_GLOBAL_ALL);
	f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "VmRSS:", 6) == 0 || strncmp(line, "RssFile:", 8) == 0)
			fputs(line, stdout);
	return 0;
}
C
cc -O2 -o "$work/curl_init" "$work/curl_init.c" -lcurl

caddr=http://127.0.0.1:1 # no agent: the node keeps trying it, off the request path
start_default_node
threads=$(bench_default_setting server.threads)
bport=$(free_port)
"$work/bare" "$bport" "$threads" &
bpid=$!
pids+=("$bpid")
wait_http "http://127.0.0.1:$bport/users/1"
curl -sf -o /dev/null -XPOST -H 'Content-Type: application/json' \
	-d '{"name":"Ada","email":"ada@example.com"}' "http://127.0.0.1:$mport/users"
sleep 2

# ---- idle memory, before any load
$py - "$mpid" >"$work/idle.md" <<'PY'
import collections, sys
pid = sys.argv[1]
stacks = stack_rss = 0
files = collections.Counter()
anon_other = 0
cur = None
for line in open(f"/proc/{pid}/smaps"):
    p = line.split()
    if "-" in p[0] and len(p) >= 5 and ":" in p[3]:
        a, b = (int(x, 16) for x in p[0].split("-"))
        name = p[5] if len(p) > 5 else ""
        size = (b - a) // 1024
        if name == "" and size == 100:
            cur, kind = "stack", None
            stacks += 1
        elif name.startswith("/"):
            cur, kind = "file", name
        else:
            cur, kind = "anon", None
    elif p[0] == "Rss:" and cur:
        kb = int(p[1])
        if cur == "stack":
            stack_rss += kb
        elif cur == "file":
            files[kind] += kb
        else:
            anon_other += kb
status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
vmrss = int(status["VmRSS"].split()[0])
lib_total = sum(files.values())
top = ", ".join(f"{k.rsplit('/', 1)[-1]} {v / 1024:.1f}" for k, v in files.most_common(6))
print(f"| the whole node (VmRSS) | {vmrss / 1024:.1f} |")
print(f"| {stacks} thread stacks (100 KiB reserved each; {stack_rss / max(stacks, 1):.0f} KB touched each) | {stack_rss / 1024:.1f} |")
print(f"| mapped files: the binary and {len(files) - 1} shared libraries (largest: {top}) | {lib_total / 1024:.1f} |")
print(f"| the rest: heap, malloc arenas, SQLite's caches, the libraries' relocated data | {anon_other / 1024:.1f} |")
PY
read -r curl_rss0 curl_file0 < <("$work/curl_init" | awk '{print $2}' | paste -sd' ')
read -r curl_rss1 curl_file1 < <("$work/curl_init" init | awk '{print $2}' | paste -sd' ')

# ---- time per request
# profile NAME PID CONNS WRK_ARGS...: one table row
profile() {
	local name=$1 pid=$2 conns=$3 out rps n cs tc
	shift 3
	perf stat -e context-switches,task-clock -p "$pid" -o "$work/stat" -- sleep "$SECS" &
	local sp=$!
	sleep 0.1
	out=$(wrk -t2 -c"$conns" -d"${SECS}s" "$@")
	wait "$sp"
	rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	n=$(awk '/requests in/ {print $1}' <<<"$out")
	cs=$(awk '/context-switches/ {gsub(",", "", $1); print $1}' "$work/stat")
	tc=$(awk '/task-clock/ {gsub(",", "", $1); print $1}' "$work/stat")
	perf trace -s -p "$pid" -o "$work/trace" -- sleep 2 2>/dev/null &
	sp=$!
	sleep 0.3
	local n2
	n2=$(wrk -t2 -c"$conns" -d1s "$@" | awk '/requests in/ {print $1}')
	wait "$sp" || true
	perf record -F 2000 -p "$pid" -o "$work/perf.data" -- sleep 2 >/dev/null 2>&1 &
	sp=$!
	sleep 0.1
	wrk -t2 -c"$conns" -d2s "$@" >/dev/null
	wait "$sp" || true
	perf report -i "$work/perf.data" --stdio --sort dso -g none 2>/dev/null >"$work/dso"
	$py - "$name" "$conns" "$rps" "$n" "$cs" "$tc" "$work/trace" "$n2" "$work/dso" <<'PY'
import re, sys, collections
name, conns, rps, n, cs, tc, trace, n2, dso = sys.argv[1:]
n, cs, tc, n2 = int(n), float(cs), float(tc), max(int(n2), 1)
calls = collections.Counter()
for line in open(trace):
    m = re.match(r"\s+(\w+)\s+(\d+)\s+\d+\s+[\d.]+", line)
    if m:
        calls[m.group(1)] += int(m.group(2))
# perf trace may lose events under load: counted per response sent (one
# sendto each, in both servers) rather than per request wrk counted
n2 = calls.get("sendto", 0) or n2
per = sum(calls.values()) / n2
top = ", ".join(f"{k} {v / n2:.1f}" for k, v in calls.most_common(6))
shares = collections.Counter()
for line in open(dso):
    m = re.match(r"\s+([\d.]+)%\s+(\S+)", line)
    if not m:
        continue
    d = m.group(2)
    key = ("kernel" if "kernel" in d else "libc" if d.startswith("libc.") else
           "SQLite" if "sqlite" in d else "civetweb" if "civetweb" in d else
           "jansson" if "jansson" in d else "meshnode" if d in ("meshnode", "bare") else "other")
    shares[key] += float(m.group(1))
sh = " / ".join(f"{shares[k]:.0f}" for k in ("kernel", "libc", "SQLite", "civetweb", "jansson", "meshnode", "other"))
print(f"| {name} | {conns} | {float(rps):,.0f} | {tc * 1000 / n:.1f} | {cs / n:.2f} | {per:.1f} ({top}) | {sh} |")
PY
}
{
	profile "bare civetweb, GET /users/1" "$bpid" 50 "http://127.0.0.1:$bport/users/1"
	profile "meshnode, GET /users/1" "$mpid" 50 "http://127.0.0.1:$mport/users/1"
	profile "meshnode, GET /health" "$mpid" 50 "http://127.0.0.1:$mport/health"
	profile "bare civetweb, GET /users/1" "$bpid" 200 "http://127.0.0.1:$bport/users/1"
	profile "meshnode, GET /users/1" "$mpid" 200 "http://127.0.0.1:$mport/users/1"
	profile "meshnode, POST /users" "$mpid" 50 -s bench/post_user.lua "http://127.0.0.1:$mport/users" -- profile
} >"$work/rows.md"

section=$work/section.md
{
	echo "## Where a users node's time and memory go"
	echo
	echo "- date: $(bench_stamp)"
	echo "- machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r); loopback only"
	echo "- bench/profile_users.sh, $(($(date +%s) - t_begin)) s in all: a meshnode users node on its shipped defaults (SQLite, server.threads $threads, log level info; no Consul agent) and bare civetweb with $threads threads; perf $(perf version | awk '{print $3}'): \`perf stat\` (task-clock, context switches) over a ${SECS} s wrk run, \`perf trace -s\` over a 1 s run, \`perf record -F 2000\` (no call graphs) over a 2 s run"
	echo "- on this VM's kernel a system call costs several microseconds (the samples of the kernel's interrupt-enable path on syscall exit and context switch, pvm_irq_enable, are most of the kernel share): system calls and context switches per request are what separate the rows"
	echo
	echo "| row | conns | req/s | CPU per request (µs) | context switches per request | system calls per response sent (the most frequent) | CPU samples % kernel / libc / SQLite / civetweb / jansson / meshnode (or bare) / other |"
	echo "|---|---|---|---|---|---|---|"
	cat "$work/rows.md"
	echo
	echo "Idle memory of the same node, before any request but one (MB):"
	echo
	echo "| part | MB |"
	echo "|---|---|"
	cat "$work/idle.md"
	echo
	echo "A C program that only links libcurl (Debian's, OpenSSL build) has a VmRSS of $(awk -v k="$curl_rss0" 'BEGIN {printf "%.1f", k/1024}') MB ($(awk -v k="$curl_file0" 'BEGIN {printf "%.1f", k/1024}') MB of it mapped files); after \`curl_global_init()\`, which initializes OpenSSL whatever its flags, $(awk -v k="$curl_rss1" 'BEGIN {printf "%.1f", k/1024}') MB ($(awk -v k="$curl_file1" 'BEGIN {printf "%.1f", k/1024}') MB)."
} >"$section"
results_section "$section" "PostgreSQL beside SQLite"
cat "$section"
