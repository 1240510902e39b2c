-- parked.lua: n coroutines parked on sleepers at once; peak RSS (bench/run subtracts the
-- same script's with n=0 and divides by n). The spawner yields after every `batch`
-- spawns, so the runqueue stays short: this measures parked coroutines, not the queue.
--   lem bench/lem/parked.lua [n=100000] [batch=100]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local utils = require 'lem.utils'
local o = common.args('parked (lem)', { n = 100000, batch = 100 })

local parked, woken = {}, 0
local function park(i)
	local s = utils.sleeper()
	parked[i] = s
	s:sleep()
	woken = woken + 1
end

local c0 = os.clock()
for i = 1, o.n do
	utils.spawn(park, i)
	if i % o.batch == 0 then utils.yield() end
end
utils.yield()   -- the last batch parks
local c1 = os.clock()
assert(#parked == o.n, 'not every coroutine parked')
common.phase('park', nil, c1 - c0)
common.result('rss', common.rss())
for i = 1, o.n do
	parked[i]:wakeup()
end
utils.yield()
assert(woken == o.n, 'not every coroutine woke')
common.phase('wake', nil, os.clock() - c1)
