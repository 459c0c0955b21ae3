#!/usr/bin/env bash
# Runs every unit test program under BUILD/tests, the allocation-failure
# programs under build/alloc/tests/alloc and every integration suite under
# tests/integration, then prints one line over all of them:
#   N passed, M failed
# and exits non-zero when anything failed or nothing ran.
set -u
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

passed=0
failed=0
failed_names=()
logdir=$(mktemp -d "${TMPDIR:-/tmp}/meshnode-tests.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

# cmocka prints "[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s)...";
# so do the allocation-failure runs (tests/alloc/, always built in
# build/alloc/ by `make alloc-build`), one test per case, run after them.
for t in $(find "$build/tests" -type f -perm -u+x -name 'test_*' 2>/dev/null | sort) \
	$(find build/alloc/tests/alloc -type f -perm -u+x -name 'alloc_*' 2>/dev/null | sort); do
	name=${t#"$build/tests/"}
	name=${name#build/alloc/tests/}
	out="$logdir/unit.log"
	"$t" >"$out" 2>&1
	rc=$?
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n1)
	p=${p:-0}
	f=${f:-0}
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		f=1 # crashed or sanitizer abort before cmocka's summary
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$f" != 0 ]; then
		failed_names+=("unit/$name")
		cat "$out"
	fi
	printf 'unit  %-40s %3d passed, %d failed\n' "$name" "$p" "$f"
done

# pytest runs them (tests/integration/conftest.py): Debian's, which belongs
# to /usr/bin/python3, whatever python3 comes first on PATH. Its conftest
# writes "<passed> <failed>": meshnode's tests passed, and every test that
# failed (those of the harness alone too). Exit code 5: no test collected,
# which counts as a failure like any other run that ran nothing.
if compgen -G "tests/integration/test_*.py" >/dev/null; then
	res="$logdir/integration.result"
	MESHNODE_BIN="$top/$build/meshnode" /usr/bin/python3 -m pytest tests/integration \
		-v -rfEsP --result "$res"
	rc=$?
	if [ -s "$res" ]; then
		read -r ip if_ <"$res"
	else
		ip=0 if_=1
	fi
	if [ "$rc" = 5 ]; then echo "integration: no test collected"; fi
	if [ "$rc" != 0 ] && [ "$if_" = 0 ]; then if_=1; fi
	passed=$((passed + ip))
	failed=$((failed + if_))
	[ "$if_" != 0 ] && failed_names+=("integration")
fi

if [ ${#failed_names[@]} -gt 0 ]; then
	echo "failing suites: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
