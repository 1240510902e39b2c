-- lem.signal: waits for signals in several coroutines and loops, timeouts, bursts, ignore
-- and default, the names it refuses; and wait('shutdown').
local t = require 'tap'
local signal = require 'lem.signal'
local utils = require 'lem.utils'
local lem = t.lem

local dir = t.tmpdir()
local function file(name, text) return t.file(dir, name, text) end
local pid = io.open('/proc/self/stat'):read('*l'):match('^%d+')
local function kill(sig) return os.execute('kill -' .. sig .. ' ' .. pid) == 0 end
local function sleep(s) utils.sleeper():sleep(s) end

-- ---- names ----
for _, name in ipairs { 'KILL', 'STOP', 'SEGV', 'BUS', 'FPE', 'ILL', 'TRAP', 'SYS', 'ABRT',
                        'PIPE', 'URG' } do
	t.error(function() signal.wait(name, 0) end, "bad argument #1 to 'wait' %(lem does not hand out " .. name .. '%)',
		name .. ' is refused')
end
for _, name in ipairs { 'FOO', 'hup', 'SIGHUP', '', 'RTMIN+', 'RTMIN-1', 'RTMAX+1', 'RTMIN+999', 'RTMIN+x' } do
	t.error(function() signal.wait(name, 0) end, "bad argument #1 to 'wait' %(unknown signal '" .. name:gsub('%p', '%%%0') .. "'%)",
		("unknown name '%s' is refused"):format(name))
end
t.error(function() signal.wait() end, "bad argument #1 to 'wait' %(string expected", 'wait needs a name')
t.error(function() signal.wait({}) end, "bad argument #1 to 'wait'", 'a name is a string')
t.error(function() signal.wait('USR1', 'x') end, "bad argument #2 to 'wait'", 'a timeout is a number')
t.error(function() signal.wait('USR1', 0/0) end, "bad argument #2 to 'wait' %(timeout is not a number%)", 'NaN is no timeout')
t.error(function() signal.ignore('shutdown') end, "bad argument #1 to 'ignore' %(unknown signal 'shutdown'%)",
	"'shutdown' cannot be ignored")
t.error(function() signal.default('KILL') end, "bad argument #1 to 'default'", 'KILL has no default to set')
for _, name in ipairs { 'HUP', 'INT', 'QUIT', 'USR1', 'USR2', 'ALRM', 'TERM', 'CHLD', 'CONT', 'TSTP',
                        'TTIN', 'TTOU', 'WINCH', 'RTMIN', 'RTMIN+3', 'RTMAX-2', 'RTMAX' } do
	local got, err = signal.wait(name, 0)
	t.ok(got == nil and err == 'timeout', name .. ': a wait with timeout 0 returns nil, timeout')
end
-- those were caught by this loop from that wait on: give them back
for _, name in ipairs { 'INT', 'TERM', 'QUIT', 'ALRM', 'TSTP', 'TTIN', 'TTOU', 'CONT', 'CHLD', 'WINCH', 'HUP' } do
	signal.default(name)
end

-- ---- timeouts ----
local t0 = t.now()
local got, err = signal.wait('USR2', 0.1)
t.ok(got == nil and err == 'timeout', 'wait(name, 0.1) times out: nil, timeout')
t.near(utils.now() - t0, 0.1, 0.05, '... after 0.1 s')
t.same({ signal.wait('USR2', -1) }, { nil, 'timeout' }, 'a negative timeout returns at once too')
t.error(function() coroutine.wrap(function() return signal.wait('USR2') end)() end, 'cannot suspend here', 'wait where it cannot suspend raises')
got, err = signal.wait('USR2', 0)
t.ok(got == nil and err == 'timeout', '... and the next wait is as good as new')

-- ---- several coroutines of one loop, one signal ----
local woke = {}
for i = 1, 5 do
	utils.spawn(function() woke[i] = signal.wait('USR1') end)
end
utils.yield()
kill('USR1')
t.eventually(function() return #woke == 5 end)
t.same(woke, { 'USR1', 'USR1', 'USR1', 'USR1', 'USR1' }, 'every coroutine waiting for USR1 wakes, with its name')

-- one that arrives while none waits is kept for the next wait, once
kill('USR1')
-- it reaches this loop soon (through the main thread): a wait with timeout 0 returns it then
got = t.eventually(function() return signal.wait('USR1', 0) end)
t.is(got, 'USR1', 'a signal caught while no coroutine waited: the next wait returns it at once')
got, err = signal.wait('USR1', 0.05)
t.is(err, 'timeout', '... once: the wait after it waits')

-- real-time signals: the name a coroutine waited with comes back
woke = {}
utils.spawn(function() woke[1] = signal.wait('RTMIN+3') end)
utils.spawn(function() woke[2] = signal.wait('RTMIN+3', 5) end)
utils.yield()
os.execute('kill -s RTMIN+3 ' .. pid .. ' 2>/dev/null || kill -$(( $(kill -l RTMIN) + 3 )) ' .. pid)
t.eventually(function() return #woke == 2 end)
t.same(woke, { 'RTMIN+3', 'RTMIN+3' }, 'RTMIN+3 wakes its waiters')

-- ---- a burst: 1000 HUP, then one more once the waiters wait again ----
local counts, waiting = { 0, 0, 0 }, { false, false, false }
for i = 1, 3 do
	utils.spawn(function()
		while true do
			waiting[i] = true
			local name = signal.wait('HUP')
			waiting[i] = false
			if name ~= 'HUP' then break end
			counts[i] = counts[i] + 1
		end
	end)
end
utils.yield()
os.execute('i=0; while [ $i -lt 1000 ]; do kill -HUP ' .. pid .. '; i=$((i+1)); done')
t.eventually(function()
	return counts[1] >= 1 and counts[2] >= 1 and counts[3] >= 1 and waiting[1] and waiting[2] and waiting[3]
end)
sleep(0.05)   -- the last of the burst's deliveries, if any, come in
local after = { counts[1], counts[2], counts[3] }
t.ok(after[1] >= 1 and after[2] >= 1 and after[3] >= 1,
	('1000 HUP in a burst: every waiter wakes at least once (%d, %d, %d times)'):format(after[1], after[2], after[3]))
t.ok(waiting[1] and waiting[2] and waiting[3], '... and waits again')
kill('HUP')
t.eventually(function() return counts[1] > after[1] and counts[2] > after[2] and counts[3] > after[3] end)
t.ok(counts[1] > after[1] and counts[2] > after[2] and counts[3] > after[3],
	'one HUP after the burst wakes every waiter again')
-- ignore ends the waits of this loop: nil, 'closed'
signal.ignore('HUP')
t.eventually(function() return not (waiting[1] or waiting[2] or waiting[3]) end)
t.ok(not waiting[1] and not waiting[2] and not waiting[3], 'signal.ignore ends the waits for it: nil, closed')
kill('HUP')
sleep(0.05)
t.ok(true, 'an ignored HUP does nothing')
got, err = signal.wait('HUP', 0.05)
t.is(err, 'timeout', '... and is not kept for the next wait')
-- what ignore and default end the waits with
local ended = {}
utils.spawn(function() ended[1] = { signal.wait('USR2') } end)
utils.spawn(function() ended[2] = { signal.wait('USR2', 5) } end)
utils.yield()
t.is(signal.default('USR2'), true, 'signal.default returns true')
utils.yield()
t.same(ended, { { nil, 'closed' }, { nil, 'closed' } }, "signal.default ends the loop's waits, timed or not: nil, closed")
utils.spawn(function() ended[3] = { signal.wait('USR2') } end)
utils.yield()
t.is(signal.ignore('USR2'), true, 'signal.ignore returns true')
utils.yield()
t.same(ended[3], { nil, 'closed' }, '... and signal.ignore: nil, closed')
-- a signal kept for the next wait is dropped by ignore
signal.wait('USR1', 0)       -- caught again
kill('USR1')
sleep(0.2)                   -- it reaches this loop, with no coroutine waiting: kept
signal.ignore('USR1')
got, err = signal.wait('USR1', 0.05)
t.is(err, 'timeout', 'signal.ignore drops a signal kept for the next wait')
signal.default('USR1')

-- ---- child processes: default actions, TERM caught, several loops ----
-- the ready file gets a line per loop (or per coroutine) once it waits: once the waiting
-- coroutine is in signal.wait (a signal sent before would find nobody to take it)
local ready = dir .. '/ready'
-- Starts script in the background; waits for `want` lines in the ready file; sends each
-- signal of sigs (a space between two waits of 0.2 s); returns the status, stdout, stderr.
-- A child still there after 60 s is killed (status 137).
local function child(opts, script, want, sigs)
	os.remove(ready)
	local cmd = ('(' .. t.sh_bounded .. '%s %s %s %s & p=$!; i=0; while [ $(cat %s 2>/dev/null | wc -l) -lt %d ] && [ $i -lt 1500 ]; ' ..
	             'do sleep 0.02; i=$((i+1)); done; for s in %s; do kill -$s $p; sleep 0.2; done; bounded 60 $p; echo "status $?")')
		:format(lem, opts, script, ready, ready, want, sigs)
	local _, out, err = t.run(cmd)
	return tonumber(out:match('status (%d+)\n$')), out:gsub('status %d+\n$', ''), err
end
local function sorted(s) return t.sorted(s, '\n') end

local several = file('several.lua', [[
local signal, utils, loops = require 'lem.signal', require 'lem.utils', require 'lem.loops'
local ready = ...
for i = 1, 2 do
	utils.spawn(function() print(('loop %d co %d %s'):format(loops.id, i, signal.wait('USR1'))) end)
end
utils.yield()   -- both wait now
local f = io.open(ready, 'a') f:write('x\nx\n') f:close()
]])
local st, out = child('--loops 3', several, 6, 'USR1')
t.is(st, 0, 'USR1 to three loops that wait for it: they end, status 0')
t.is(sorted(out), 'loop 1 co 1 USR1\nloop 1 co 2 USR1\nloop 2 co 1 USR1\nloop 2 co 2 USR1\nloop 3 co 1 USR1\nloop 3 co 2 USR1',
	'... every coroutine of every loop woke')

local caught = file('caught.lua', [[
local signal, utils = require 'lem.signal', require 'lem.utils'
local ready = ...
utils.spawn(function()
	utils.yield()   -- the main chunk waits now: TERM is caught from here on
	local f = io.open(ready, 'a') f:write('x\n') f:close()
end)
for i = 1, 2 do print(signal.wait('TERM')) end
]])
st, out = child('', caught, 1, 'TERM TERM')
t.is(st, 0, 'TERM to a script that waits for it: no shutdown, nothing killed, status 0')
t.is(out, 'TERM\nTERM\n', '... the waiter wakes each time')

local ignored = file('ignored.lua', [[
local signal, utils = require 'lem.signal', require 'lem.utils'
local ready, name = ...
signal.ignore(name)
local f = io.open(ready, 'a') f:write('x\n') f:close()
utils.sleeper():sleep(0.5)
print('still here')
]])
st, out = child('', ignored .. ' ' .. ready .. ' HUP', 1, 'HUP')
t.ok(st == 0 and out == 'still here\n', 'signal.ignore(HUP): HUP does nothing (status ' .. tostring(st) .. ')')
st, out = child('', ignored .. ' ' .. ready .. ' TERM', 1, 'TERM')
t.ok(st == 0 and out == 'still here\n', 'signal.ignore(TERM): no shutdown (status ' .. tostring(st) .. ')')

local default = file('default.lua', [[
local signal, utils = require 'lem.signal', require 'lem.utils'
local ready = ...
signal.wait('HUP', 0)      -- caught from here on
signal.default('HUP')
local f = io.open(ready, 'a') f:write('x\n') f:close()
utils.sleeper():sleep(30)   -- until the HUP, which ends it
print('still here')
]])
st, out = child('', default .. ' ' .. ready, 1, 'HUP')
t.ok(st == 129 and out == '', 'signal.default(HUP) after a wait: HUP kills again (status ' .. tostring(st) .. ')')

-- a loop that catches HUP and ends gives it back: the others die of it
local gone = file('gone.lua', [[
local signal, utils, loops = require 'lem.signal', require 'lem.utils', require 'lem.loops'
local ready = ...
if loops.id == 1 then signal.wait('HUP', 0) return end
while loops.send(1) do utils.sleeper():sleep(0.01) end   -- until loop 1 has ended
local f = io.open(ready, 'a') f:write('x\n') f:close()
utils.sleeper():sleep(30)   -- until the HUP, which ends it
print('still here')
]])
st, out = child('--loops 2', gone .. ' ' .. ready, 1, 'HUP')
t.ok(st == 129 and out == '', 'a loop that caught HUP has ended: HUP takes its default action (status ' .. tostring(st) .. ')')

-- a wait for 'shutdown' keeps no loop running: nothing else to do, the process ends
local t0 = utils.now()
st, out = t.run(lem .. [[ -e "local u = require 'lem.utils'
u.spawn(function() print('woke', require('lem.signal').wait('shutdown')) end) print('main')"]])
sleep(0.001)
t.ok(st == 0 and out == 'main\n' and utils.now() - t0 < 5, "a wait for 'shutdown' alone: the process ends at once, status 0", out)
-- a SIGURG from outside is ignored: it interrupts no loop busy in Lua code (lem sends its
-- own to stop loops)
local spin = file('spin.lua', [[
local ready = ...
local f = io.open(ready, 'a') f:write('x\n') f:close()
local t0 = os.clock()
while os.clock() - t0 < 1 do end
print('done')
]])
for _, opts in ipairs { '', '--loops 2' } do
	st, out = child(opts, spin .. ' ' .. ready, opts == '' and 1 or 2, 'URG')
	t.ok(st == 0 and out == (opts == '' and 'done\n' or 'done\ndone\n'),
		('a SIGURG from outside interrupts nothing (%s): status %s'):format(opts == '' and 'one loop' or opts, tostring(st)), out)
end
t.done()
