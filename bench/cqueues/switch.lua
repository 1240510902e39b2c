-- switch.lua: k coroutines each yield m times (cqueues.poll() with no argument), under
-- cqueues.
--   lua5.1 bench/cqueues/switch.lua [k=100] [m=100000]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local cqueues = require 'cqueues'
local o = common.args('switch (cqueues)', { k = 100, m = 100000 })

local function worker(m)
	local yield = cqueues.poll
	for _ = 1, m do
		yield()
	end
end

local t0, c0, t1, c1 = common.workers(common.cqueues(cqueues), o.k, worker, o.m)
common.phase('run', t1 - t0, c1 - c0)
common.result('switches/s', o.k * o.m / (c1 - c0))
