-- timers.lua: n one-shot luv timers with random delays in [0, max] seconds (whole
-- milliseconds: luv's unit), each callback a no-op that counts and closes its handle.
--   lua5.1 bench/luv/timers.lua [n=200000] [max=0.05]
local dir = arg[0]:match('^(.*/)') or './'
local common = dofile(dir .. '../common.lua')
local uv = require 'luv'
local o = common.args('timers (luv)', { n = 200000, max = 0.05 })

local fired = 0
local function tick(t)
	fired = fired + 1
	t:close()
end

math.randomseed(1)
local random, maxms, new_timer = math.random, o.max * 1000, uv.new_timer
uv.update_time()
local t0, c0 = uv.hrtime() * 1e-9, os.clock()
for _ = 1, o.n do
	local t = new_timer()
	t:start(math.floor(random() * maxms + 0.5), 0, function() tick(t) end)
end
local t1, c1 = uv.hrtime() * 1e-9, os.clock()
common.phase('start', nil, c1 - c0)
common.result('rss', common.rss())
if o.n == 0 then return end
uv.run()
local t2, c2 = uv.hrtime() * 1e-9, os.clock()
assert(fired == o.n)
common.phase('fire', t2 - t1, c2 - c1)
common.result('fires/s', o.n / (t2 - t0))
