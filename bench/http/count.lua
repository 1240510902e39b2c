-- count.lua: a fixed number of keep-alive GET / on a number of connections, for counting
-- a server's instructions per request (run it twice with different counts under a
-- profiler and divide the difference).
--   lem bench/http/count.lua port [requests per connection [connections]]
local io = require 'lem.io'
local utils = require 'lem.utils'

local port = assert(tonumber(arg[1]), 'usage: lem bench/http/count.lua port [n [conns]]')
local n = tonumber(arg[2]) or 1000
local conns = tonumber(arg[3]) or 50
local REQ = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: count\r\nAccept: */*\r\n\r\n'   -- as wrk's

local running, errors = conns, 0
for _ = 1, conns do
	utils.spawn(function()
		local s = assert(io.tcp.connect('127.0.0.1', port, 5))
		for _ = 1, n do
			if not s:write(REQ) then errors = errors + 1 break end
			local head = s:read('*u', '\r\n\r\n', 5)
			local len = head and tonumber(head:match('[Cc]ontent%-[Ll]ength: *(%d+)'))
			if not len then errors = errors + 1 break end
			while len > 0 do
				local d = s:read(len, 5)
				if not d then errors = errors + 1 break end
				len = len - #d
			end
		end
		s:close()
		running = running - 1
	end)
end
utils.spawn(function()
	while running > 0 do utils.sleeper():sleep(0.01) end
	print(('requests %d errors %d'):format(n * conns, errors))
end)
