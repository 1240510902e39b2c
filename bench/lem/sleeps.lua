-- sleeps.lua: k coroutines each do sleeper:sleep(delay) r times; sleeps/s, and CPU
-- microseconds per sleep (the wall time is bounded below by r * delay).
--   lem bench/lem/sleeps.lua [k=1000] [r=200] [delay=0.001]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local utils = require 'lem.utils'
local o = common.args('sleeps (lem)', { k = 1000, r = 200, delay = 0.001 })

local done, finished = 0, utils.sleeper()
local function worker(r, delay)
	local s = utils.sleeper()
	for _ = 1, r do
		s:sleep(delay)
	end
	done = done + 1
	if done == o.k then finished:wakeup() end
end

utils.yield()   -- let the loop's clock catch up with the start-up
local t0, c0 = utils.now(), os.clock()
for _ = 1, o.k do
	utils.spawn(worker, o.r, o.delay)
end
finished:sleep()
local t1, c1 = utils.now(), os.clock()
common.phase('run', t1 - t0, c1 - c0)
local n = o.k * o.r
common.result('sleeps/s', n / (t1 - t0))
common.result('cpu-us/sleep', (c1 - c0) / n * 1e6)
