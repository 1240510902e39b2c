-- bench/redis/bench.lua: lem.redis against redis-benchmark on the same server, one
-- connection, GET and SET, pipelined (16 in flight) and request/response.
--   lem bench/redis/bench.lua [requests]       (make bench-redis)
-- Starts its own redis-server on a Unix socket in a temporary folder.
local utils = require 'lem.utils'
local redis = require 'lem.redis'

local N = tonumber(arg[1]) or 200000
local dir = os.tmpname()
os.remove(dir)
assert(os.execute('mkdir -p ' .. dir) == 0)
local sock = dir .. '/r.sock'
local p = io.popen(("redis-server --port 0 --unixsocket %s --save '' --appendonly no " ..
	"--daemonize no --dir %s > %s/log 2>&1 & echo $!"):format(sock, dir, dir))
local pid = p:read('*l')
p:close()
local r
for _ = 1, 100 do
	r = redis.connect(sock)
	if r and r:call('PING') == 'PONG' then break end
	r = nil
	utils.sleeper():sleep(0.05)
end
assert(r, 'redis-server did not start')

-- redis-benchmark's requests per second for one test
local function reference(test, pipeline)
	local f = io.popen(('redis-benchmark -s %s -c 1 -n %d -P %d -t %s --csv 2>/dev/null')
		:format(sock, N, pipeline, test))
	local out = f:read('*a')
	f:close()
	return tonumber(out:match('"' .. test:upper() .. '","([%d.]+)"'))
end

-- lem.redis's requests per second: `inflight` coroutines share the connection
local function lem(test, inflight)
	local left, done = N, 0
	local wake = utils.sleeper()
	local t0 = utils.now()
	for _ = 1, inflight do
		utils.spawn(function()
			while left > 0 do
				left = left - 1
				-- the very key and value redis-benchmark uses without -r (its literal
				-- 'key:__rand_int__'), so that both do the same work on the server
				if test == 'set' then
					r:call('SET', 'key:__rand_int__', 'xxx')
				else
					r:call('GET', 'key:__rand_int__')
				end
			end
			done = done + 1
			if done == inflight then wake:wakeup() end
		end)
	end
	wake:sleep()
	return N / (utils.now() - t0)
end

print(('%-24s %12s %12s %7s'):format('workload', 'lem req/s', 'ref req/s', 'ratio'))
for _, c in ipairs { { 'set', 16 }, { 'get', 16 }, { 'set', 1 }, { 'get', 1 } } do
	local test, n = c[1], c[2]
	local ref = reference(test, n)
	local got = lem(test, n)
	print(('%-24s %12.0f %12.0f %7.2f'):format(('%s, %d in flight'):format(test:upper(), n),
		got, ref or 0, ref and got / ref or 0))
end
r:close()
os.execute('kill ' .. pid)
os.execute('rm -rf ' .. dir)
