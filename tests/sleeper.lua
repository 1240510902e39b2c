-- lem.utils sleepers: sleep, wakeup, timeouts, busy, and many at once.
local t = require 'tap'
local utils = require 'lem.utils'

local s = utils.sleeper()
t.is(type(s), 'table', 'sleeper() returns an object')
t.is(getmetatable(s), 'sleeper', 'its metatable is protected')

-- wakeup with values
local function pack(...) return { n = select('#', ...), ... } end
local got
utils.spawn(function() got = pack(s:sleep()) end)
utils.yield()
t.same({ s:wakeup('a', nil, 3) }, { true }, 'wakeup returns true when someone sleeps')
utils.yield()
t.is(got and got.n, 3, 'sleep returns as many values as wakeup got')
t.same({ got[1], got[2], got[3] }, { 'a', nil, 3 }, 'sleep returns the values of wakeup')

-- not sleeping
local r1, r2 = s:wakeup(1)
t.is(r1, nil, 'wakeup with no sleeper returns nil')
t.is(r2, 'not sleeping', "... and 'not sleeping'")

-- busy
local first
utils.spawn(function() first = { s:sleep(1) } end)
utils.yield()
local b1, b2 = s:sleep(0.5)
t.is(b1, nil, 'second sleeper gets nil at once')
t.is(b2, 'busy', "... and 'busy'")
s:wakeup('w')
utils.yield()
t.same(first, { 'w' }, 'the first sleeper, woken before its timeout, gets the values')

-- timeout
local t0 = t.now()
local a, e = s:sleep(0.05)
local took = utils.now() - t0
t.is(a, nil, 'timed out sleep returns nil')
t.is(e, 'timeout', "... and 'timeout'")
t.ok(took >= 0.045 and took < 1, 'the timeout took about 0.05 s (' .. took .. ')')
t.same({ s:wakeup() }, { nil, 'not sleeping' }, 'a timed-out sleeper sleeps no more')

-- a sleeper can be reused after a timeout and after a wakeup
utils.spawn(function() s:wakeup('again') end)
t.is(s:sleep(1), 'again', 'reused after a timeout')

-- sleep(0) and negative: like yield, returns nil, 'timeout'
local ran = false
utils.spawn(function() ran = true end)
local z1, z2 = s:sleep(0)
t.ok(ran, 'sleep(0) lets queued coroutines run')
t.same({ z1, z2 }, { nil, 'timeout' }, "sleep(0) returns nil, 'timeout'")
t.same({ s:sleep(-1) }, { nil, 'timeout' }, 'sleep(-1) too')

-- woken before the timer, the timer must not fire later
local late = false
utils.spawn(function() local v = s:sleep(0.03); if v == nil then late = true end end)
utils.yield()
s:wakeup('early')
utils.sleeper():sleep(0.06)
t.ok(not late, 'a woken sleep does not time out afterwards')

-- one sleeper per coroutine: ping-pong
local ping, pong = utils.sleeper(), utils.sleeper()
local rounds = 0
utils.spawn(function()
	for i = 1, 1000 do ping:wakeup(i); pong:sleep() end
end)
for i = 1, 1000 do
	local v = ping:sleep()
	if v == i then rounds = rounds + 1 end
	pong:wakeup()
end
t.is(rounds, 1000, '1000 ping-pong round trips in order')

-- bad arguments
t.error(function() s.sleep({}) end, "bad argument #1 to 'sleep' %(sleeper expected, got table%)", 'sleep on a non-sleeper')
t.error(function() s.wakeup(42) end, "bad argument #1 to 'wakeup' %(sleeper expected, got number%)", 'wakeup on a number')
t.error(function() s.wakeup({}) end, "bad argument #1 to 'wakeup' %(sleeper expected, got table%)", 'wakeup on a non-sleeper')
t.error(function() s.wakeup({ coroutine.running() }) end, "bad argument #1 to 'wakeup' %(sleeper expected, got table%)",
	'wakeup on a non-sleeper that names a coroutine')
t.error(function() s:sleep('soon') end, "bad argument #1 to 'sleep' %(number expected, got string%)", 'sleep with a bad timeout (methods count from after self)')
t.error(function() s:sleep(0/0) end, "bad argument #1 to 'sleep' %(timeout is not a number%)", 'a NaN timeout is a bad argument, not a sleep for ever')

-- 100k concurrent sleepers, woken in order
local N = 100000
local sleepers, woken = {}, 0
for i = 1, N do
	local sl = utils.sleeper()
	sleepers[i] = sl
	utils.spawn(function() if sl:sleep() == i then woken = woken + 1 end end)
end
utils.yield()
for i = 1, N do sleepers[i]:wakeup(i) end
utils.yield()
t.is(woken, N, '100k concurrent sleepers each woken with their value')

-- 100k concurrent timed sleeps
local timed = 0
for _ = 1, N do
	utils.spawn(function() if select(2, utils.sleeper():sleep(0.01)) == 'timeout' then timed = timed + 1 end end)
end
t.eventually(function() return timed == N end, 60)
t.is(timed, N, '100k concurrent timed sleeps all time out')

-- a coroutine parked on a sleeper nobody can reach is garbage; one still reachable is not
local alive = setmetatable({}, { __mode = 'k' })
for _ = 1, 100 do
	utils.spawn(function() alive[coroutine.running()] = true; utils.sleeper():sleep() end)
end
local keep = utils.sleeper()
utils.spawn(function() alive[coroutine.running()] = true; keep:sleep() end)
utils.yield()
utils.yield()
collectgarbage(); collectgarbage()
local n = 0
for _ in pairs(alive) do n = n + 1 end
t.is(n, 1, 'unreachable parked coroutines are collected, the reachable one stays')
t.is(keep:wakeup('still here'), true, 'the reachable one can still be woken')

-- a timed sleep keeps its coroutine alive even when its sleeper is dropped
local timed_out = false
utils.spawn(function() local _, e2 = utils.sleeper():sleep(0.02); timed_out = e2 == 'timeout' end)
utils.yield()
collectgarbage(); collectgarbage()
utils.sleeper():sleep(0.05)
t.ok(timed_out, 'a dropped sleeper with a timeout still wakes its coroutine')

-- a sleep that cannot suspend (inside a metamethod, in PUC Lua) leaves the sleeper free
local sm = utils.sleeper()
local proxy = setmetatable({}, { __index = function() return sm:sleep() end })
utils.spawn(function() sm:wakeup('via metamethod') end)   -- for a VM that can suspend there
local okm, vm = pcall(function() return proxy.x end)
if okm then
	t.is(vm, 'via metamethod', 'this VM suspends inside metamethods')
else
	utils.yield()   -- the waker finds nobody sleeping
	t.same({ sm:sleep(0.001) }, { nil, 'timeout' }, 'a failed sleep leaves the sleeper usable, not busy')
end

-- a coroutine resumed by hand (unsupported) and recycled: its old sleeper's wakeup is
-- stale and must not wake whatever that coroutine runs next
local hs = utils.sleeper()
local victim
utils.spawn(function() victim = coroutine.running(); hs:sleep() end)
utils.yield()
coroutine.resume(victim)
utils.yield()
local hw = 'not yet'
utils.spawn(function() local v, e = utils.sleeper():sleep(0.03); hw = v or e end)
utils.yield()
t.same({ hs:wakeup('hijack') }, { nil, 'not sleeping' }, 'a stale wakeup says so')
utils.sleeper():sleep(0.06)
t.is(hw, 'timeout', 'a stale wakeup never wakes the next suspension of a recycled coroutine')

-- a sleeper left stale by a hand resume is free again: for a sleep, and for a timed one
-- whose old timer then fires without waking anybody
local fs, fr = utils.sleeper(), {}
utils.spawn(function() victim = coroutine.running(); fs:sleep(0.02) end)
utils.yield()
coroutine.resume(victim)
utils.spawn(function() fr[#fr + 1] = { fs:sleep() } end)
utils.yield()
t.same({ fs:sleep() }, { nil, 'busy' }, 'the new sleeper of a stale sleeper has it')
utils.sleeper():sleep(0.04)                -- the old timer fires meanwhile
t.is(#fr, 0, "the stale sleep's timer wakes nobody")
t.is(fs:wakeup('new'), true, 'the new sleep is woken by wakeup')
utils.yield()
t.same(fr[1], { 'new' }, 'with its values')

-- timed sleeps amid garbage with finalizers: the resume values are made on the loop's
-- own state, so no finalizer ever runs on a suspended coroutine and none is lost
local gdone, GN, GM = 0, 100, 50
local function churn()
	local p = newproxy(true)
	getmetatable(p).__gc = function() local x = {} for i = 1, 10 do x[i] = i .. 'x' end end
	return p
end
for _ = 1, GN do
	utils.spawn(function()
		local s2 = utils.sleeper()
		for _ = 1, GM do churn(); s2:sleep(0.0005) end
		gdone = gdone + 1
	end)
end
local gw, gt0 = utils.sleeper(), utils.now()
while gdone < GN and utils.now() - gt0 < 20 do gw:sleep(0.02); collectgarbage('step', 200) end
t.is(gdone, GN, 'timed sleeps woken amid finalizers: no coroutine lost')

t.done()
