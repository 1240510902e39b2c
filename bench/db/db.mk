# db.mk: the database benchmark (bench/db/run --help), included by the Makefile.
#   make bench-db                        lem.redis and lem.postgres against redis-benchmark
#                                        and pgbench, on servers it starts; a table
#   make bench-db LUA=luajit             lem built against LuaJIT
#   make bench-db BENCH_DB_FLAGS="-n 11"
BENCH_DB_FLAGS ?=

.PHONY: bench-db
bench-db: $(LEM) $(DSOS)
	@bench/db/run --no-build --lua $(LUA) $(BENCH_DB_FLAGS)
