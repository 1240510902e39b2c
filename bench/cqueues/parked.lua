-- parked.lua: n coroutines each waiting on a condition variable of its own, under
-- cqueues; peak RSS (bench/run subtracts n=0's and divides by n).
--   lua5.1 bench/cqueues/parked.lua [n=100000] [batch=100]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local cqueues = require 'cqueues'
local condition = require 'cqueues.condition'
local o = common.args('parked (cqueues)', { n = 100000, batch = 100 })

local cq = cqueues.new()
local parked, woken = {}, 0
local function park(i)
	local c = condition.new()
	parked[i] = c
	c:wait()
	woken = woken + 1
end

local c0 = os.clock()
cq:wrap(function()
	for i = 1, o.n do
		cq:wrap(park, i)
		if i % o.batch == 0 then cqueues.poll() end
	end
	cqueues.poll()
	assert(#parked == o.n, 'not every coroutine parked')
	common.phase('park', nil, os.clock() - c0)
	common.result('rss', common.rss())
	for i = 1, o.n do
		parked[i]:signal()
	end
end)
assert(cq:loop())
assert(woken == o.n, 'not every coroutine woke')
