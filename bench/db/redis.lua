-- bench/db/redis.lua: lem.redis's side of make bench-db: GET or SET on one connection,
-- by `inflight` coroutines that each loop call after call (bench/db/run runs it).
--   lem bench/db/redis.lua path=/run/redis.sock test=get inflight=16 n=200000
-- redis-benchmark -c 1 -P 16 writes 16 commands, waits for their 16 replies, and writes
-- 16 more: 16 coroutines calling in a loop keep as many in flight on one connection, and
-- lem.redis writes the commands of those a read woke in one write, as redis-benchmark
-- does its 16. inflight=1 is request/response, redis-benchmark -c 1 without -P.
package.path = (arg[0]:match('^(.*)/db/redis%.lua$') or 'bench') .. '/?.lua;' .. package.path
local common = require 'common'
local utils = require 'lem.utils'
local redis = require 'lem.redis'

local o = common.args('redis (lem)', { path = '', test = 'get', inflight = 16, n = 200000 })
assert(o.test == 'get' or o.test == 'set', 'test=get or test=set')
local r = assert(redis.connect(o.path, 5))
-- redis-benchmark's very key and value without -r: its literal 'key:__rand_int__' and
-- its default value, 3 bytes (-d 3) of 'x', so that both do the same work on the server
local key, value, set = 'key:__rand_int__', ('x'):rep(3), o.test == 'set'
assert(r:call('SET', key, value))

local left, done = o.n, 0
local finished = utils.sleeper()
local function client()
	while left > 0 do
		left = left - 1
		local v, err
		if set then v, err = r:call('SET', key, value) else v, err = r:call('GET', key) end
		if not v then error(err) end
	end
	done = done + 1
	if done == o.inflight then finished:wakeup() end
end

local t0, c0 = common.now(utils), os.clock()   -- the time of a poll after the start-up
for _ = 1, o.inflight do utils.spawn(client) end
finished:sleep()
local wall, cpu = common.now(utils) - t0, os.clock() - c0
common.phase('run', wall, cpu)
common.result('requests/s', o.n / wall)
r:close()
