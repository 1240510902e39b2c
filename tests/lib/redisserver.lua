-- redisserver.lua: a redis-server for a test, on a Unix socket in a folder of the test's
-- (no TCP port to collide with another run), without persistence.
--   local pid, sock = redisserver.start(dir)    -- or nil, why (with the server's log)
local utils = require 'lem.utils'
local redis = require 'lem.redis'

local M = {}

local watched = {}

-- Starts redis-server on dir/r.sock (again, after a stop); returns its pid and the
-- socket's path once it answers PING, or nil and why not.
function M.start(dir)
	local sock = dir .. '/r.sock'
	local p = io.popen(("redis-server --port 0 --unixsocket %s --save '' --appendonly no " ..
		"--daemonize no --dir %s > %s/log 2>&1 & echo $!"):format(sock, dir, dir))
	local pid = p:read('*l')
	p:close()
	if not watched[dir] then
		-- should the test die before it stops the server, a watchdog stops it (by its
		-- socket: a pid may be reused)
		watched[dir] = true
		local sh = io.popen('echo $PPID')
		local lem = sh:read('*l')
		sh:close()
		os.execute(('(while kill -0 %s 2>/dev/null; do sleep 1; done; ' ..
			'redis-cli -s %s shutdown nosave) >/dev/null 2>&1 &'):format(lem, sock))
	end
	for _ = 1, 100 do
		local r = redis.connect(sock)
		if r then
			local pong = r:call('PING')
			r:close()
			if pong == 'PONG' then return pid, sock end
		end
		utils.sleeper():sleep(0.05)
	end
	local f = io.open(dir .. '/log')
	local log = f and f:read('*a') or ''
	if f then f:close() end
	os.execute('kill -9 ' .. pid .. ' 2>/dev/null')
	return nil, 'redis-server did not start: ' .. log
end

return M
