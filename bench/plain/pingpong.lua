-- pingpong.lua: two coroutines wake each other through sleepers n times, on a minimal
-- scheduler in plain Lua (sched=luv: under luv).
--   lua5.1 bench/plain/pingpong.lua [n=1000000]
local dir = arg[0]:match('^(.*/)') or './'
local common = dofile(dir .. '../common.lua')
local sched, label, which = common.scheduler(dir)
local o = common.args('pingpong (' .. label .. ')', { sched = which, n = 1000000 })

local ping, pong, trips = sched.sleeper(), sched.sleeper(), 0
sched.spawn(function(n)        -- pong: sleeps first
	for _ = 1, n do
		pong:sleep()
		ping:wakeup()
	end
end, o.n)
sched.spawn(function(n)
	for _ = 1, n do
		pong:wakeup()
		ping:sleep()
		trips = trips + 1
	end
end, o.n)

local t0, c0 = sched.now and sched.now(), os.clock()
sched.run()
local t1, c1 = sched.now and sched.now(), os.clock()
assert(trips == o.n)
common.phase('run', t1 and t1 - t0, c1 - c0)
common.result('roundtrips/s', o.n / (c1 - c0))
