-- spawn.lua: n spawns of an empty function, all run to completion, the spawner yielding
-- after every `batch` spawns; on a minimal scheduler in plain Lua.
--   lua5.1 bench/plain/spawn.lua [n=1000000] [batch=100]
local dir = arg[0]:match('^(.*/)') or './'
local common = dofile(dir .. '../common.lua')
local sched = dofile(dir .. 'sched.lua')
local o = common.args('spawn (plain Lua)', { n = 1000000, batch = 100 })

local ran = 0
local function empty() ran = ran + 1 end

local c0 = os.clock()
sched.spawn(function()
	local spawn, yield = sched.spawn, sched.yield
	for i = 1, o.n do
		spawn(empty)
		if i % o.batch == 0 then yield() end
	end
end)
sched.run()
local c1 = os.clock()
assert(ran == o.n, 'not every spawned coroutine ran')
common.phase('run', nil, c1 - c0)
common.result('spawns/s', o.n / (c1 - c0))
