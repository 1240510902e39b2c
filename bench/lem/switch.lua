-- switch.lua: k coroutines each call utils.yield() m times; switches/s.
--   lem bench/lem/switch.lua [k=100] [m=100000]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local utils = require 'lem.utils'
local o = common.args('switch (lem)', { k = 100, m = 100000 })
local loops = common.loops()

local function worker(m)
	local yield = utils.yield
	for _ = 1, m do
		yield()
	end
end

local t0, c0, t1, c1 = common.workers(common.lem(utils), o.k, worker, o.m)
common.phase('run', t1 - t0, c1 - c0)
local n = o.k * o.m
if not loops or loops.count == 1 then common.result('switches/s', n / (c1 - c0)) end
common.aggregate(loops, 'switches/s', n, t0, t1)
