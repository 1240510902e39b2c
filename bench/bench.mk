# bench.mk: the benchmark suite (docs/benchmarks.md), included by the Makefile.
#   make bench                   build what it needs, run every workload, print the table
#   make bench LUA=luajit        the same for the LuaJIT build
#   make bench BENCH="switch timers"    some workloads only
#   make bench BENCH_FLAGS="--against ../lem-old/build/lua5.1/lem"   against another build
#   bench/run --help             runs, parameters (e.g. switch.m=1000)
# The reference programs are built against the same Lua library as lem.

BENCH       ?=
BENCH_FLAGS ?=
BENCH_DIR   := $(BUILD)/bench
BENCH_BINS  := $(BENCH_DIR)/vm $(BENCH_DIR)/ev $(BENCH_DIR)/mailbox

.PHONY: bench bench-build

bench-build: $(LEM) $(BENCH_BINS)

# make test runs every benchmark once with tiny counts (tests/bench-smoke.lua), the C
# references included.
test: $(BENCH_BINS)

bench: bench-build
	@lua5.1 bench/run --no-build --lua $(LUA) $(BENCH_FLAGS) $(BENCH)
	@echo "HTTP and database benchmarks are separate: make bench-http, make bench-db"

$(BENCH_DIR)/vm: bench/c/vm.c bench/c/common.h
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) $(LUA_CFLAGS) -o $@ $< $(LUA_LIBS) -lm

$(BENCH_DIR)/ev: bench/c/ev.c bench/c/common.h
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -o $@ $< -lev -lm

$(BENCH_DIR)/mailbox: bench/c/mailbox.c bench/c/common.h
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -o $@ $< -lev -lpthread -lm
