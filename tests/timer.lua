-- lem.utils timers: fire, cancel, expired.
local t = require 'tap'
local utils = require 'lem.utils'

local fired, at = false, nil
local t0 = t.now()
local tm = utils.timer(0.03, function(...) fired = select('#', ...); at = utils.now() end)
t.is(type(tm), 'userdata', 'timer() returns a timer object')
t.is(getmetatable(tm), 'timer', 'its metatable is protected')
utils.sleeper():sleep(0.1)
t.is(fired, 0, 'the timer ran its function, with no arguments')
t.ok(at and at - t0 >= 0.025 and at - t0 < 1, 'about 0.03 s later (' .. tostring(at and at - t0) .. ')')
t.same({ tm:cancel() }, { nil, 'expired' }, "cancel after it fired: nil, 'expired'")

-- cancel before it fires
local ran = false
local tc = utils.timer(0.02, function() ran = true end)
t.same({ tc:cancel() }, { true }, 'cancel of a pending timer returns true')
t.same({ tc:cancel() }, { nil, 'expired' }, 'a second cancel says expired')
utils.sleeper():sleep(0.05)
t.ok(not ran, 'a cancelled timer never runs')

-- seconds <= 0: like spawn, still a timer, already expired
local order = {}
local tz = utils.timer(0, function() order[#order + 1] = 'timer' end)
utils.spawn(function() order[#order + 1] = 'spawn' end)
t.same({ tz:cancel() }, { nil, 'expired' }, 'timer(0) is expired at once')
utils.yield()
t.same(order, { 'timer', 'spawn' }, 'timer(0) runs in spawn order')
t.ok(utils.timer(-5, function() end), 'negative delays work too')

-- a timer kept by nobody still fires
local orphan = false
utils.timer(0.02, function() orphan = true end)
collectgarbage(); collectgarbage()
utils.sleeper():sleep(0.06)
t.ok(orphan, 'an unreferenced timer still fires')

-- timers fire in deadline order and run in coroutines that may suspend
local seq = {}
for _, d in ipairs({ 0.04, 0.01, 0.03, 0.02 }) do
	utils.timer(d, function() utils.yield(); seq[#seq + 1] = d end)
end
utils.sleeper():sleep(0.1)
t.same(seq, { 0.01, 0.02, 0.03, 0.04 }, 'timers fire in deadline order')

-- many timers
local count = 0
for i = 1, 20000 do utils.timer((i % 20) / 1000, function() count = count + 1 end) end
local w = utils.sleeper()
local t1 = utils.now()
while count < 20000 and utils.now() - t1 < 5 do w:sleep(0.01) end
t.is(count, 20000, '20000 timers all fired')

-- the process waits for pending timers before it exits: checked in cli.lua
t.error(function() utils.timer(0/0, function() end) end, "bad argument #1 to 'timer' %(delay is not a number%)", 'a NaN delay is a bad argument, not a timer that never fires')
t.error(function() tm.cancel(42) end, "bad argument #1 to 'cancel' %(timer expected, got number%)", 'cancel on a non-timer')

-- Out of memory when the table of anchored values grows (2 slots a timer, 16 bytes each):
-- that table, grown on the loop's own state where no Lua call protects it, aborted the
-- process ("unprotected error in the Lua API"). failalloc (tests/lib/failalloc.c), in a
-- child lem, makes allocations above 256 KiB fail: the table's at 16384 slots.
local shim = (os.getenv('LEM') or ''):match('^(.*)/[^/]*$')
if (os.getenv('LEM_SANITIZER') or '') ~= '' or not shim then
	t.skip('timers out of memory: an error, no abort', 'sanitizers replace the allocator')
else
	local st, out, err = t.run('LD_PRELOAD=' .. shim .. '/modules/failalloc.so LUA_CPATH=' .. shim ..
		"/modules/?.so " .. t.lem .. [[ -e "
local fa, utils = require 'failalloc', require 'lem.utils'
fa.above(65536)
if pcall(string.rep, 'y', 1048576) then fa.above(nil) print('skip') return end
fa.above(nil)
local timers, f = {}, function() end
for i = 1, 100000 do timers[i] = false end
fa.above(256 * 1024)
local ok, e = pcall(function() for i = 1, 100000 do timers[i] = utils.timer(1e6, f) end end)
fa.above(nil)
local n = 0
for i = 1, 100000 do if timers[i] then n = n + 1 timers[i]:cancel() end end
local fired
utils.timer(0.01, function() fired = true end)
utils.sleeper():sleep(0.05)
print(ok, e, n > 1000 and n < 100000, fired)"]])
	if out == 'skip\n' then
		t.skip('timers out of memory: an error, no abort', 'the VM does not allocate through malloc')
	else
		t.ok(st == 0 and out == 'false\tnot enough memory\ttrue\ttrue\n',
			"timers out of memory: utils.timer raises 'not enough memory', no abort; timers work after",
			('status %s: %s%s'):format(st, out, err))
	end
end

-- timers still pending when the loop closes are freed with it, without a finalizer each:
-- this file ends with 1000 of them, which ASan and valgrind check
for i = 1, 1000 do utils.timer(60 + i, function() end) end
t.done()
utils.exit(0)
