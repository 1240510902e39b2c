# http.mk: the HTTP benchmark (bench/http/run --help), included by the Makefile.
#   make bench-http                      lem --loops 1 and 2, nginx, nginx + Lua: tables of
#                                        plain and pipelined requests, the client, idle memory;
#                                        then HTTPS (bench/tls/run: keep-alive, handshakes,
#                                        idle memory) against nginx with TLS
#   make bench-http LUA=luajit           lem built against LuaJIT
#   make bench-http BENCH_HTTP_FLAGS="-d 10 -n 7 -c 100"
#   make bench-instructions              instructions per request under callgrind, lem
#                                        against nginx + Lua (HTTP) and nginx (HTTPS): the
#                                        figures a busy machine does not move
BENCH_HTTP_FLAGS ?=
BENCH_TLS_FLAGS ?=

.PHONY: bench-http bench-instructions
bench-http: $(LEM)
	@bench/http/run --no-build --lua $(LUA) $(BENCH_HTTP_FLAGS)
	@bench/tls/run --no-build --lua $(LUA) $(BENCH_TLS_FLAGS)

bench-instructions: $(LEM)
	@bench/http/instructions --lua $(LUA)
	@bench/http/instructions --lua $(LUA) --tls
