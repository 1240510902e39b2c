-- bench/tls/server.lua: examples/server.lua over TLS, for bench/tls/run.
--   lem bench/tls/server.lua port host cert key [plain]
-- Its listener is io.tls.listen's, on a context without session resumption (every new
-- connection a full handshake, as the benchmark's nginx is set up); "plain" keeps TCP
-- (the reference of the idle-memory figure).
local io = require 'lem.io'
local port, host, cert, key, plain = arg[1], arg[2], arg[3], arg[4], arg[5]
if plain ~= 'plain' then
	local ctx = assert(io.tls.context{ cert = cert, key = key, resumption = false })
	io.tcp.listen = function(h, p) return io.tls.listen(h, p, ctx) end
end
arg = { [0] = 'examples/server.lua', port, host }
assert(loadfile((os.getenv('LEM_SOURCE') or '.') .. '/examples/server.lua'))()   -- not dofile: a C call, across which the server could not suspend
