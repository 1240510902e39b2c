-- spawn.lua: n spawns of an empty function, all run to completion, the spawner yielding
-- after every `batch` spawns; on a minimal scheduler in plain Lua (sched=luv: under luv).
--   lua5.1 bench/plain/spawn.lua [n=1000000] [batch=100]
local dir = arg[0]:match('^(.*/)') or './'
local common = dofile(dir .. '../common.lua')
local sched, label, which = common.scheduler(dir)
local o = common.args('spawn (' .. label .. ')', { sched = which, n = 1000000, batch = 100 })

local ran = 0
local function empty() ran = ran + 1 end

local t0, c0 = sched.now and sched.now(), os.clock()
sched.spawn(function()
	local spawn, yield = sched.spawn, sched.yield
	for i = 1, o.n do
		spawn(empty)
		if i % o.batch == 0 then yield() end
	end
end)
sched.run()
local t1, c1 = sched.now and sched.now(), os.clock()
assert(ran == o.n, 'not every spawned coroutine ran')
common.phase('run', t1 and t1 - t0, c1 - c0)
common.result('spawns/s', o.n / (c1 - c0))
