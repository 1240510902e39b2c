-- spawn.lua: n utils.spawn of an empty function, all run to completion; spawns/s.
-- The spawner yields after every `batch` spawns, so that finished coroutines are reused.
--   lem bench/lem/spawn.lua [n=1000000] [batch=100]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local utils = require 'lem.utils'
local o = common.args('spawn (lem)', { n = 1000000, batch = 100 })
local loops = common.loops()

local ran = 0
local function empty() ran = ran + 1 end

local spawn, yield = utils.spawn, utils.yield
local t0, c0 = common.now(utils), os.clock()   -- after the start-up
for i = 1, o.n do
	spawn(empty)
	if i % o.batch == 0 then yield() end
end
yield()         -- the last batch runs
local c1 = os.clock()
local t1 = common.now(utils)
assert(ran == o.n, 'not every spawned coroutine ran')
common.phase('run', t1 - t0, c1 - c0)
if not loops or loops.count == 1 then common.result('spawns/s', o.n / (c1 - c0)) end
common.aggregate(loops, 'spawns/s', o.n, t0, t1)
