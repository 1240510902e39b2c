-- parked.lua: the VM's own parked coroutine: n times coroutine.create + resume to a
-- yield, anchored in a table; peak RSS (bench/run subtracts n=0's and divides by n).
--   lua5.1 bench/plain/parked.lua [n=100000]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local o = common.args('parked (plain Lua)', { n = 100000 })

local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield
local function park() yield() end

local parked = {}
local c0 = os.clock()
for i = 1, o.n do
	local co = create(park)
	resume(co)
	parked[i] = co
end
local c1 = os.clock()
common.phase('park', nil, c1 - c0)
common.result('rss', common.rss())
for i = 1, o.n do
	assert(resume(parked[i]))
end
common.phase('wake', nil, os.clock() - c1)
