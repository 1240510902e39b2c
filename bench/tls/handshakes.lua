-- bench/tls/handshakes.lua: full TLS handshakes per second inside lem, client and server
-- in the same loop over loopback (no outside client to share the CPUs with), per loop.
--   lem --loops N bench/tls/handshakes.lua cert key [seconds]
-- Each loop prints its count; the figure of N loops against 1 shows how OpenSSL scales
-- across threads (each loop has its own contexts).
local io = require 'lem.io'
local utils = require 'lem.utils'
local ok, loops = pcall(require, 'lem.loops')
local id = ok and loops.id or 1
local cert, key, secs = arg[1], arg[2], tonumber(arg[3]) or 3

local sctx = assert(io.tls.context{ cert = cert, key = key, resumption = false })
local cctx = assert(io.tls.context{ verify = false })
local l = assert(io.tls.listen('127.0.0.1', 0, sctx))
utils.spawn(function()
	l:autospawn(function(s)
		local line = s:read('*l', 5)
		if line then s:write(line, '\n') end
		s:close()
	end)
end)
local n, t0, port = 0, utils.now(), l:port()
local running = 4
for _ = 1, 4 do            -- a few clients at once, so that the loop never waits idle
	utils.spawn(function()
		while utils.now() - t0 < secs do
			local c = assert(io.tls.connect('127.0.0.1', port, { context = cctx, timeout = 5 }))
			c:write('x\n')
			assert(c:read('*l', 5) == 'x')
			c:close()
			n = n + 1
		end
		running = running - 1
		if running == 0 then
			print(('loop %d: %d handshakes in %.2f s: %.0f/s'):format(id, n, utils.now() - t0,
				n / (utils.now() - t0)))
			_G.io.stdout:flush()
			l:close()
		end
	end)
end
