-- pingpong.lua: two coroutines wake each other n times through condition variables,
-- under cqueues.
--   lua5.1 bench/cqueues/pingpong.lua [n=1000000]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local cqueues = require 'cqueues'
local condition = require 'cqueues.condition'
local o = common.args('pingpong (cqueues)', { n = 1000000 })

local cq = cqueues.new()
local ping, pong, trips = condition.new(), condition.new(), 0
cq:wrap(function(n)            -- pong: waits first
	for _ = 1, n do
		pong:wait()
		ping:signal()
	end
end, o.n)
cq:wrap(function(n)
	cqueues.poll()              -- pong is waiting
	for _ = 1, n do
		pong:signal()
		ping:wait()
		trips = trips + 1
	end
end, o.n)

local t0, c0 = cqueues.monotime(), os.clock()
assert(cq:loop())
local t1, c1 = cqueues.monotime(), os.clock()
assert(trips == o.n)
common.phase('run', t1 - t0, c1 - c0)
common.result('roundtrips/s', o.n / (c1 - c0))
