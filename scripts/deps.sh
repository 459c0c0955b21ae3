#!/usr/bin/env bash
# Installs what meshnode needs: with no argument, the build and run set
# (`make run`): Debian 12's compiler and -dev packages, curl, python3 and a
# real Consul agent; the groups below add what the test suites and the other
# targets need (`make test` runs `scripts/deps.sh test rabbitmq`). Debian 12 ships no consul; Debian 11 ("bullseye") has 1.8.7,
# which is fetched with apt-get download through a private sources list under
# .deps/ and unpacked with dpkg -x. The system's apt configuration is never
# changed. A consul already on PATH wins. Idempotent: a second run only checks.
#
# Prints nothing but the path of the consul binary on its last line when
# everything is in place (scripts use: consul=$(scripts/deps.sh | tail -n1)).
#
# Arguments name extra groups for the targets that need them:
#   test     what the suites add to the build and run set (make test, make
#            bench): cmocka (the unit tests), pytest, systemd (for
#            systemd-analyze), postgresql-15, promtool, and
#            python3-cryptography (the Connect tests make certificates of
#            their own CA); see the notes on the packages below. Nothing of
#            it is needed to run a node
#   fuzz     clang-14 and its sanitizer/libFuzzer runtimes (make fuzz), and
#            llvm-14 for llvm-symbolizer, so crash reports have file:line
#   cluster  iproute2 (ip netns, veth, bridge) for make test-cluster and
#            scripts/cluster.sh; Debian's minbase lacks it (util-linux, for
#            unshare, is essential and always there); and the test group
#            (pytest, the cluster's PostgreSQL 15)
#   rabbitmq rabbitmq-server (the broker of the event tests, started by
#            tests/integration/rabbitserver.py) and python3-pika (the tests'
#            AMQP client), for make test; see the note on the package below.
#            librabbitmq-dev (rabbitmq-c, the publisher's) is in the base set
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
deps="$top/.deps"
# The test group. systemd: for systemd-analyze, which checks packaging/meshnode.service in
# the tests. A Debian 12 host has it already (it is init); in a chroot or a
# container it installs the tools and starts nothing: its maintainer scripts
# call systemctl only when systemd runs, and it does not become init (that is
# systemd-sysv, not installed).
# postgresql-15: the throwaway PostgreSQL servers of the tests and the bench
# (tests/integration/pgserver.py runs initdb and postgres from
# /usr/lib/postgresql/15/bin, psql from postgresql-client-15, and, as root,
# as the `postgres` user the package creates). The package also creates a
# `main` cluster on port 5432 and asks invoke-rc.d to start it: systemd
# starts it where it runs; with no init system (a chroot, a container) the
# start is blocked and the install still succeeds (checked on a fresh
# Debian 12 minbase chroot: exit 0, cluster 15/main down, nothing listening).
# The tests never use that cluster and never assume 5432 is free.
# rabbitmq-server (group rabbitmq): its postinst makes the rabbitmq user,
# /var/lib/rabbitmq with an .erlang.cookie, enables the systemd unit and
# calls `invoke-rc.d rabbitmq-server start`; erlang-base enables
# epmd.socket and epmd.service. Where systemd runs, that starts a broker on
# 0.0.0.0:5672 and an epmd on 4369 (stop them if they are in the way: the
# tests do not need them). With no init system invoke-rc.d finds no
# runlevel and blocks the start ("No init system and policy-rc.d missing!
# Defaulting to block."), exiting 0, so the install succeeds: checked in a
# fresh Debian 12 minbase chroot (`scripts/deps.sh rabbitmq` exit 0, then
# no beam.smp, no epmd, nothing new listening, and tests/rabbit passed
# there) and on a host without systemd whose policy-rc.d refuses too.
# The tests never use the system's broker, epmd, cookie or /etc/rabbitmq:
# tests/integration/rabbitserver.py runs its own on free loopback ports.
# The build and run set: nothing here starts a server.
pkgs=(libcivetweb-dev libcurl4-openssl-dev libjansson-dev libconfig-dev
      libsqlite3-dev libpq-dev librabbitmq-dev libssl-dev pkg-config gcc make curl
      ca-certificates openssl python3)
test_pkgs=(libcmocka-dev python3-pytest python3-cryptography systemd postgresql-15)
with_test=
for group in "$@"; do
	case $group in
	test) with_test=1 ;;
	fuzz) pkgs+=(clang-14 libclang-rt-14-dev llvm-14) ;;
	cluster) pkgs+=(iproute2); with_test=1 ;;
	rabbitmq) pkgs+=(rabbitmq-server python3-pika) ;;
	*) printf 'deps: unknown group %s\n' "$group" >&2; exit 2 ;;
	esac
done
if [ -n "$with_test" ]; then
	pkgs+=("${test_pkgs[@]}")
fi

log() { printf 'deps: %s\n' "$*" >&2; }

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || { log "not root and no sudo: install ${pkgs[*]} by hand"; exit 1; }
	sudo_cmd=(sudo)
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo_cmd[@]}" apt-get update -q >&2 || log "apt-get update failed; trying the install anyway"
	"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# The tests run PostgreSQL as Debian's postgres user, who must be able to
# pass through / to reach its own binaries. Every Debian system has / at
# 0755; a root made by hand (a chroot in a `mktemp -d` directory) can be
# 0700, where no user but root can run anything. Only then, and said.
if [ -n "$with_test" ] && [ $((8#$(stat -c %a /) & 1)) = 0 ]; then
	log "/ is $(stat -c %a /) (a root made by hand?): setting Debian's 0755, so that the postgres user can run PostgreSQL"
	"${sudo_cmd[@]}" chmod 0755 /
fi

# promtool (from Debian 12's prometheus package), for the test that checks
# /metrics the way Prometheus would. Unpacked into .deps/ like Consul, so no
# prometheus service is installed or started. Test group only.
promtool="$deps/prometheus/usr/bin/promtool"
if [ -n "$with_test" ] && [ ! -x "$promtool" ] && ! command -v promtool >/dev/null 2>&1; then
	mkdir -p "$deps/archives" "$deps/prometheus"
	log "downloading promtool (Debian's prometheus package)"
	if ! (cd "$deps/archives" && apt-get -o "APT::Sandbox::User=$(id -un)" download -q prometheus >&2); then
		"${sudo_cmd[@]}" apt-get update -q >&2
		(cd "$deps/archives" && apt-get -o "APT::Sandbox::User=$(id -un)" download -q prometheus >&2)
	fi
	dpkg -x "$(ls -t "$deps"/archives/prometheus_*.deb | head -n1)" "$deps/prometheus"
	[ -x "$promtool" ] || { log "prometheus package unpacked but $promtool is missing"; exit 1; }
fi

# Consul: one on PATH wins; otherwise the bullseye package unpacked into .deps/.
if command -v consul >/dev/null 2>&1; then
	command -v consul
	exit 0
fi
consul="$deps/consul/usr/bin/consul"
if [ -x "$consul" ]; then
	echo "$consul"
	exit 0
fi

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [ ! -r "$keyring" ]; then
	"${sudo_cmd[@]}" apt-get install -y -q debian-archive-keyring >&2
fi
apt_dir="$deps/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$deps/consul"
echo "deb [signed-by=$keyring] http://deb.debian.org/debian bullseye main" >"$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list"
          -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$apt_dir/lists"
          -o "Dir::Cache::Archives=$apt_dir/archives"
          -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
          -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)")
log "downloading consul from Debian 11 (bullseye)"
apt-get "${apt_opts[@]}" update -q >&2
(cd "$apt_dir/archives" && apt-get "${apt_opts[@]}" download consul >&2)
deb=$(ls -t "$apt_dir"/archives/consul_*.deb | head -n1)
dpkg -x "$deb" "$deps/consul"
[ -x "$consul" ] || { log "consul package unpacked but $consul is missing"; exit 1; }
log "consul $("$consul" version | head -n1) in $consul"
echo "$consul"
