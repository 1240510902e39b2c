-- switch.lua: k coroutines each call utils.yield() m times; switches/s.
--   lem bench/lem/switch.lua [k=100] [m=100000]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local utils = require 'lem.utils'
local o = common.args('switch (lem)', { k = 100, m = 100000 })
local loops = common.loops()

local done, finished = 0, utils.sleeper()
local function worker(m)
	local yield = utils.yield
	for _ = 1, m do
		yield()
	end
	done = done + 1
	if done == o.k then finished:wakeup() end
end

utils.yield()   -- let the loop's clock catch up with the start-up
local t0, c0 = utils.now(), os.clock()
for _ = 1, o.k do
	utils.spawn(worker, o.m)
end
finished:sleep()
local t1, c1 = utils.now(), os.clock()
assert(done == o.k)
common.phase('run', t1 - t0, c1 - c0)
local n = o.k * o.m
if not loops or loops.count == 1 then common.result('switches/s', n / (c1 - c0)) end
common.aggregate(loops, 'switches/s', n, t0, t1)
