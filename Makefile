# lem: the Lua Event Machine.
#   make                 build build/lua5.1/lem (and the ./lem link)
#   make LUA=luajit      the same against LuaJIT 2.1
#   make test            run the test suite (make test LUA=luajit for the LuaJIT build)
#   make test-asan       the suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-tsan       the multi-loop tests under ThreadSanitizer
#   make test-valgrind   a few scripts under valgrind, failing on any leak or error
#   make fuzz            build the HTTP parser's fuzzers (clang's libFuzzer) in build/fuzz
#   make fuzz-run        run each for FUZZ_SECONDS (60), failing on any finding
#   make run             build and run the HTTP server example on port 8080 (PORT=...)
#   make deps            install the Debian packages this needs
#   make install         PREFIX=/usr/local DESTDIR= : bin/lem, include/lem.h, lem.pc, man page
#   make V=1             show the commands
#   make LUA_LINK=shared link the Lua VM's shared library rather than its static one

LUA     ?= lua5.1
SAN     ?=
PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc

ifneq ($(filter $(LUA),lua5.1 luajit),$(LUA))
$(error LUA must be lua5.1 or luajit, not '$(LUA)')
endif

BUILD   := build/$(LUA)$(if $(SAN),-$(SAN))
LEM     := $(BUILD)/lem

# Expanded when a command runs, not when this file is read: on a fresh machine the Lua
# packages (and pkg-config) only exist once deps-build has installed them.
LUA_CFLAGS = $(shell pkg-config --cflags $(LUA) 2>/dev/null)
# The VM is linked into the binary from its static library, as the lua and luajit commands
# built from their upstream sources are: each C API call is then a direct call instead of
# one through the shared library's PLT, which makes lem's hot paths (sleep, wakeup, the
# scheduler) 15% (PUC) to 50% (LuaJIT) faster. Modules still find Lua's symbols in lem
# (-Wl,-E), all of them (--whole-archive). LUA_LINK=shared links the shared library.
LUA_LINK  ?= static
LUA_A      = $(shell pkg-config --variable=libdir $(LUA) 2>/dev/null)/lib$(if $(filter luajit,$(LUA)),luajit-5.1,lua5.1).a
LUA_STATIC = -Wl,--whole-archive $(LUA_A) -Wl,--no-whole-archive -lm -ldl
LUA_LIBS   = $(if $(and $(filter static,$(LUA_LINK)),$(wildcard $(LUA_A))),\
               $(LUA_STATIC),$(shell pkg-config --libs $(LUA) 2>/dev/null))
ifeq ($(LUA),luajit)
LUA_CFLAGS += -DLEM_LUAJIT
endif
# lem.redis uses hiredis's reply reader.
HIREDIS_CFLAGS = $(shell pkg-config --cflags hiredis 2>/dev/null)
HIREDIS_LIBS   = $(or $(shell pkg-config --libs hiredis 2>/dev/null),-lhiredis)

OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=gnu99 -Wall -Wextra -Wno-unused-parameter -fno-strict-aliasing
CPPFLAGS += -Iinclude $(LUA_CFLAGS) $(HIREDIS_CFLAGS)
LDFLAGS  += -Wl,-E
# lem.io's TLS (src/modules/io/tls.c) on OpenSSL 3; expanded late, as LUA_CFLAGS is.
SSL_CFLAGS = $(shell pkg-config --cflags openssl 2>/dev/null)
SSL_LIBS   = $(or $(shell pkg-config --libs openssl 2>/dev/null),-lssl -lcrypto)
CPPFLAGS += $(SSL_CFLAGS)
LDLIBS   += $(LUA_LIBS) $(SSL_LIBS) -lev -lpthread -lm -ldl
# lem.postgres (src/modules/postgres) on libpq; expanded late, as LUA_CFLAGS is.
PQ_CFLAGS = $(shell pkg-config --cflags libpq 2>/dev/null)
PQ_LIBS   = $(shell pkg-config --libs libpq 2>/dev/null || echo -lpq)
CPPFLAGS += $(PQ_CFLAGS)

ifeq ($(SAN),asan)
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(SAN),tsan)
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
endif
CFLAGS  += $(SANFLAGS)
LDFLAGS += $(SANFLAGS)

# The modules on a client library (libpq pulls OpenSSL, Kerberos and LDAP in: 4 ms more
# at every start) are not built in: each is a shared module, $(BUILD)/modules/lem/NAME.so,
# loaded by require through package.cpath, on lem.h like any third-party module.
DSO_MODS := redis postgres
DSO_LIBS_redis    = $(HIREDIS_LIBS)
DSO_LIBS_postgres = $(PQ_LIBS)
DSOS := $(DSO_MODS:%=$(BUILD)/modules/lem/%.so)
SRCS := $(filter-out $(DSO_MODS:%=src/modules/%/%.c),$(wildcard src/runtime/*.c src/loop/*.c src/modules/*/*.c))
DSO_SRCS = $(wildcard $(DSO_MODS:%=src/modules/%/*.c))
OBJS := $(SRCS:%.c=$(BUILD)/%.o)
DSO_OBJS := $(DSO_SRCS:%.c=$(BUILD)/%.o)
DEPS := $(OBJS:.o=.d) $(DSO_OBJS:.o=.d)
EXAMPLE_MODS := $(BUILD)/modules/delay.so $(BUILD)/modules/chan.so

ifeq ($(V),1)
Q :=
else
Q := @
endif

.PHONY: all run test test-asan test-tsan test-luajit test-valgrind deps deps-build deps-test install uninstall clean

all: $(LEM) $(DSOS) $(if $(SAN)$(filter luajit,$(LUA)),,lem)

lem: $(LEM)
	$(Q)ln -sfn $(LEM) lem

$(LEM): $(OBJS)
	@echo "  LINK  $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

VISIBILITY = -fvisibility=hidden
$(DSO_OBJS): CFLAGS += -fPIC
$(DSO_OBJS): VISIBILITY =          # a shared module exports its luaopen_ function
dso_objs = $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/modules/$(1)/*.c))
$(BUILD)/modules/lem/redis.so: $(call dso_objs,redis)
$(BUILD)/modules/lem/postgres.so: $(call dso_objs,postgres)
$(DSOS):
	@mkdir -p $(dir $@)
	@echo "  LINK  $@"
	$(Q)$(CC) $(LDFLAGS) -shared -o $@ $^ $(DSO_LIBS_$(basename $(notdir $@)))

# lem's own objects are hidden but for the LEM_API calls of lem.h (the Lua VM's symbols
# come from its library, exported as they are).
$(BUILD)/%.o: %.c | deps-build
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(VISIBILITY) -MMD -MP -c -o $@ $<

# lem.http's Lua half (src/modules/http/http.lua) is built into the binary: od turns it
# into a C array that http.c includes.
HTTP_LUA_H := $(BUILD)/gen/http_lua.h
$(BUILD)/src/modules/http/http.o: $(HTTP_LUA_H)
$(BUILD)/src/modules/http/http.o: CPPFLAGS += -I$(BUILD)/gen
$(HTTP_LUA_H): src/modules/http/http.lua
	@mkdir -p $(dir $@)
	@echo "  GEN   $@"
	$(Q){ echo 'static const char http_lua[] = {'; \
	  od -An -v -tx1 $< | sed -e 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; } > $@.tmp && mv $@.tmp $@

# postgres.pool (src/modules/postgres/pool.lua) is built into lem.postgres the same way.
PG_POOL_H := $(BUILD)/gen/pool_lua.h
$(BUILD)/src/modules/postgres/pool.o: $(PG_POOL_H)
$(BUILD)/src/modules/postgres/pool.o: CPPFLAGS += -I$(BUILD)/gen
$(PG_POOL_H): src/modules/postgres/pool.lua
	@mkdir -p $(dir $@)
	@echo "  GEN   $@"
	$(Q){ echo 'static const char pool_lua[] = {'; \
	  od -An -v -tx1 $< | sed -e 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; } > $@.tmp && mv $@.tmp $@

# The example C modules of docs/c-api.md (examples/c/*.c); the tests require them.
$(EXAMPLE_MODS): $(BUILD)/modules/%.so: examples/c/%.c include/lem.h
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -shared -o $@ $<

# The tests' probe of lem.h's error returns that no module shows (tests/lib/capiprobe.c).
CAPIPROBE := $(BUILD)/modules/capiprobe.so
$(CAPIPROBE): tests/lib/capiprobe.c include/lem.h
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -shared -o $@ $<

# The tests' allocation-failure shim (tests/lib/failalloc.c), never sanitized.
FAILALLOC := $(BUILD)/modules/failalloc.so
$(FAILALLOC): tests/lib/failalloc.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CPPFLAGS) $(filter-out $(SANFLAGS),$(CFLAGS)) -fPIC -shared -o $@ $<

-include $(DEPS)

# The main job: the HTTP server of examples/server.lua, one loop per CPU (Ctrl-C stops it).
PORT ?= 8080
run: all
	$(LEM) --loops auto examples/server.lua $(PORT)

# Lua test files print TAP; prove runs each under the built lem. They find their helper
# (tests/lib) and the example C module through LUA_PATH and LUA_CPATH.
TEST_ENV = LEM=$(CURDIR)/$(LEM) LEM_SOURCE=$(CURDIR) LEM_SANITIZER=$(SAN) LUA_PATH='$(CURDIR)/tests/lib/?.lua;;' \
           LUA_CPATH='$(CURDIR)/$(BUILD)/modules/?.so;;' 
TESTS ?= $(sort $(wildcard tests/*.lua))
# A failing test's line and its diagnostics are shown, so that a failure that comes once
# in many runs says why in the log of the run where it came.
PROVE_FLAGS ?= --failures --comments
test: deps-test $(LEM) $(DSOS) $(EXAMPLE_MODS) $(FAILALLOC) $(CAPIPROBE)
	$(TEST_ENV) prove --exec $(CURDIR)/$(LEM) $(PROVE_FLAGS) $(TESTS)

# Sanitizer runs: every process a test starts logs its reports into $(BUILD)/reports; any
# report fails the run, even one from a child whose exit status no test looks at.
SAN_REPORTS = $(CURDIR)/build/$(LUA)-$(1)/reports
define san_check
	@if ls $(call SAN_REPORTS,$(1)).* >/dev/null 2>&1; then \
	  cat $(call SAN_REPORTS,$(1)).*; echo "$(1): reports above"; exit 1; \
	else echo "$(1): no reports"; fi
endef

test-asan:
	@rm -f $(call SAN_REPORTS,asan).*
	ASAN_OPTIONS=log_path=$(call SAN_REPORTS,asan):detect_leaks=1 \
	UBSAN_OPTIONS=log_path=$(call SAN_REPORTS,asan):print_stacktrace=1 \
	  $(MAKE) test SAN=asan OPT=-O1
	$(call san_check,asan)

# The tests that run several loops or the thread pool, under ThreadSanitizer.
TSAN_TESTS ?= tests/loops.lua tests/loops-idle.lua tests/stop.lua tests/io-stream.lua tests/io-misc.lua tests/io-server.lua \
              tests/redis.lua tests/postgres.lua tests/cluster.lua tests/signal.lua tests/shutdown.lua \
              tests/stats.lua tests/probe.lua tests/tls-loops.lua tests/utils.lua tests/http-loops.lua
test-tsan:
	@rm -f $(call SAN_REPORTS,tsan).*
	TSAN_OPTIONS=log_path=$(call SAN_REPORTS,tsan):halt_on_error=1:second_deadlock_stack=1 \
	  $(MAKE) test SAN=tsan OPT=-O1 TESTS="$(TSAN_TESTS)"
	$(call san_check,tsan)

test-luajit:
	$(MAKE) test LUA=luajit

VALGRIND_SCRIPTS ?= tests/utils.lua tests/sleeper.lua tests/timer.lua tests/pcall.lua tests/io-stream.lua \
                    tests/redis.lua tests/postgres.lua tests/cluster.lua tests/tls.lua
test-valgrind: deps-test $(LEM) $(DSOS) $(EXAMPLE_MODS)
	@for t in $(VALGRIND_SCRIPTS); do \
	  echo "valgrind $$t"; \
	  $(TEST_ENV) valgrind -q --leak-check=full --show-leak-kinds=definite,indirect,possible \
	    --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 \
	    $(LEM) $$t > /dev/null || { echo "valgrind found errors or leaks in $$t"; exit 1; }; \
	done
	@echo "valgrind: --loops 3, utils.exit while the other loops receive and compute"
	@# fair scheduling: else the computing thread keeps valgrind's lock for a minute
	@$(TEST_ENV) valgrind -q --fair-sched=yes --leak-check=full --show-leak-kinds=definite,indirect,possible \
	  --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 \
	  $(LEM) --loops 3 -e "local u, l = require 'lem.utils', require 'lem.loops' \
	    if l.id == 1 then u.timer(0.3, function() u.exit(3) end) \
	    elseif l.id == 2 then l.receive() else while true do os.clock() end end"; \
	  test $$? = 3 || { echo "valgrind found errors or leaks in a stop"; exit 1; }
	@echo "valgrind: no errors, no leaks"

# Debian packages. Building needs the first list; tests, the LuaJIT build and the checks
# the second. Missing ones are installed (as root) before anything is built or tested.
DEB_BUILD := gcc make libc6-dev pkg-config liblua5.1-0-dev libev-dev libhiredis-dev libpq-dev libssl-dev
DEB_TEST  := perl lua5.1 libluajit2-5.1-dev luajit2 valgrind lua-lpeg lua-cjson redis-server postgresql curl python3 openssl
ifeq ($(LUA),luajit)
DEB_BUILD += libluajit2-5.1-dev
endif
define install_missing
@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
if [ -z "$$missing" ]; then :; \
elif ! command -v apt-get >/dev/null; then echo "lem: install the packages:" $$missing >&2; exit 1; \
elif [ "$$(id -u)" = 0 ]; then \
  echo "  DEPS  installing" $$missing; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
else echo "lem: run as root:  apt-get install -y" $$missing >&2; exit 1; fi
endef

deps: deps-build deps-test
deps-build:
	$(call install_missing,$(DEB_BUILD))
deps-test:
	$(call install_missing,$(DEB_TEST))

install: $(LEM) $(DSOS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/lib/lem/lem
	install -m 755 $(LEM) $(DESTDIR)$(PREFIX)/bin/lem
	install -m 644 $(DSOS) $(DESTDIR)$(PREFIX)/lib/lem/lem/
	install -m 644 include/lem.h $(DESTDIR)$(PREFIX)/include/lem.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(shell sed -n 's/^#define LEM_VERSION "\(.*\)"/\1/p' include/lem.h)|g' \
	  -e 's|@LUA@|$(LUA)|g' lem.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/lem.pc
	install -m 644 docs/lem.1 $(DESTDIR)$(PREFIX)/share/man/man1/lem.1

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/lib/lem
	rm -f $(DESTDIR)$(PREFIX)/bin/lem $(DESTDIR)$(PREFIX)/include/lem.h \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/lem.pc $(DESTDIR)$(PREFIX)/share/man/man1/lem.1

# The HTTP parser (src/modules/http/parser.c, libc only) has a C test program, which
# tests/http-parser.lua runs, and libFuzzer targets (fuzz/) seeded from tests/http-corpus.
HTTP_TEST := $(BUILD)/tests/http_parser_test
HTTP_SRC  := src/modules/http/parser.c
test: $(HTTP_TEST)
$(HTTP_TEST): tests/c/http_parser_test.c tests/c/tap.h $(HTTP_SRC) src/modules/http/parser.h
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -Isrc/modules/http $(LDFLAGS) -o $@ $< $(HTTP_SRC)

# The loop's allocator (src/loop/alloc.c) has one too, which tests/alloc.lua runs.
ALLOC_TEST := $(BUILD)/tests/alloc_test
test: $(ALLOC_TEST)
$(ALLOC_TEST): tests/c/alloc_test.c tests/c/tap.h src/loop/alloc.c src/loop/loop.h
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $<

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := build/fuzz
FUZZ_TARGETS := head chunked
DEB_FUZZ     := clang libclang-rt-14-dev
.PHONY: fuzz fuzz-run deps-fuzz
deps-fuzz:
	$(call install_missing,$(DEB_FUZZ))

fuzz: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/%)
$(FUZZ_DIR)/%: fuzz/%.c $(HTTP_SRC) src/modules/http/parser.h | deps-fuzz
	@mkdir -p $(dir $@)
	@echo "  FUZZ  $<"
	$(Q)$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -Wall -Wextra -Isrc/modules/http -o $@ $< $(HTTP_SRC)

# Each target starts from the corpus (made into seeds by the test program) and what its
# earlier runs kept in build/fuzz/corpus-*; a finding stops the run, its input kept in
# build/fuzz/findings.
fuzz-run: fuzz $(HTTP_TEST)
	@rm -rf $(FUZZ_DIR)/seeds && $(HTTP_TEST) --seeds $(FUZZ_DIR)/seeds tests/http-corpus
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus-$$t $(FUZZ_DIR)/findings; \
	  echo "  FUZZ  $$t for $(FUZZ_SECONDS) s"; \
	  if ! $(FUZZ_DIR)/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=10 \
	      -rss_limit_mb=2048 -dict=fuzz/http.dict -print_final_stats=1 \
	      -artifact_prefix=$(FUZZ_DIR)/findings/$$t- $(FUZZ_DIR)/corpus-$$t $(FUZZ_DIR)/seeds/$$t \
	      > $(FUZZ_DIR)/$$t.log 2>&1; then \
	    tail -n 40 $(FUZZ_DIR)/$$t.log; echo "fuzz: $$t failed (log: $(FUZZ_DIR)/$$t.log)"; exit 1; \
	  fi; \
	  grep -E '^(Done|stat::(new_units_added|peak_rss_mb))' $(FUZZ_DIR)/$$t.log | sed 's/^/        /'; \
	done; echo "fuzz: no findings"

include bench/bench.mk

clean:
	rm -rf build lem
-include bench/http/http.mk
-include bench/db/db.mk
