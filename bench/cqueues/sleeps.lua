-- sleeps.lua: k coroutines each do cqueues.sleep(delay) r times, under cqueues.
--   lua5.1 bench/cqueues/sleeps.lua [k=1000] [r=200] [delay=0.001]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local cqueues = require 'cqueues'
local o = common.args('sleeps (cqueues)', { k = 1000, r = 200, delay = 0.001 })

local done = 0
local function worker(r, delay)
	local sleep = cqueues.sleep
	for _ = 1, r do
		sleep(delay)
	end
	done = done + 1
end

local cq = cqueues.new()
local t0, c0 = cqueues.monotime(), os.clock()
for _ = 1, o.k do
	cq:wrap(worker, o.r, o.delay)
end
assert(cq:loop())
local t1, c1 = cqueues.monotime(), os.clock()
assert(done == o.k)
common.phase('run', t1 - t0, c1 - c0)
local n = o.k * o.r
common.result('sleeps/s', n / (t1 - t0))
common.result('cpu-us/sleep', (c1 - c0) / n * 1e6)
