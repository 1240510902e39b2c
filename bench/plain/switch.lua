-- switch.lua: k coroutines each yield m times, on a minimal scheduler in plain Lua
-- (sched=luv: the same workload under luv).
--   lua5.1 bench/plain/switch.lua [k=100] [m=100000]
local dir = arg[0]:match('^(.*/)') or './'
local common = dofile(dir .. '../common.lua')
local sched, label, which = common.scheduler(dir)
local o = common.args('switch (' .. label .. ')', { sched = which, k = 100, m = 100000 })

local done = 0
local function worker(m)
	local yield = sched.yield
	for _ = 1, m do
		yield()
	end
	done = done + 1
end

local t0, c0 = sched.now and sched.now(), os.clock()
for _ = 1, o.k do
	sched.spawn(worker, o.m)
end
sched.run()
local t1, c1 = sched.now and sched.now(), os.clock()
assert(done == o.k)
common.phase('run', t1 and t1 - t0, c1 - c0)
common.result('switches/s', o.k * o.m / (c1 - c0))
