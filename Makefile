# lem: the Lua Event Machine.
#   make                 build build/lua5.1/lem (and the ./lem link)
#   make LUA=luajit      the same against LuaJIT 2.1
#   make test            run the test suite (make test LUA=luajit for the LuaJIT build)
#   make test-asan       the suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-tsan       the multi-loop tests under ThreadSanitizer
#   make test-valgrind   a few scripts under valgrind, failing on any leak or error
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

OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=gnu99 -Wall -Wextra -Wno-unused-parameter -fno-strict-aliasing
CPPFLAGS += -Iinclude $(LUA_CFLAGS)
LDFLAGS  += -Wl,-E
LDLIBS   += $(LUA_LIBS) -lev -lpthread -lm -ldl

ifeq ($(SAN),asan)
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(SAN),tsan)
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
endif
CFLAGS  += $(SANFLAGS)
LDFLAGS += $(SANFLAGS)

SRCS := $(wildcard src/runtime/*.c src/loop/*.c src/modules/*/*.c)
OBJS := $(SRCS:%.c=$(BUILD)/%.o)
DEPS := $(OBJS:.o=.d)
EXAMPLE_MODS := $(BUILD)/modules/delay.so $(BUILD)/modules/chan.so

ifeq ($(V),1)
Q :=
else
Q := @
endif

.PHONY: all run test test-asan test-tsan test-luajit test-valgrind deps deps-build deps-test install uninstall clean

all: $(LEM) $(if $(SAN)$(filter luajit,$(LUA)),,lem)

lem: $(LEM)
	$(Q)ln -sfn $(LEM) lem

$(LEM): $(OBJS)
	@echo "  LINK  $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

# lem's own objects are hidden but for the LEM_API calls of lem.h (the Lua VM's symbols
# come from its library, exported as they are).
$(BUILD)/%.o: %.c | deps-build
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -fvisibility=hidden -MMD -MP -c -o $@ $<

# The example C modules of docs/c-api.md (examples/c/*.c); the tests require them.
$(EXAMPLE_MODS): $(BUILD)/modules/%.so: examples/c/%.c include/lem.h
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
test: deps-test $(LEM) $(EXAMPLE_MODS) $(FAILALLOC)
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
              tests/signal.lua tests/shutdown.lua
test-tsan:
	@rm -f $(call SAN_REPORTS,tsan).*
	TSAN_OPTIONS=log_path=$(call SAN_REPORTS,tsan):halt_on_error=1:second_deadlock_stack=1 \
	  $(MAKE) test SAN=tsan OPT=-O1 TESTS="$(TSAN_TESTS)"
	$(call san_check,tsan)

test-luajit:
	$(MAKE) test LUA=luajit

VALGRIND_SCRIPTS ?= tests/utils.lua tests/sleeper.lua tests/timer.lua tests/pcall.lua tests/io-stream.lua
test-valgrind: deps-test $(LEM) $(EXAMPLE_MODS)
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
DEB_BUILD := gcc make libc6-dev pkg-config liblua5.1-0-dev libev-dev
DEB_TEST  := perl lua5.1 libluajit2-5.1-dev luajit2 valgrind lua-lpeg
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

install: $(LEM)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(LEM) $(DESTDIR)$(PREFIX)/bin/lem
	install -m 644 include/lem.h $(DESTDIR)$(PREFIX)/include/lem.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(shell sed -n 's/^#define LEM_VERSION "\(.*\)"/\1/p' include/lem.h)|g' \
	  -e 's|@LUA@|$(LUA)|g' lem.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/lem.pc
	install -m 644 docs/lem.1 $(DESTDIR)$(PREFIX)/share/man/man1/lem.1

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/lem $(DESTDIR)$(PREFIX)/include/lem.h \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/lem.pc $(DESTDIR)$(PREFIX)/share/man/man1/lem.1

include bench/bench.mk

clean:
	rm -rf build lem
-include bench/http/http.mk
