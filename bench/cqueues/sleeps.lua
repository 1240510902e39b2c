-- sleeps.lua: k coroutines each do cqueues.sleep(delay) r times, under cqueues.
--   lua5.1 bench/cqueues/sleeps.lua [k=1000] [r=200] [delay=0.001]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local cqueues = require 'cqueues'
local o = common.args('sleeps (cqueues)', { k = 1000, r = 200, delay = 0.001 })

local function worker(r, delay)
	local sleep = cqueues.sleep
	for _ = 1, r do
		sleep(delay)
	end
end

local t0, c0, t1, c1 = common.workers(common.cqueues(cqueues), o.k, worker, o.r, o.delay)
common.sleeps(o.k * o.r, t1 - t0, c1 - c0)
