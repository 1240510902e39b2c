-- switch.lua: k coroutines each yield m times, on a minimal scheduler in plain Lua
-- (sched=luv: the same workload under luv).
--   lua5.1 bench/plain/switch.lua [k=100] [m=100000]
local dir = arg[0]:match('^(.*/)') or './'
local common = dofile(dir .. '../common.lua')
local sched, label, which = common.scheduler(dir)
local o = common.args('switch (' .. label .. ')', { sched = which, k = 100, m = 100000 })

local function worker(m)
	local yield = sched.yield
	for _ = 1, m do
		yield()
	end
end

local t0, c0, t1, c1 = common.workers(sched, o.k, worker, o.m)
common.phase('run', t1 and t1 - t0, c1 - c0)
common.result('switches/s', o.k * o.m / (c1 - c0))
