-- sleeps.lua: k coroutines each sleep delay seconds r times on a timer of their own,
-- under luv.
--   lua5.1 bench/luv/sleeps.lua [k=1000] [r=200] [delay=0.001]
local dir = arg[0]:match('^(.*/)') or './'
local common = dofile(dir .. '../common.lua')
local sched = common.scheduler(dir, 'luv')
local o = common.args('sleeps (luv)', { k = 1000, r = 200, delay = 0.001 })

local function worker(r, ms)
	local t = sched.timer()
	for _ = 1, r do
		t.sleep(ms)
	end
	t.close()
end

local t0, c0, t1, c1 = common.workers(sched, o.k, worker, o.r, o.delay * 1000)
common.sleeps(o.k * o.r, t1 - t0, c1 - c0)
