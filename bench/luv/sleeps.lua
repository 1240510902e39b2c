-- sleeps.lua: k coroutines each sleep delay seconds r times on a timer of their own,
-- under luv.
--   lua5.1 bench/luv/sleeps.lua [k=1000] [r=200] [delay=0.001]
local dir = arg[0]:match('^(.*/)') or './'
local common = dofile(dir .. '../common.lua')
local sched = dofile(dir .. 'sched.lua')
local o = common.args('sleeps (luv)', { k = 1000, r = 200, delay = 0.001 })

local done = 0
local function worker(r, ms)
	local t = sched.timer()
	for _ = 1, r do
		t.sleep(ms)
	end
	t.close()
	done = done + 1
end

local t0, c0 = sched.now(), os.clock()
for _ = 1, o.k do
	sched.spawn(worker, o.r, o.delay * 1000)
end
sched.run()
local t1, c1 = sched.now(), os.clock()
assert(done == o.k)
common.phase('run', t1 - t0, c1 - c0)
local n = o.k * o.r
common.result('sleeps/s', n / (t1 - t0))
common.result('cpu-us/sleep', (c1 - c0) / n * 1e6)
