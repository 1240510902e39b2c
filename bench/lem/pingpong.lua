-- pingpong.lua: two coroutines wake each other through sleepers n times; round trips/s.
--   lem bench/lem/pingpong.lua [n=1000000]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local utils = require 'lem.utils'
local o = common.args('pingpong (lem)', { n = 1000000 })

local ping, pong, finished = utils.sleeper(), utils.sleeper(), utils.sleeper()
utils.spawn(function(n)        -- pong: sleeps first
	for _ = 1, n do
		pong:sleep()
		ping:wakeup()
	end
end, o.n)
local t0, c0 = common.now(utils), os.clock()   -- pong is asleep; after the start-up
utils.spawn(function(n)
	for _ = 1, n do
		pong:wakeup()
		ping:sleep()
	end
	finished:wakeup()
end, o.n)
finished:sleep()
local c1 = os.clock()
local t1 = common.now(utils)
common.phase('run', t1 - t0, c1 - c0)
common.result('roundtrips/s', o.n / (c1 - c0))
