-- Seeing inside a running lem: --warn-blocking's warning, once per blocked resume, with
-- where the coroutine runs; SIGQUIT's dump of every loop, after which lem goes on.
local t = require 'tap'
local utils = require 'lem.utils'
local lem = t.lem

local dir = t.tmpdir()
local function count(s, pattern) return select(2, s:gsub(pattern, '')) end
local function sleep(s) utils.sleeper():sleep(s) end

-- ---- the blocking warning ----
-- busy(s) spins s seconds of wall time, as the warning counts them (by CPU time, it
-- would run much longer on a loaded machine), reading the clock on the lines it spins on.
local spin = t.file(dir, 'spin.lua', [[
local utils = require 'lem.utils'
local function busy(s)
	local f = io.open('/proc/uptime') local t0 = f:read('*n') f:close()
	local c = 0
	while true do   -- BUSY
		c = c + 1
		if c % 1000 == 0 then f = io.open('/proc/uptime') local x = f:read('*n') f:close() if x - t0 > s then break end end
	end
end
for i = 1, tonumber(arg[1] or 1) do
	busy(0.3)
	utils.sleeper():sleep(0.05)
end
print('done')
]])
local status, out, err = t.run(lem .. ' --warn-blocking 100 ' .. spin)
t.is(status, 0, '--warn-blocking 100: the script runs to its end')
t.is(count(err, 'blocked'), 1, 'one warning for a coroutine that runs 300 ms without suspending')
local ms, where = err:match('^lem: blocked (%d+) ms in ([^\n]+)\n')
t.ok(ms and tonumber(ms) >= 100 and tonumber(ms) < 2000, 'it says how long it has run: ' .. tostring(ms) .. ' ms')
if os.getenv('LEM_SANITIZER') == 'tsan' then
	-- ThreadSanitizer holds a signal back until the thread calls a function it watches:
	-- the hook is set, and the traceback taken, after the spin
	t.skip('where it spins', 'ThreadSanitizer delivers the interrupt late')
	t.skip('its traceback', 'ThreadSanitizer delivers the interrupt late')
else
	t.like(where or '', 'spin%.lua:[567]$', 'and where: the spinning function\'s line')
	t.like(err, "stack traceback:\n.-spin%.lua:%d+: in function 'busy'\n.-spin%.lua:11: in main chunk",
		'and its traceback, taken in the loop\'s thread')
end
status, out, err = t.run(lem .. ' --warn-blocking 100 ' .. spin .. ' 2')
t.is(count(err, 'blocked'), 2, 'each blocked resume is warned about once')
status, out, err = t.run(lem .. ' ' .. spin)
t.ok(status == 0 and err == '', 'no warning without --warn-blocking')
status, out, err = t.run('LEM_WARN_BLOCKING=100 ' .. lem .. ' ' .. spin)
t.is(count(err, 'blocked'), 1, 'LEM_WARN_BLOCKING=100 is --warn-blocking 100')
status, out, err = t.run(lem .. ' --warn-blocking 1000 ' .. spin)
t.is(count(err, 'blocked'), 0, 'no warning under the limit')
status, out, err = t.run(lem .. ' --loops 2 --warn-blocking 100 ' .. spin)
t.ok(count(err, 'lem%[1%]: blocked') == 1 and count(err, 'lem%[2%]: blocked') == 1,
	'--loops 2: each loop warns about its own coroutine', err)
status, out, err = t.run(lem .. ' --warn-blocking 0 -e ""')
t.ok(status == 1 and err:find('--warn-blocking expects a whole number', 1, true),
	'--warn-blocking 0 is refused: ' .. err)
status, out, err = t.run(lem .. ' --warn-blocking 3600001 -e ""')
t.ok(status == 1 and err == "lem: --warn-blocking expects a whole number of milliseconds from 1 to 3600000, got '3600001'\n",
	'--warn-blocking 3600001 is refused, without the usage', err)
status, out, err = t.run(lem .. ' --warn-blocking 3600000 -e "print(1)"')
t.ok(status == 0 and out == '1\n', '--warn-blocking 3600000 is taken', err)
status, out, err = t.run('LEM_WARN_BLOCKING=x ' .. lem .. ' -e ""')
t.ok(status == 1 and err:find('LEM_WARN_BLOCKING expects', 1, true), 'so is LEM_WARN_BLOCKING=x')
status, out, err = t.run('LEM_WARN_BLOCKING= ' .. lem .. ' -e "print(1)"')
t.ok(status == 0 and out == '1\n' and err == '', 'an empty LEM_WARN_BLOCKING is no value', err)
status, out = t.run(lem .. ' --help')
t.ok(out:find('--warn-blocking MS', 1, true) and out:find('--debug', 1, true), '--help names both options')

-- ---- the dump ----
-- Four loops: 2 computes, 1, 3 and 4 wait for a message (and a coroutine of each loop
-- sleeps). Each says it is ready; after the dump they go on, and end once the test has
-- seen it and made the go file: loop 2 finds it and tells the others. The waiting loops
-- run no Lua until then, so that the dump finds each of them running nothing (loops that
-- woke to poll the file were caught running now and then on a slow build).
local script = t.file(dir, 'dump.lua', [[
local utils, loops = require 'lem.utils', require 'lem.loops'
local go, signal = arg[1], arg[2] == 'wait' and require 'lem.signal'
-- each line in one write: the loops share stdout, and a write of several pieces may
-- interleave with another loop's ("pid ready 3\n1234")
if loops.id == 1 then
	io.stdout:write('pid ' .. io.open('/proc/self/stat'):read('*l'):match('^%d+') .. '\n')
end
if signal and loops.id == 3 then
	utils.spawn(function() print('got ' .. signal.wait('QUIT')) end)
	utils.yield()   -- the waiter is in signal.wait before this loop says it is ready
end
io.stdout:write('ready ' .. loops.id .. '\n')
io.stdout:flush()
local s, f = utils.sleeper()
utils.spawn(function() s:sleep() end)
if loops.id == 2 then
	local t0, n = os.time(), 0   -- until the go file is there (a minute at most)
	while os.time() - t0 < 60 do n = n + 1 if n % 100000 == 0 then f = io.open(go) if f then f:close() break end end end   -- COMPUTE
	for _, id in ipairs { 1, 3, 4 } do loops.send(id, 'end') end
else
	loops.receive()
end
s:wakeup()
print('end ' .. loops.id)
]])
local function lineof(text)   -- the line of the dump script that holds text
	local n = 0
	for line in io.lines(script) do
		n = n + 1
		if line:find(text, 1, true) then return n end
	end
end
local function dump(args, sargs)
	local out, go = dir .. '/dump.out', dir .. '/go'
	os.remove(out)
	os.remove(go)
	os.execute(('(%s --loops 4 %s %s %s %s; echo "status $?") > %s 2>&1 &'):format(lem, args, script, go, sargs, out))
	local function output() return t.slurp(out) end
	t.eventually(function() return count(output(), 'ready') == 4 end, 30)
	local pid = output():match('pid (%d+)')
	sleep(0.2)
	if pid then os.execute('kill -QUIT ' .. pid) end
	-- every loop's figures (or the waiter's line) are out: the loops may end
	t.eventually(function()
		local o = output()
		return count(o, 'lem%[%d%]: dump: ') == 4 or o:find('got QUIT', 1, true)
	end, 15)
	t.file(dir, 'go', '')
	t.eventually(function() return output():find('status %d+') end, 30)
	if pid and not output():find('status %d+') then os.execute('kill -KILL ' .. pid) end
	return output()
end
out = dump('', '')
t.like(out, 'status 0', 'after SIGQUIT the process goes on and exits normally')
t.is(count(out, 'end %d'), 4, '... every loop runs to its end')
for k = 1, 4 do
	t.is(count(out, 'lem%[' .. k .. '%]: dump: [^\n]*runnable %d+'), 1, ('loop %d prints its figures once'):format(k))
end
t.like(out, 'lem%[2%]: runs at [^\n]*dump%.lua:' .. lineof('-- COMPUTE') .. '; its\nstack traceback:\n', 'the loop that computes shows where it runs')
t.is(count(out, 'runs nothing'), 3, 'the others run nothing')
t.is(count(out, 'parked in'), 0, 'without --debug, parked coroutines are not listed')
out = dump('--debug', '')
t.like(out, "lem%[1%]: parked in 'sleep'; its\nstack traceback:\n%s*%[C%]: in function 'sleep'\n%s*[^\n]*dump%.lua:" .. lineof('s:sleep() end') .. ":",
	'--debug: each parked coroutine with what it waits in and its traceback')
t.like(out, "lem%[4%]: parked in 'receive'", '... a receive too')
t.like(out, 'status 0', '... and the process goes on')
out = dump('', 'wait')
t.ok(out:find('got QUIT', 1, true) and not out:find('dump:', 1, true),
	'a coroutine waiting for QUIT gets it, and nothing is dumped')
t.like(out, 'status 0', '... and the process goes on')

t.done()
