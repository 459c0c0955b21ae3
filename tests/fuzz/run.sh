#!/usr/bin/env bash
# `make fuzz`: for each target, replays the inputs that once crashed it
# (tests/fuzz/regressions/<target>/), then fuzzes it for SECONDS from a fresh
# copy of its seed corpus (tests/fuzz/corpus/<target>/ is never written).
# Work corpora, logs and crash artifacts stay under BUILD. Prints one line a
# target and exits non-zero when any target crashed.
#
#   tests/fuzz/run.sh BUILD SECONDS TARGET...
set -u
build=$1
seconds=$2
shift 2
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 2

# Debian's llvm-14 installs the symbolizer under a versioned name only.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && ! command -v llvm-symbolizer >/dev/null &&
   [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
	export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi

# A target's own libFuzzer options: its dictionary, by what its input is,
# and for fuzz_config_file no leak check after every input: Debian's
# libconfig leaks a few bytes on most syntax errors (suppressed, see the
# target), and each suppressed leak would cost a full LeakSanitizer scan,
# a sixth of the speed. Leaks are still reported when the run ends; replay
# the corpus files one by one to find the input.
options_of() {
	case $1 in
	fuzz_router) echo -dict=tests/fuzz/dict/http.dict ;;
	fuzz_config_file) echo -dict=tests/fuzz/dict/config.dict -detect_leaks=0 ;;
	fuzz_config_* | fuzz_settings_*) echo -dict=tests/fuzz/dict/config.dict ;;
	fuzz_base64) ;;
	*) echo -dict=tests/fuzz/dict/json.dict ;;
	esac
}

# The value of libFuzzer's final "stat::<name>: N" line, "?" when absent.
stat_of() {
	local v
	v=$(sed -n "s/^stat::$1: *\([0-9]*\).*/\1/p" "$2" | tail -n1)
	echo "${v:-?}"
}

crashed=()
for t in "$@"; do
	bin="$build/$t"
	work="$build/corpus/$t"
	art="$build/artifacts/$t"
	log="$build/logs/$t.log"
	rm -rf "$work" "$art"
	mkdir -p "$work" "$art" "$build/logs"
	seeds=0
	if [ -d "tests/fuzz/corpus/$t" ]; then
		cp tests/fuzz/corpus/"$t"/* "$work"/ 2>/dev/null
		seeds=$(find "$work" -type f | wc -l)
	fi
	# shellcheck disable=SC2207 # options_of prints words without spaces
	opts=(-artifact_prefix="$art/" -timeout=60 -rss_limit_mb=2048 -print_final_stats=1
	      $(options_of "$t"))

	status=ok
	regressions=()
	if [ -d "tests/fuzz/regressions/$t" ]; then
		mapfile -t regressions < <(find "tests/fuzz/regressions/$t" -type f | sort)
	fi
	if [ ${#regressions[@]} -gt 0 ] &&
	   ! "$bin" "${opts[@]}" "${regressions[@]}" >"$log.regressions" 2>&1; then
		status="REGRESSION (see $log.regressions)"
	elif ! "$bin" "${opts[@]}" -max_total_time="$seconds" "$work" >"$log" 2>&1; then
		status="CRASH (see $log)"
	fi

	done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" 2>/dev/null | tail -n1)
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
	found=$(find "$art" -type f | wc -l)
	printf '%-20s runs %9s  cov %4s  ft %5s  corpus %3s -> %4s  new %4s  regressions %2d  crashes %d  %s\n' \
		"$t" "$(stat_of number_of_executed_units "$log")" "${cov:-?}" "${ft:-?}" "$seeds" \
		"$(find "$work" -type f | wc -l)" "$(stat_of new_units_added "$log")" \
		"${#regressions[@]}" "$found" "$status"
	if [ "$status" != ok ]; then
		crashed+=("$t")
		find "$art" -type f -printf '  artifact: %p\n'
	fi
done

if [ ${#crashed[@]} -gt 0 ]; then
	echo "fuzz: ${#crashed[@]} target(s) crashed: ${crashed[*]}"
	exit 1
fi
echo "fuzz: $# target(s), no crash"
