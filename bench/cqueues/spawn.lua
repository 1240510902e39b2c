-- spawn.lua: n cq:wrap of an empty function, the spawner yielding after every `batch`,
-- under cqueues.
--   lua5.1 bench/cqueues/spawn.lua [n=1000000] [batch=100]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local cqueues = require 'cqueues'
local o = common.args('spawn (cqueues)', { n = 1000000, batch = 100 })

local ran = 0
local function empty() ran = ran + 1 end

local cq = cqueues.new()
local t0, c0 = cqueues.monotime(), os.clock()
cq:wrap(function()
	local yield = cqueues.poll
	for i = 1, o.n do
		cq:wrap(empty)
		if i % o.batch == 0 then yield() end
	end
end)
assert(cq:loop())
local t1, c1 = cqueues.monotime(), os.clock()
assert(ran == o.n, 'not every spawned coroutine ran')
common.phase('run', t1 - t0, c1 - c0)
common.result('spawns/s', o.n / (c1 - c0))
