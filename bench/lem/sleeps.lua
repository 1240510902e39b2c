-- sleeps.lua: k coroutines each do sleeper:sleep(delay) r times; sleeps/s, and CPU
-- microseconds per sleep (the wall time is bounded below by r * delay).
--   lem bench/lem/sleeps.lua [k=1000] [r=200] [delay=0.001]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local utils = require 'lem.utils'
local o = common.args('sleeps (lem)', { k = 1000, r = 200, delay = 0.001 })

local function worker(r, delay)
	local s = utils.sleeper()
	for _ = 1, r do
		s:sleep(delay)
	end
end

local t0, c0, t1, c1 = common.workers(common.lem(utils), o.k, worker, o.r, o.delay)
common.sleeps(o.k * o.r, t1 - t0, c1 - c0)
