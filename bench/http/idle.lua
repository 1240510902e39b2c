-- idle.lua: opens n keep-alive connections to an HTTP server, sends one GET on each and
-- reads its answer, then keeps them all open and idle (for an hour, or until killed), for
-- bench/http/run to read the server's memory meanwhile.
--   lem bench/http/idle.lua port [n [host]]
-- Prints "idle <n>" once every connection has had its answer (or "failed <why>"). Needs
-- a descriptor limit above n (ulimit -n), on both sides.
local io = require 'lem.io'
local utils = require 'lem.utils'

local port = assert(tonumber(arg[1]), 'usage: lem bench/http/idle.lua port [n [host]]')
local n = tonumber(arg[2]) or 10000
local host = arg[3] or '127.0.0.1'
local BATCH = 200          -- connections being opened at once
local REQUEST = 'GET / HTTP/1.1\r\nHost: ' .. host .. '\r\n\r\n'

local conns, opened, failed = {}, 0, nil

-- One connection: the request, then its answer (a head, then Content-Length bytes).
local function open(i)
	local c, err = io.tcp.connect(host, port, 10)
	if c then
		local ok
		ok, err = c:write(REQUEST)
		local head = ok and c:read('*u', '\r\n\r\n', 10)
		local length = head and tonumber(head:match('\r\n[Cc]ontent%-[Ll]ength: *(%d+)'))
		if length and (length == 0 or c:read(length, 10)) then
			conns[i] = c
			return true
		end
		err = err or 'no answer'
		c:close()
	end
	failed = failed or ('connection ' .. i .. ': ' .. tostring(err))
end

utils.spawn(function()
	local i = 0
	while i < n and not failed do
		local left = 0
		for _ = 1, math.min(BATCH, n - i) do
			i = i + 1
			left = left + 1
			local k = i
			utils.spawn(function()
				if open(k) then opened = opened + 1 end
				left = left - 1
			end)
		end
		while left > 0 do utils.sleeper():sleep(0.001) end
	end
	if failed then
		print('failed ' .. failed)
	else
		print('idle ' .. opened)
	end
	_G.io.stdout:flush()
	utils.sleeper():sleep(3600)     -- a timer keeps the loop (and the connections) alive
	for _, c in pairs(conns) do c:close() end
end)
