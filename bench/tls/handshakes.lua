-- bench/tls/handshakes.lua: full TLS handshakes per second inside lem, client and server
-- in the same loop over loopback (no outside client to share the CPUs with), per loop.
--   lem --loops N bench/tls/handshakes.lua cert key [seconds]
-- Each loop prints its count and its thread's CPU time (/proc/thread-self/stat): N loops
-- against 1 shows how OpenSSL scales across threads (each loop has its own contexts). On a
-- machine whose CPUs are busy with other work, the handshakes per CPU second still do:
-- when threads contend on locks, that figure drops with more loops.
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
local function cpu()        -- this thread's user + system time, seconds
	local f = _G.io.open('/proc/thread-self/stat')
	if not f then return 0 end
	local stat = f:read('*a')
	f:close()
	local fields = {}
	for x in stat:match('%) (.*)$'):gmatch('%S+') do fields[#fields + 1] = x end
	return (tonumber(fields[12]) + tonumber(fields[13])) / 100   -- USER_HZ, 100 on Linux
end
local n, t0, c0, port = 0, utils.now(), cpu(), l:port()
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
			local secs_cpu = cpu() - c0
			print(('loop %d: %d handshakes in %.2f s: %.0f/s, %.2f s CPU: %.0f per CPU second')
				:format(id, n, utils.now() - t0, n / (utils.now() - t0), secs_cpu,
					secs_cpu > 0 and n / secs_cpu or 0))
			_G.io.stdout:flush()
			l:close()
		end
	end)
end
