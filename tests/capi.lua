-- The C API, through the example module examples/c/delay.c (built by make test).
local t = require 'tap'
local utils = require 'lem.utils'

local ok, delay = pcall(require, 'delay')
if not ok then
	t.ok(false, 'the example module loads: ' .. tostring(delay))
	return t.done()
end

local t0 = utils.now()
t.is(delay.after(0.03, 'value'), 'value', 'lem_wait/lem_yield/lem_wake: after() returns its value')
local took = utils.now() - t0
t.ok(took >= 0.025 and took < 1, 'after the delay (' .. took .. ')')

local got
t.is(delay.spawn(function(a, b) got = a .. b end, 'x', 'y'), true, 'lem_newthread/lem_queue: spawn returns true')
utils.yield()
t.is(got, 'xy', 'the queued coroutine ran with its arguments')

-- several waiters at once, woken in deadline order
local order = {}
for i, d in ipairs({ 0.03, 0.01, 0.02 }) do
	utils.spawn(function() local v = delay.after(d, i); order[#order + 1] = v end)
end
utils.sleeper():sleep(0.08)
t.same(order, { 2, 3, 1 }, 'three waiters woken by their timers')

-- across the yield-safe pcall
t.same({ pcall(delay.after, 0.01, 'p') }, { true, 'p' }, 'a C module suspension inside pcall')

-- inside a user coroutine: an error, and the timer's later wake is ignored
local co = coroutine.create(function() return delay.after(0.01, 'never') end)
local okc, err = coroutine.resume(co)
t.ok(not okc and err:find('cannot suspend here'), 'lem_wait raises where T cannot suspend')
utils.sleeper():sleep(0.03)
t.ok(true, 'nothing broke when the timer fired')

-- the waiting coroutine is held by the module while its timer runs
local done = false
utils.spawn(function() delay.after(0.02, 1); done = true end)
utils.yield()
collectgarbage(); collectgarbage()
utils.sleeper():sleep(0.05)
t.ok(done, 'lem_hold keeps a waiting coroutine alive through a full GC')

t.error(function() delay.after('x', 1) end, "bad argument #1 to 'after'", 'bad arguments are errors')
t.done()
