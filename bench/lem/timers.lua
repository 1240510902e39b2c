-- timers.lua: n utils.timer with random delays in [0, max] seconds, each a no-op (it
-- counts); timer fires/s from the first utils.timer to the last fire, and the peak RSS
-- with all n pending (bench/run subtracts the same script's with n=0).
--   lem bench/lem/timers.lua [n=200000] [max=0.05]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local utils = require 'lem.utils'
local o = common.args('timers (lem)', { n = 200000, max = 0.05 })
local loops = common.loops()

local fired, finished = 0, utils.sleeper()
local function tick()
	fired = fired + 1
	if fired == o.n then finished:wakeup() end
end

math.randomseed(1)
local timer, random, max = utils.timer, math.random, o.max
local t0, c0 = common.now(utils), os.clock()   -- after the start-up; timers count from t0
for _ = 1, o.n do
	timer(random() * max, tick)
end
local t1, c1 = utils.now(), os.clock()
common.phase('start', nil, c1 - c0)
common.result('rss', common.rss())
if o.n == 0 then return end
finished:sleep()
local t2, c2 = utils.now(), os.clock()   -- the poll that found the last timer due
common.phase('fire', t2 - t1, c2 - c1)
if not loops or loops.count == 1 then common.result('fires/s', o.n / (t2 - t0)) end
common.aggregate(loops, 'fires/s', o.n, t0, t2)
