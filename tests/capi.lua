-- The C API, through the example module examples/c/delay.c (built by make test).
local t = require 'tap'
local utils = require 'lem.utils'

local delay = t.require('delay')
if not delay then return t.done() end

local t0 = t.now()
t.is(delay.after(0.03, 'value'), 'value', 'lem_suspend/lem_wake: after() returns its value')
local took = utils.now() - t0
t.ok(took >= 0.025 and took < 1, 'after the delay (' .. took .. ')')

local got
t.is(delay.spawn(function(a, b) got = a .. b end, 'x', 'y'), true, 'lem_spawn: spawn returns true')
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
t.ok(not okc and err:find('cannot suspend here: not a coroutine run by lem ' ..
	'%(inside coroutine%.resume or coroutine%.wrap%?%)$'), 'lem_suspend raises where T cannot suspend, ' ..
	'saying why (docs/c-api.md)', err)
utils.sleeper():sleep(0.03)
t.ok(true, 'nothing broke when the timer fired')

-- the waiting coroutine is held by the module while its timer runs
local done = false
utils.spawn(function() delay.after(0.02, 1); done = true end)
utils.yield()
collectgarbage(); collectgarbage()
utils.sleeper():sleep(0.05)
t.ok(done, 'an anchor keeps a waiting coroutine alive through a full GC')

t.error(function() delay.after('x', 1) end, "bad argument #1 to 'after'", 'bad arguments are errors')

-- lem.h's error returns that no module shows to Lua (tests/lib/capiprobe.c)
local probe = require 'capiprobe'
t.same({ probe.post(0), probe.post(2) }, { 'EPIPE', 'EPIPE' }, 'lem_post to an id outside 1..count: -EPIPE')
local full = t.file(t.tmpdir(), 'full.lua', [[
local probe = require 'capiprobe'
local n, r = 0
repeat r, n = probe.post(1), n + 1 until r ~= 0 or n > 1e6
print(n - 1, r)
]])
local fst, fout, ferr = t.run(t.lem .. ' ' .. full)
t.ok(fst == 0 and fout:match('^%d+\tENOSPC\n$'), 'lem_post to a mailbox that nobody empties: ' ..
	'-ENOSPC once it is full (and lem frees what is left at exit)', fout .. ferr)
local refused = {}
-- SIGKILL, SIGSTOP, the synchronous ones, SIGPIPE and SIGURG, a real-time one below SIGRTMIN
for _, sig in ipairs({ 9, 19, 11, 7, 8, 4, 5, 31, 6, 13, 23, 32 }) do
	if probe.signal(sig) ~= 'EINVAL' then refused[#refused + 1] = sig end
end
t.same(refused, {}, 'lem_signal of a signal lem does not hand out: -EINVAL')
local dir = t.tmpdir()
local script = t.file(dir, 'shutdown.lua', [[
local probe = require 'capiprobe'
local utils = require 'lem.utils'
io.write(tostring(probe.hook()), ' ', tostring(probe.async()), ' ')
utils.shutdown(5)
utils.sleeper():sleep(0.05)
io.write(tostring(probe.hook()), ' ', tostring(probe.async()), ' ')
keep = newproxy(true)
getmetatable(keep).__gc = function()
	utils.spawn(function() io.write('spawned ') end)
	io.write(tostring(probe.async()), ' ', probe.anchor() > 0 and 'slot' or 0, '\n')
end
io.write(probe.anchor() > 0 and 'slot' or 0, ' ')
]])
local status, out, errs = t.run(t.lem .. ' ' .. script)
t.is(out, '0 0 1 0 slot ECANCELED 0\n', 'lem_signal_hook_add: 0, then 1 once the shutdown began; ' ..
	'lem_async_run: 0 during the shutdown; once the loop closes, -ECANCELED, lem_anchor 0 ' ..
	'and lem_spawn nothing' .. errs)
t.is(status, 0, '... and lem exits 0')

-- the binary exports the calls of lem.h and the Lua VM, and nothing else of lem's
local api = {}
local header = assert(io.open((os.getenv('LEM_SOURCE') or '.') .. '/include/lem.h')):read('*a')
for name in header:gmatch('\nLEM_API [^(]-([%w_]+)%(') do api[#api + 1] = name end
table.sort(api)
t.ok(#api >= 12 and #api <= 30, 'lem.h declares a small API: ' .. #api .. ' calls LEM_API')
local objs = t.lem:gsub("/lem'$", "/src'")   -- lem's own objects, beside the binary
local _, own = t.run('find ' .. objs .. " -name '*.o' | xargs nm -g --defined-only")
local ours = {}
for name in own:gmatch('%S+ %a (%S+)') do ours[name] = true end
local st, out = t.run('nm -D --defined-only ' .. t.lem)
local exported = {}
for name in out:gmatch('%S+ %a (%S+)') do
	if ours[name] and name ~= 'main' then exported[#exported + 1] = name end
end
table.sort(exported)
t.ok(next(ours) ~= nil, "lem's objects are found beside it")
t.is(table.concat(exported, ' '), table.concat(api, ' '),
	"of lem's own symbols, the binary exports lem.h's calls only (" .. st .. ')')
t.done()
