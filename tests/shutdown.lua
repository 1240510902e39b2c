-- The shutdown: SIGTERM and SIGINT to a server with requests in flight (each is served,
-- new connections are refused, the process exits 143 or 130 long before the deadline),
-- handlers that outlive the deadline (the process ends at it, saying what was left),
-- utils.shutdown from one loop while the others receive, a second signal, timers, a loop
-- busy in Lua, and a shutdown while the loops start. Every path runs RUNS times in a row.
local t = require 'tap'
local io = require 'lem.io'
local utils = require 'lem.utils'
local lem = t.lem
local RUNS = tonumber(os.getenv('SHUTDOWN_RUNS')) or 20
local tsan = os.getenv('LEM_SANITIZER') == 'tsan'
local sanitized = (os.getenv('LEM_SANITIZER') or '') ~= ''

local dir = t.tmpdir()
local function file(name, text) return t.file(dir, name, text) end
local function sleep(s) utils.sleeper():sleep(s) end
-- The time now: utils.now() is the loop's, which a blocking t.run does not move.
local function now() sleep(0.001) return utils.now() end
local function read(path)
	local f = _G.io.open(path)
	if not f then return '' end
	local s = f:read('*a')
	f:close()
	return s
end
local function count(s, pattern) return select(2, s:gsub(pattern, '')) end
-- Polls until cond() or timeout seconds; returns cond()'s last value.
local function until_(cond, timeout)
	local t0 = utils.now()
	local v = cond()
	while not v and utils.now() - t0 < timeout do
		sleep(0.01)
		v = cond()
	end
	return v
end

-- ---- utils.shutdown: arguments ----
t.error(function() utils.shutdown(-1) end, "bad argument #1 to 'shutdown' %(seconds must be a number, 0 or more%)",
	'utils.shutdown(-1) is refused')
t.error(function() utils.shutdown(0/0) end, "bad argument #1 to 'shutdown'", 'utils.shutdown(NaN) is refused')
t.error(function() utils.shutdown('x') end, "bad argument #1 to 'shutdown'", 'utils.shutdown of a string is refused')

-- ---- a stop and the shutdown: the first one wins ----
-- (utils.exit inside coroutine.wrap returns: the code after it runs, and sees the stop)
local st, lout, lerr = t.run(lem .. [[ -e "local u = require 'lem.utils'
coroutine.wrap(function() u.exit(3) end)()
print(u.shutdown())"]])
t.ok(st == 3 and lout == 'false\n', 'utils.shutdown after utils.exit: false, and the exit status holds', lerr)
-- utils.exit or an uncaught error during the shutdown stops every loop, with its status
-- (loop 2 waits in a coroutine of its own: a wait for 'shutdown' keeps no loop running, so
-- one that began before loop 1's shutdown would end loop 2 with nothing else to do)
st, lout, lerr = t.run(lem .. [[ --loops 2 -e "local u, l = require 'lem.utils', require 'lem.loops'
if l.id == 1 then u.shutdown(30)
else u.spawn(function() require('lem.signal').wait('shutdown') u.exit(9) end) end
u.sleeper():sleep(30)"]])
t.ok(st == 9 and lerr == '', 'utils.exit(9) in the shutdown: every loop stops, status 9', lerr)
st, lout, lerr = t.run(lem .. [[ -e "local u = require 'lem.utils'
u.shutdown(30)
u.timer(0.01, function() error('in the shutdown', 0) end)
u.sleeper():sleep(30)"]])
t.ok(st == 1 and lerr:find('^lem: in the shutdown\n'), 'an uncaught error in the shutdown: status 1', lerr)

-- ---- utils.shutdown from loop 2 of 3, the others idle in receive ----
-- Loop 3 hears the shutdown and sends to loop 1: lem.loops works through the shutdown,
-- and receive says 'closed' once nothing can come. Exit 0: every loop ended in time.
local coordinated = file('coordinated.lua', [[
local utils, loops, signal = require 'lem.utils', require 'lem.loops', require 'lem.signal'
local p = newproxy(true)
getmetatable(p).__gc = function() io.stderr:write('fin ' .. loops.id .. '\n') end
keep = p
if loops.id == 2 then
	loops.receive() loops.receive()          -- 1 and 3 wait
	print('2 shutdown', utils.shutdown())
	print('2 again', utils.shutdown())
	return
end
utils.spawn(function()
	print(loops.id .. ' heard', signal.wait('shutdown'))
	print(loops.id .. ' heard again', signal.wait('shutdown'))   -- at once: it began
	if loops.id == 3 then print('3 send', loops.send(1, 'bye from 3')) end
end)
loops.send(2, 'ready')
local from, msg = loops.receive()
print(loops.id .. ' receive', from, msg)
if from then print(loops.id .. ' receive', loops.receive()) end
]])
local want = {
	'1 heard\tshutdown', '1 heard again\tshutdown', '1 receive\t3\tbye from 3', '1 receive\tnil\tclosed',
	'2 again\tfalse', '2 shutdown\ttrue',
	'3 heard\tshutdown', '3 heard again\tshutdown', '3 receive\tnil\tclosed', '3 send\ttrue',
	'status 0' }
local function sorted(s) return t.sorted(s, '|') end
local driver = file('coordinated.sh', ([[
i=0
while [ $i -lt %d ]; do
	timeout -s KILL 20 %s --loops 3 %s > %s/out 2> %s/err
	echo "status $?" >> %s/out
	echo "run $i $(tr '\n' '|' < %s/out) fins $(grep -c '^fin ' %s/err) err $(grep -v '^fin ' %s/err | head -1)"
	i=$((i+1))
done
]]):format(RUNS, lem, coordinated, dir, dir, dir, dir, dir, dir))
local _, out = t.run('sh ' .. driver)
local bad, runs = {}, 0
for line in out:gmatch('[^\n]+') do
	runs = runs + 1
	local got, fins, err = line:match('^run %d+ (.-) fins (%d+) err ?(.*)$')
	if not got or sorted(got) ~= table.concat(want, '|') or fins ~= '3' or err ~= '' then
		bad[#bad + 1] = line
	end
end
t.ok(runs == RUNS and #bad == 0, ('utils.shutdown from loop 2 while 1 and 3 receive: they hear it, ' ..
	'send, receive closed, exit 0 (%d runs)'):format(RUNS), table.concat(bad, '\n'))

-- ---- listeners in the shutdown ----
local listeners = file('listeners.lua', [[
local io, utils, signal = require 'lem.io', require 'lem.utils', require 'lem.signal'
local l = assert(io.tcp.listen('127.0.0.1', 0))
local port = l:port()
utils.spawn(function() print('accept', l:accept()) end)
local l2 = assert(io.tcp.listen('127.0.0.1', 0))
utils.spawn(function() print('autospawn', l2:autospawn(function() end)) end)
utils.yield()
utils.shutdown()
signal.wait('shutdown')
print('connect', io.tcp.connect('127.0.0.1', port))
local l3 = assert(io.tcp.listen('127.0.0.1', 0))
print('accept in the shutdown', l3:accept())
print('again', pcall(l3.accept, l3))
print('close', l:close())
local l4 = assert(io.tcp.listen('127.0.0.1', 0))
print('autospawn in the shutdown', l4:autospawn(function() end))
]])
local st, lout, lerr = t.run(lem .. ' ' .. listeners)
t.is(lout, table.concat({ 'autospawn\ttrue', 'accept\tnil\tclosed', 'connect\tnil\tconnection refused',
	'accept in the shutdown\tnil\tclosed', "again\tfalse\tbad argument #1 to '?' (closed listener)",
	'close\tnil\tclosed', 'autospawn in the shutdown\ttrue' }, '\n') .. '\n',
	'the shutdown closes listeners: accept gets nil, closed; autospawn returns true; connections are refused; ' ..
	'a listener made in the shutdown closes at its first accept or autospawn')
t.ok(st == 0 and lerr == '', '... and the process exits 0', lerr)

-- ---- utils.shutdown's deadline: loop 1 sleeps past it ----
local late = file('late.lua', [[
local utils, loops = require 'lem.utils', require 'lem.loops'
local p = newproxy(true)
getmetatable(p).__gc = function() io.stderr:write('fin ' .. loops.id .. '\n') end
keep = p
if loops.id == 1 then utils.sleeper():sleep(5) print('not reached') end
if loops.id == 2 then utils.sleeper():sleep(0.05) utils.shutdown(0.3) end
if loops.id == 3 then loops.receive() end
]])
local t0 = now()
st, lout, lerr = t.run(lem .. ' --loops 3 ' .. late)
local took = now() - t0
t.is(st, 124, "utils.shutdown's deadline passed: status 124")
t.ok(took > 0.3 and took < 1.5, ('... at the deadline (%.2f s)'):format(took))
t.is(lout, '', '... the sleep that outlived it never returned')
t.like(lerr, 'lem: shutdown deadline passed in loop 1 %(1 wait pending%)\n', '... which it names: loop 1, its sleep')
t.like(lerr, 'lem: shutdown deadline passed in loop 3 %(1 wait pending%)\n', '... and loop 3, its receive')
t.ok(not lerr:find('in loop 2'), '... not loop 2, which had ended')
t.is(count(lerr, 'fin %d'), 3, '... finalizers ran in every loop')

-- timers keep a loop in the shutdown until they are cancelled
local timers = file('timers.lua', [[
local utils, signal = require 'lem.utils', require 'lem.signal'
local cancel = ...
local tick
local function again() tick = utils.timer(0.05, again) end
again()
if cancel == 'yes' then
	utils.spawn(function() signal.wait('shutdown') tick:cancel() end)
end
utils.timer(0.1, function() utils.shutdown(0.5) end)
]])
t0 = now()
st, lout, lerr = t.run(lem .. ' ' .. timers .. ' yes')
took = now() - t0
t.ok(st == 0 and took < 0.4 and lerr == '', ('a timer cancelled when the shutdown begins: the loop ends, status 0 ' ..
	'(status %s, %.2f s)'):format(st, took), lerr)
t0 = now()
st, lout, lerr = t.run(lem .. ' ' .. timers .. ' no')
took = now() - t0
t.ok(st == 124 and took > 0.5, ('a timer that goes on keeps the loop until the deadline (status %s, %.2f s)'):format(st, took))
-- (the timer may have fired, its function queued, when the deadline stops the loop)
t.ok(lerr == 'lem: shutdown deadline passed in loop 1 (1 wait pending)\n' or
     lerr == 'lem: shutdown deadline passed in loop 1 (1 coroutine queued to run)\n', '... which counts it', lerr)

-- A loop whose coroutines take turns (utils.yield) at the deadline: each of them is told,
-- queued or running. One taken off the queue just as the stop came, and then not run,
-- was missing from the count. Loop 1 starts the shutdown once loop 2 says its ten are
-- there (a fixed delay from loop 1's start came, under load, before loop 2 had run its
-- script).
local turns = file('turns.lua', [[
local utils, loops = require 'lem.utils', require 'lem.loops'
if loops.id == 1 then
	loops.receive()
	utils.timer(0.05, function() utils.shutdown(0) end)
	utils.spawn(function() utils.sleeper():sleep(10) end)
else
	for _ = 1, 10 do utils.spawn(function() while true do utils.yield() end end) end
	loops.send(1, 'ready')
end
]])
local tbad = {}
for _ = 1, RUNS do
	st, lout, lerr = t.run(lem .. ' --loops 2 ' .. turns)
	local told = lerr:match('lem: shutdown deadline passed in loop 2 %((.-)%)\n')
	if st ~= 124 or (told ~= '10 coroutines queued to run' and
	                 told ~= 'running Lua code, 9 coroutines queued to run') then
		tbad[#tbad + 1] = ('status %s: %s'):format(st, lerr)
	end
end
t.ok(#tbad == 0, ('ten coroutines taking turns at the deadline: all ten counted (%d runs)'):format(RUNS),
	table.concat(tbad, '\n'))

-- a loop busy in Lua at the deadline is interrupted
if tsan then
	t.skip('a busy loop at the deadline', 'signals are deferred under ThreadSanitizer')
else
	local busy = file('busy.lua', [[
local utils, loops = require 'lem.utils', require 'lem.loops'
if loops.id == 1 then utils.shutdown(0.2) return end
if jit then while true do os.clock() end else while true do end end
]])
	t0 = now()
	st, lout, lerr = t.run(lem .. ' --loops 2 ' .. busy)
	took = now() - t0
	t.ok(st == 124 and took < 2, ('a loop running Lua code at the deadline is interrupted (status %s, %.2f s)'):format(st, took))
	t.like(lerr, 'lem: shutdown deadline passed in loop 2 %(running Lua code%)\n', '... and said to be running Lua code')
end

-- ---- SIGTERM, SIGINT: a server with requests in flight ----
-- Each handler reads a request, notes it in the ready file, sleeps `nap` and answers.
-- Each loop notes when it hears the shutdown: its listener is closed then.
local server = file('server.lua', [[
local io, utils, loops, signal = require 'lem.io', require 'lem.utils', require 'lem.loops', require 'lem.signal'
local port, ready, nap = ...
local function note(s) local f = _G.io.open(ready, 'a') f:write(s, '\n') f:close() end
local p = newproxy(true)
getmetatable(p).__gc = function() _G.io.stderr:write('fin ' .. loops.id .. '\n') end
keep = p
local l = assert(io.tcp.listen('127.0.0.1', tonumber(port)))
if loops.id == 1 then note('pid ' .. _G.io.open('/proc/self/stat'):read('*l'):match('^%d+')) end
note('listening')
utils.spawn(function() signal.wait('shutdown') note('heard') end)
print('autospawn', loops.id, l:autospawn(function(c)
	local line = c:read()
	note('got')
	utils.sleeper():sleep(tonumber(nap))
	c:write('done ', line, '\n')
	c:close()
end))
]])

local NCLIENTS = 50
-- One run: the server with --loops 2 and opts, NCLIENTS requests in flight, then sig.
-- Returns a table of what was seen.
local function serve(opts, sig, nap)
	local port, ready, status = t.free_port(), dir .. '/ready', dir .. '/status'
	os.remove(ready)
	os.remove(status)
	os.execute(('(timeout -s KILL 30 %s --loops 2 %s %s %d %s %s > %s/sout 2> %s/serr; echo $? > %s) &')
		:format(lem, opts, server, port, ready, nap, dir, dir, status))
	local r = { answers = 0, refused = false }
	local pid = until_(function()
		local s = read(ready)
		return count(s, 'listening') == 2 and s:match('pid (%d+)')
	end, 10)
	if not pid then r.why = 'the server did not start: ' .. read(dir .. '/serr') return r end
	local done = 0
	for i = 1, NCLIENTS do
		utils.spawn(function()
			local c = io.tcp.connect('127.0.0.1', port, 5)
			if c then
				c:write('req ', i, '\n')
				if c:read('*a', 10) == 'done req ' .. i .. '\n' then r.answers = r.answers + 1 end
				c:close()
			end
			done = done + 1
		end)
	end
	if not until_(function() return count(read(ready), 'got') == NCLIENTS end, 10) then
		r.why = 'requests not in flight: ' .. count(read(ready), 'got')
	end
	local t0 = utils.now()
	os.execute('kill -' .. sig .. ' ' .. pid)
	until_(function() return count(read(ready), 'heard') == 2 end, 10)
	local c, err = io.tcp.connect('127.0.0.1', port, 1)
	r.refused = not c and err
	if c then c:close() end
	r.status = tonumber(until_(function() return read(status):match('%d+') end, 20))
	r.took = utils.now() - t0
	until_(function() return done == NCLIENTS end, 5)
	r.err = read(dir .. '/serr')
	r.out = read(dir .. '/sout')
	return r
end

local function server_runs(name, opts, sig, nap, runs, check)
	local bad = {}
	for i = 1, runs do
		local r = serve(opts, sig, nap)
		local why = r.why or check(r)
		if why then bad[#bad + 1] = ('run %d: %s'):format(i, why) end
	end
	t.ok(#bad == 0, ('%s (%d runs)'):format(name, runs), table.concat(bad, '\n'))
end

local function graceful(status)
	return function(r)
		if r.status ~= status then return 'status ' .. tostring(r.status) .. ' ' .. r.err end
		if r.answers ~= NCLIENTS then return r.answers .. ' answers of ' .. NCLIENTS end
		if r.refused ~= 'connection refused' then return 'a new connection: ' .. tostring(r.refused) end
		if r.took > (sanitized and 4 or 2) then return ('took %.2f s'):format(r.took) end
		if count(r.err, 'fin %d') ~= 2 or r.err:find('deadline') then return 'stderr: ' .. r.err end
		if count(r.out, 'autospawn\t%d\ttrue') ~= 2 then return 'stdout: ' .. r.out end
	end
end
server_runs('SIGTERM, ' .. NCLIENTS .. ' requests in flight for 0.5 s: all answered, new connections refused, ' ..
	'autospawn returns true, exit 143 long before the deadline', '', 'TERM', 0.5, RUNS, graceful(143))
server_runs('SIGINT: the same, exit 130', '', 'INT', 0.5, 3, graceful(130))

server_runs('handlers sleeping past the deadline (--shutdown-timeout 0.5): the process ends at it, status 143, ' ..
	'naming what was left', '--shutdown-timeout 0.5', 'TERM', 5, RUNS, function(r)
	if r.status ~= 143 then return 'status ' .. tostring(r.status) end
	if r.answers ~= 0 then return r.answers .. ' answers' end
	if r.took < 0.4 or r.took > 2 then return ('took %.2f s'):format(r.took) end
	if count(r.err, 'lem: shutdown deadline passed in loop %d %(%d+ waits? pending%)\n') ~= 2 then
		return 'stderr: ' .. r.err
	end
	if count(r.err, 'fin %d') ~= 2 then return 'finalizers: ' .. r.err end
end)
server_runs('the same with --shutdown-timeout 1', '--shutdown-timeout 1', 'TERM', 5, 1, function(r)
	if r.status ~= 143 or r.took < 0.9 or r.took > 2.5 then return ('status %s, %.2f s'):format(r.status, r.took) end
end)

-- ---- a second SIGTERM or SIGINT stops at once ----
-- (the second is sent once lem has acted on the first, which it says in the heard file:
-- two sent at once may come as one)
local sleeper = file('sleeper.lua', [[
local utils, signal = require 'lem.utils', require 'lem.signal'
local flag, heard = ...
local p = newproxy(true)
getmetatable(p).__gc = function() io.stderr:write('fin\n') end
keep = p
utils.spawn(function() signal.wait('shutdown') io.open(heard, 'w'):close() end)
io.open(flag, 'w'):close()
utils.sleeper():sleep(10)
]])
for _, sigs in ipairs { 'TERM TERM', 'INT TERM', 'TERM INT' } do
	local second = sigs:match('%a+$')
	driver = file('second.sh', ([[
i=0
while [ $i -lt %d ]; do
	rm -f %s/flag %s/heard
	%s %s %s/flag %s/heard 2> %s/err &
	p=$!
	k=0; while [ ! -e %s/flag ] && [ $k -lt 500 ]; do sleep 0.01; k=$((k+1)); done
	s=$(date +%%s%%N)
	for sig in %s; do
		kill -$sig $p
		k=0; while [ ! -e %s/heard ] && [ $k -lt 500 ]; do sleep 0.01; k=$((k+1)); done
	done
	wait $p
	st=$?
	echo "run $i status $st ms $(( ($(date +%%s%%N) - s) / 1000000 )) err $(cat %s/err | tr '\n' '|')"
	i=$((i+1))
done
]]):format(RUNS, dir, dir, lem, sleeper, dir, dir, dir, dir, sigs, dir, dir))
	_, out = t.run('sh ' .. driver)
	bad, runs = {}, 0
	local killed = second == 'TERM' and 143 or 130
	for line in out:gmatch('[^\n]+') do
		runs = runs + 1
		local st, ms, err = line:match('status (%d+) ms (%d+) err (.*)$')
		if tonumber(st) ~= killed or tonumber(ms) > 2000 or err ~= '' then bad[#bad + 1] = line end
	end
	t.ok(runs == RUNS and #bad == 0, ('%s: the second one kills at once, no finalizer (%d runs)'):format(sigs, RUNS),
		table.concat(bad, '\n'))
end

-- ---- SIGTERM while the loops start ----
local starting = file('starting.lua', [[
local loops, utils = require 'lem.loops', require 'lem.utils'
local ready = ...
if loops.id == 1 then   -- its pid: a `timeout` in between would forward one signal only
	local f = io.open(ready, 'w')
	f:write(io.open('/proc/self/stat'):read('*l'):match('^%d+'), '\n')
	f:close()
end
local l = require('lem.io').tcp.listen('127.0.0.1', 0)
if l then l:autospawn(function(c) c:close() end) end
utils.sleeper():sleep(0.2)
]])
driver = file('starting.sh', ([[
i=0
while [ $i -lt %d ]; do
	rm -f %s/flag
	timeout -s KILL 20 %s --loops 32 %s %s/flag 2> %s/err &
	p=$!
	k=0; while [ ! -s %s/flag ] && [ $k -lt 2000 ]; do sleep 0.002; k=$((k+1)); done
	kill -TERM $(cat %s/flag)
	wait $p
	echo "run $i status $? err $(head -1 %s/err)"
	i=$((i+1))
done
]]):format(RUNS, dir, lem, starting, dir, dir, dir, dir, dir))
_, out = t.run('sh ' .. driver)
bad, runs = {}, 0
for line in out:gmatch('[^\n]+') do
	runs = runs + 1
	if not line:find('status 143 err $') then bad[#bad + 1] = line end
end
t.ok(runs == RUNS and #bad == 0, ('SIGTERM while 32 loops start and listen: each ends, status 143 (%d runs)'):format(RUNS),
	table.concat(bad, '\n'))

t.done()
