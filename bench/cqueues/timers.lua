-- timers.lua: n timers with random delays in [0, max] seconds, each a no-op that counts:
-- under cqueues a timer is a coroutine that sleeps.
--   lua5.1 bench/cqueues/timers.lua [n=200000] [max=0.05]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local cqueues = require 'cqueues'
local o = common.args('timers (cqueues)', { n = 200000, max = 0.05 })

local fired = 0
local sleep = cqueues.sleep
local function timer(delay)
	sleep(delay)
	fired = fired + 1
end

math.randomseed(1)
local cq = cqueues.new()
local random, max = math.random, o.max
local t0, c0 = cqueues.monotime(), os.clock()
for _ = 1, o.n do
	cq:wrap(timer, random() * max)
end
-- cq:wrap only queues; the coroutines start their sleeps on the first step.
assert(cq:step(0))
local t1, c1 = cqueues.monotime(), os.clock()
common.phase('start', nil, c1 - c0)
common.result('rss', common.rss())
if o.n == 0 then return end
assert(cq:loop())
local t2, c2 = cqueues.monotime(), os.clock()
assert(fired == o.n)
common.phase('fire', t2 - t1, c2 - c1)
common.result('fires/s', o.n / (t2 - t0))
