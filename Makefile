# meshnode build. `make` builds build/meshnode; `make test` installs what is
# missing, builds and runs every suite; SANITIZE=address,undefined builds and
# tests with sanitizers in build/san/. `make install` / `make uninstall`
# honour PREFIX, BINDIR, SYSCONFDIR, LIBDIR, UNITDIR and DESTDIR.

VERSION    := 0.1.0
CC         ?= cc
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= $(PREFIX)/etc
LIBDIR     ?= $(PREFIX)/lib
# systemd reads system units from /usr/local/lib/systemd/system and
# /usr/lib/systemd/system, so the unit follows PREFIX for both; with another
# PREFIX (/opt/meshnode) give UNITDIR=/etc/systemd/system.
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SANITIZE   ?=
WERROR     ?= -Werror

ifneq ($(SANITIZE),)
BUILD      ?= build/san
SANFLAGS   := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
else
BUILD      ?= build
SANFLAGS   :=
endif

WARNINGS   := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
              -Wformat=2 -Wvla -Wwrite-strings -fno-common $(WERROR)
CPPFLAGS   += -Iinclude -D_GNU_SOURCE -DMESHNODE_VERSION='"$(VERSION)"' \
              $(shell pkg-config --cflags libcurl 2>/dev/null) \
              $(shell pkg-config --cflags libpq 2>/dev/null)
CFLAGS     ?= -O2 -g
CFLAGS     += -std=c11 -pthread $(WARNINGS) $(SANFLAGS) -MMD -MP
LDFLAGS    += -pthread $(SANFLAGS)
LDLIBS     := -lcivetweb -lcurl -lssl -lcrypto -ljansson -lconfig -lsqlite3 -lpq -lrabbitmq -lresolv -lm

# src/tls_shim/ holds the TLS runtime shims: shared objects of their own,
# never in the library (see TLS_SHIMS below).
SRC        := $(shell find src -name '*.c' ! -name main.c ! -path 'src/tls_shim/*' | sort)
OBJ        := $(SRC:%.c=$(BUILD)/obj/%.o)
LIB        := $(BUILD)/libmeshnode.a
# Two binaries from the same library, differing only in the configuration
# file read when no -c is given (compiled into main.c): build/meshnode,
# run from the source tree, reads config/meshnode.cfg; the one `make
# install` copies reads $(SYSCONFDIR)/meshnode/meshnode.cfg.
BIN        := $(BUILD)/meshnode
INSTALL_BIN := $(BUILD)/install/meshnode
CONFIG_FILE := $(SYSCONFDIR)/meshnode/meshnode.cfg

# The TLS runtime shims (docs/connect.md, "TLS runtime"): libssl.so and
# libcrypto.so by SONAME, linked to OpenSSL 3 by its versioned names (not
# libssl-dev's links), loaded by http/tls_runtime.c from $(BUILD)/tls/
# next to build/meshnode, or from TLS_INSTALL_DIR for the installed
# binary. Built without the sanitizers: the file shipped is the file the
# sanitizer builds load.
TLS_SHIMS  := $(BUILD)/tls/libssl.so $(BUILD)/tls/libcrypto.so
TLS_INSTALL_DIR := $(LIBDIR)/meshnode
SHIM_CFLAGS := $(filter-out $(SANFLAGS),$(CFLAGS)) -fPIC
SHIM_LDFLAGS := -shared -Wl,-z,defs -Wl,--no-as-needed

UNIT_SRC   := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# Programs that need a real Consul agent (tests/agent/README.md): built with
# the unit tests, run by tests/integration/test_agent_programs.py.
AGENT_SRC  := $(sort $(wildcard tests/agent/agent_*.c))
AGENT_BIN  := $(AGENT_SRC:tests/agent/%.c=$(BUILD)/agent/%)

.PHONY: all deps test-deps test test-cluster unit-build run demo bench docs install uninstall clean format FORCE
all: $(BIN) $(INSTALL_BIN) $(TLS_SHIMS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/obj/src/main.o: CPPFLAGS += -DMESHNODE_DEFAULT_CONFIG='"config/meshnode.cfg"' \
	-DMESHNODE_TLS_DIR='""'

$(BUILD)/tls/libssl.so: src/tls_shim/libssl_shim.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(SHIM_CFLAGS) $(SHIM_LDFLAGS) -Wl,-soname,libssl.so $< -l:libssl.so.3 -o $@

$(BUILD)/tls/libcrypto.so: src/tls_shim/libcrypto_shim.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(SHIM_CFLAGS) $(SHIM_LDFLAGS) -Wl,-soname,libcrypto.so $< -l:libcrypto.so.3 -o $@

$(BIN): $(BUILD)/obj/src/main.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The installed binary's main.o depends on a file holding the path compiled
# into it, rewritten only when that path changes: `make install` with
# another PREFIX or SYSCONFDIR than the last build compiles main.c again
# (and nothing else) instead of installing a binary that looks elsewhere.
# The same for the TLS shims' directory (MESHNODE_TLS_DIR; "" in
# build/meshnode: the tls/ directory next to the binary).
$(BUILD)/install/config-file: FORCE
	@mkdir -p $(@D)
	@echo '$(CONFIG_FILE)' | cmp -s - $@ || echo '$(CONFIG_FILE)' >$@

$(BUILD)/install/tls-dir: FORCE
	@mkdir -p $(@D)
	@echo '$(TLS_INSTALL_DIR)' | cmp -s - $@ || echo '$(TLS_INSTALL_DIR)' >$@

$(BUILD)/install/main.o: src/main.c $(BUILD)/install/config-file $(BUILD)/install/tls-dir
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -DMESHNODE_DEFAULT_CONFIG='"$(CONFIG_FILE)"' \
		-DMESHNODE_TLS_DIR='"$(TLS_INSTALL_DIR)"' $(CFLAGS) -c $< -o $@

$(INSTALL_BIN): $(BUILD)/install/main.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) $< $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka -o $@

$(BUILD)/agent/%: tests/agent/%.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests/agent $(CFLAGS) $< $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka -o $@

# The settings reference: docs/configuration.md between its marker lines,
# from the settings table (src/config/settings.c); test_settings_doc fails
# when the checked-in page is stale.
$(BUILD)/settings_doc: scripts/settings_doc.c $(LIB)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(LIB) $(LDFLAGS) $(LDLIBS) -o $@

docs: $(BUILD)/settings_doc
	$(BUILD)/settings_doc docs/configuration.md

# What building and running a node needs (compiler, -dev libraries, curl,
# consul), and no more: no server is installed or started.
deps:
	scripts/deps.sh >/dev/null

# What the suites add (cmocka, pytest, systemd-analyze, PostgreSQL 15,
# promtool) and rabbitmq: the broker and the AMQP client of the event tests.
test-deps:
	scripts/deps.sh test rabbitmq >/dev/null

# `make test` runs test-deps first (a sub-make, so the wildcard lists are read
# after the packages are in place), then builds, then every suite.
test: test-deps
	$(MAKE) --no-print-directory unit-build
	$(MAKE) --no-print-directory alloc-build
	scripts/run-tests.sh $(BUILD)

unit-build: $(BIN) $(TLS_SHIMS) $(UNIT_BIN) $(AGENT_BIN)

# test_tls_runtime loads the shims of its own build (../../tls from its
# binary) and makes its certificates with OpenSSL.
$(BUILD)/tests/http/test_tls_runtime: $(TLS_SHIMS)

# Nodes on separate network namespaces with a three-server Consul cluster
# (tests/cluster): needs root; about three minutes.
test-cluster:
	scripts/deps.sh cluster >/dev/null
	$(MAKE) --no-print-directory $(BIN)
	MESHNODE_BIN=$(CURDIR)/$(BIN) /usr/bin/python3 -m pytest tests/cluster -v -rfEs

run: deps
	$(MAKE) --no-print-directory $(BIN)
	scripts/run.sh $(BIN)

demo: deps
	scripts/deps.sh rabbitmq >/dev/null
	$(MAKE) --no-print-directory $(BIN)
	scripts/demo.sh $(BIN)

bench: test-deps
	$(MAKE) --no-print-directory $(BIN)
	scripts/bench.sh $(BIN)

# The binary, the TLS runtime shims, the example configuration (only where
# there is none: an operator's file is never overwritten) and the systemd
# unit with the binary's path. Nothing is started or enabled: see
# docs/operations.md.
install: $(INSTALL_BIN) $(TLS_SHIMS)
	install -d '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(SYSCONFDIR)/meshnode' '$(DESTDIR)$(UNITDIR)' \
		'$(DESTDIR)$(TLS_INSTALL_DIR)'
	install -m 0755 $(INSTALL_BIN) '$(DESTDIR)$(BINDIR)/meshnode'
	install -m 0644 $(TLS_SHIMS) '$(DESTDIR)$(TLS_INSTALL_DIR)/'
	@if [ -e '$(DESTDIR)$(CONFIG_FILE)' ]; then \
		echo 'kept $(DESTDIR)$(CONFIG_FILE) (config/meshnode.cfg is the example)'; \
	else \
		echo "install -m 0644 config/meshnode.cfg '$(DESTDIR)$(CONFIG_FILE)'"; \
		install -m 0644 config/meshnode.cfg '$(DESTDIR)$(CONFIG_FILE)'; \
	fi
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		packaging/meshnode.service >'$(DESTDIR)$(UNITDIR)/meshnode.service.tmp'
	chmod 0644 '$(DESTDIR)$(UNITDIR)/meshnode.service.tmp'
	mv -f '$(DESTDIR)$(UNITDIR)/meshnode.service.tmp' '$(DESTDIR)$(UNITDIR)/meshnode.service'

# Removes the binary, the shims and the unit. The configuration goes only
# when it is still the example as shipped; an edited one stays, and is named.
uninstall:
	rm -f '$(DESTDIR)$(BINDIR)/meshnode' '$(DESTDIR)$(UNITDIR)/meshnode.service' \
		'$(DESTDIR)$(TLS_INSTALL_DIR)/libssl.so' '$(DESTDIR)$(TLS_INSTALL_DIR)/libcrypto.so'
	rmdir '$(DESTDIR)$(TLS_INSTALL_DIR)' 2>/dev/null || true
	@if cmp -s config/meshnode.cfg '$(DESTDIR)$(CONFIG_FILE)'; then \
		echo "rm -f '$(DESTDIR)$(CONFIG_FILE)'"; \
		rm -f '$(DESTDIR)$(CONFIG_FILE)'; \
		rmdir '$(DESTDIR)$(SYSCONFDIR)/meshnode' 2>/dev/null || true; \
	elif [ -e '$(DESTDIR)$(CONFIG_FILE)' ]; then \
		echo 'kept $(DESTDIR)$(CONFIG_FILE): it differs from the example (edited)'; \
	fi

format:
	clang-format -i $(shell find src include tests/unit tests/agent -name '*.[ch]')

clean:
	rm -rf build

include tests/fuzz/fuzz.mk

# Allocation-failure runs (tests/alloc/, docs/testing.md): each program
# fails every allocation of its cases in turn. They need ASan and LSan, so
# they are built by a sub-make of their own in build/alloc/
# (SANITIZE=address,undefined), whatever the build asked for.
ALLOC_BUILD := build/alloc
ALLOC_BIN   := $(patsubst tests/alloc/%.c,$(ALLOC_BUILD)/tests/alloc/%,\
                 $(sort $(wildcard tests/alloc/alloc_*.c)))

.PHONY: alloc-build alloc-test
$(BUILD)/tests/alloc/alloc_%: tests/alloc/alloc_%.c tests/alloc/torture.h $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests/alloc $(CFLAGS) $< $(LIB) $(LDFLAGS) $(LDLIBS) -ldl -o $@

alloc-build:
	$(MAKE) --no-print-directory SANITIZE=address,undefined BUILD=$(ALLOC_BUILD) $(ALLOC_BIN)

alloc-test: alloc-build
	@for t in $(ALLOC_BIN); do echo "$$t"; $$t || exit 1; done

-include $(ALLOC_BIN:=.d)

-include $(OBJ:.o=.d) $(BUILD)/obj/src/main.d $(BUILD)/install/main.d $(UNIT_BIN:=.d) \
	$(AGENT_BIN:=.d) $(BUILD)/settings_doc.d $(BUILD)/tls/libssl.d $(BUILD)/tls/libcrypto.d
