# libFuzzer targets (included by the top-level Makefile).
#
# `make fuzz-build` compiles the project sources with clang, libFuzzer's
# coverage, ASan and UBSan into build/fuzz/ (never mixed with build/ or
# build/san/) and links one binary per tests/fuzz/fuzz_<name>.c.
# `make fuzz FUZZ_SECONDS=N` replays tests/fuzz/regressions/<name>/ through
# each target, then fuzzes it for N seconds from a fresh copy of its seed
# corpus, prints one line per target and fails when any target crashed.

FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_SANS    := address,undefined
# The project's warnings and -Werror, less two that only clang raises here:
# a va_list forwarder without a format attribute (config_state.c; its
# callers are checked) and an SQL string split over two lines inside an
# array initialiser (orders_sqlite.c).
FUZZ_CFLAGS  := -std=c11 -pthread -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer-no-link,$(FUZZ_SANS) -fno-sanitize-recover=all \
                $(WARNINGS) -Wno-format-nonliteral -Wno-string-concatenation -MMD -MP
FUZZ_LDFLAGS := -pthread -fsanitize=fuzzer,$(FUZZ_SANS)

FUZZ_OBJ     := $(SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_LIB     := $(FUZZ_BUILD)/libmeshnode.a
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)

.PHONY: fuzz fuzz-build

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_LIB): $(FUZZ_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) -Isrc -Itests/fuzz $(FUZZ_CFLAGS) $< $(FUZZ_LIB) \
		$(FUZZ_LDFLAGS) $(LDLIBS) -o $@

# Like `make test`: the packages first (clang, from Debian), then a sub-make
# that builds with them.
fuzz-build:
	scripts/deps.sh fuzz >/dev/null
	$(MAKE) --no-print-directory $(FUZZ_BIN)

fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_BIN:$(FUZZ_BUILD)/%=%)

-include $(FUZZ_OBJ:.o=.d) $(FUZZ_BIN:=.d)
