-- switch.lua: k coroutines each yield m times, on a minimal scheduler in plain Lua.
--   lua5.1 bench/plain/switch.lua [k=100] [m=100000]
local dir = arg[0]:match('^(.*/)') or './'
local common = dofile(dir .. '../common.lua')
local sched = dofile(dir .. 'sched.lua')
local o = common.args('switch (plain Lua)', { k = 100, m = 100000 })

local done = 0
local function worker(m)
	local yield = sched.yield
	for _ = 1, m do
		yield()
	end
	done = done + 1
end

local c0 = os.clock()
for _ = 1, o.k do
	sched.spawn(worker, o.m)
end
sched.run()
local c1 = os.clock()
assert(done == o.k)
common.phase('run', nil, c1 - c0)
common.result('switches/s', o.k * o.m / (c1 - c0))
