#!/usr/bin/env bash
# Where the CPU time of a peer call goes (issue 9, point 3): perf record on
# bench/peer_modes in discovery mode only (resolver snapshot + peer client,
# 8 threads), then bench/profile_summary.py: the shares of the kernel,
# libcurl, libc (malloc, locks), jansson and meshnode's own modules, the top
# symbols by self time and meshnode's functions by children time, as
# markdown on stdout. Called by bench/mesh_scale.sh against its agent and
# users nodes; alone (with an agent and users nodes of your own):
#   bench/profile_peer.sh PEER_MODES CONSUL_ADDR FIXED_URLS [SECONDS] [LIBMESHNODE_A]
# Call graphs are DWARF ones: Debian's libc and libcurl and our -O2 build
# keep no frame pointers, so plain `-g` would cut most stacks short. Where
# the hardware cycles event is missing (VMs) perf falls back to cpu-clock;
# the summary names the event used.
set -euo pipefail
pm=$1 caddr=$2 urls=$3 secs=${4:-4} lib=${5:-build/libmeshnode.a}
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_need perf linux-perf

perf record -F 999 --call-graph dwarf,8192 -o "$work/perf.data" -- \
	"$pm" "$caddr" "$urls" 8 "$secs" discovery >"$work/calls" 2>"$work/perf.log" || {
	echo "perf could not record here ($(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null ||
		echo '?') in perf_event_paranoid): $(tail -n1 "$work/perf.log")"
	exit 0
}
report() { perf report -i "$work/perf.data" --stdio -t '|' --sort dso,sym -g none --percent-limit 0 "$@" 2>/dev/null; }
report --no-children >"$work/self"
report --children >"$work/children"
nm -A --defined-only "$lib" >"$work/nm.lib"
nm --defined-only "$pm" >"$work/nm.bin"
read -r _ cps p50 p99 failed _ <"$work/calls"
event=$(perf evlist -i "$work/perf.data" 2>/dev/null | head -n1)
samples=$(perf report -i "$work/perf.data" --stdio --no-children -t '|' -n --sort dso -g none 2>/dev/null |
	awk -F'|' '!/^#/ && NF > 2 {s += $2} END {print s + 0}')
echo "perf $(perf version | awk '{print $3}'), event \`$event\` at 999 Hz, DWARF call graphs, $samples samples;"
echo "peer_modes discovery only, 8 threads, $secs s: $cps calls/s, p50 $p50 ms, p99 $p99 ms, $failed failed under the profiler."
echo
/usr/bin/python3 bench/profile_summary.py "$work/self" "$work/children" "$work/nm.lib" "$work/nm.bin"
