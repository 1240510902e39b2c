-- lem.utils: spawn, yield, now, exit, and their bad arguments.
local t = require 'tap'
local utils = require 'lem.utils'

-- spawn returns true and passes its arguments; the coroutine runs later, not at once
local got
t.is(utils.spawn(function(a, b, c) got = { a, b, c } end, 1, nil, 'x'), true, 'spawn returns true')
t.is(got, nil, 'spawned function has not run yet')
utils.yield()
t.same(got, { 1, nil, 'x' }, 'spawned function got its arguments, nil hole kept')

-- spawned coroutines run in FIFO order
local order = {}
for i = 1, 5 do utils.spawn(function() order[#order + 1] = i end) end
utils.yield()
t.same(order, { 1, 2, 3, 4, 5 }, 'spawned coroutines run in the order spawned')

-- yield lets every coroutine queued before it run first, then resumes
order = {}
utils.spawn(function() order[#order + 1] = 'a'; utils.yield(); order[#order + 1] = 'c' end)
utils.spawn(function() order[#order + 1] = 'b'; utils.yield(); order[#order + 1] = 'd' end)
order[#order + 1] = 'main'
utils.yield()
order[#order + 1] = 'main2'
utils.yield()
t.same(order, { 'main', 'a', 'b', 'main2', 'c', 'd' }, 'yield goes to the back of the queue')
t.is(select('#', utils.yield()), 0, 'yield returns nothing')

-- round robin among many coroutines
local counts, total = {}, 0
for i = 1, 50 do
	counts[i] = 0
	utils.spawn(function()
		for _ = 1, 100 do counts[i] = counts[i] + 1; total = total + 1; utils.yield() end
	end)
end
utils.yield()
local fair = true
for i = 1, 50 do if counts[i] ~= 1 then fair = false end end
t.ok(fair, 'after one yield of the spawner every coroutine ran exactly once')
while total < 5000 do utils.yield() end
t.is(total, 5000, 'all switches ran')

-- a plain coroutine.yield() in a lem coroutine acts as utils.yield()
order = {}
utils.spawn(function() order[#order + 1] = 'x' end)
coroutine.yield()
t.same(order, { 'x' }, 'coroutine.yield() at top level lets others run and resumes')

-- spawn from a spawned coroutine, deep chains
local depth = 0
local function chain(n) depth = n; if n < 1000 then utils.spawn(chain, n + 1) end end
utils.spawn(chain, 1)
for _ = 1, 1001 do utils.yield() end
t.is(depth, 1000, 'a chain of 1000 spawns ran')

-- many coroutines at once, reused after they end
local done = 0
for _ = 1, 20000 do utils.spawn(function() done = done + 1 end) end
utils.yield()
t.is(done, 20000, '20000 spawned coroutines ran')

-- now
local n1 = utils.now()
t.is(type(n1), 'number', 'now returns a number')
t.ok(math.abs(n1 - os.time()) < 5, 'now is wall-clock seconds')
utils.sleeper():sleep(0.02)
local n2 = utils.now()
t.ok(n2 - n1 >= 0.015 and n2 - n1 < 1, 'now advances across a sleep')

-- bad arguments: standard messages, raised in the caller
t.error(function() utils.spawn() end, "bad argument #1 to 'spawn' %(function expected, got no value%)", 'spawn()')
t.error(function() utils.spawn(42) end, "bad argument #1 to 'spawn' %(function expected, got number%)", 'spawn(42)')
t.error(function() utils.timer('x', print) end, "bad argument #1 to 'timer' %(number expected, got string%)", 'timer bad seconds')
t.error(function() utils.timer(1) end, "bad argument #2 to 'timer' %(function expected, got no value%)", 'timer no function')
t.error(function() utils.exit('abc') end, "bad argument #1 to 'exit' %(number expected, got string%)", 'exit bad status')

-- suspending from a coroutine lem does not run is an error, not a hang
local co = coroutine.create(function() utils.yield() end)
local ok, err = coroutine.resume(co)
t.ok(not ok, 'utils.yield inside coroutine.resume fails')
t.like(err, 'cannot suspend here', 'with a clear message')

-- a coroutine that ends with a hook set leaves no hook to the one that reuses it (in
-- PUC Lua each coroutine has its own hook; LuaJIT has one for all)
if jit then
	t.skip('a recycled coroutine carries no hook of its last body', "LuaJIT's hook is global")
else
	local hooked, seen = 0, 'unset'
	utils.spawn(function() debug.sethook(function() hooked = hooked + 1 end, 'c') end)
	utils.yield()
	utils.spawn(function() seen = debug.gethook() end)
	utils.yield()
	t.is(seen, nil, 'a recycled coroutine carries no hook of its last body')
end

-- C functions as coroutine bodies: they suspend, are woken, and end there (PUC Lua cannot
-- resume them: lem ends them with the values they are woken with)
do
	local s, after = utils.sleeper(), {}
	utils.spawn(s.sleep, s)
	utils.yield()
	t.is(s:wakeup('x'), true, 'a C body (sleeper.sleep) suspends and is woken')
	utils.yield()
	t.is(s:wakeup(), nil, 'and has ended: nobody sleeps on it any more')
	utils.spawn(utils.yield)
	utils.spawn(coroutine.yield)
	utils.spawn(function() after[#after + 1] = 'ran' end)
	utils.yield(); utils.yield(); utils.yield()
	t.same(after, { 'ran' }, 'C bodies that yield end without disturbing the runqueue')
	local io = require 'lem.io'
	local server = assert(io.tcp.listen('127.0.0.1', 0))
	local handled = 0
	utils.spawn(server.autospawn, server, function(c) handled = handled + 1; c:close() end)
	local c = assert(io.tcp.connect('127.0.0.1', server:port()))
	c:read()
	c:close()
	server:close()
	utils.yield(); utils.yield()
	t.is(handled, 1, 'a C body of lem.io (autospawn) served, and ended when its listener closed')
	t.same({ pcall(error, 'plain') }, { false, 'plain' }, 'pcall of a C function: no position added')
	local s2 = utils.sleeper()
	utils.spawn(function() s2:wakeup(1, 2) end)
	t.same({ pcall(s2.sleep, s2) }, { true, 1, 2 }, 'pcall of a C function that suspends returns its wake values')
end

-- thousands of values: spawn and wakeup work, or raise an error; never a crash
do
	local big, fine = {}, true
	for i = 1, 8000 do big[i] = i end
	for n = 7990, 8000 do
		pcall(function() return utils.spawn(function() end, unpack(big, 1, n)) end)
		local s = utils.sleeper()
		utils.spawn(function() s:sleep() end)
		utils.yield()
		local ok, err = pcall(function() return s:wakeup(unpack(big, 1, n)) end)
		if not ok and not tostring(err):find('too many') then fine = false end
		s:wakeup()
	end
	t.ok(fine, 'spawn and wakeup with up to 8000 values work or raise "too many"')
end
-- utils.onerror: a coroutine's failure runs its function instead of ending the program
do
	local got, co = {}, nil
	utils.spawn(function()
		co = coroutine.running()
		utils.onerror(function(msg, v)
			got.msg, got.v, got.co = msg, v, coroutine.running()
			utils.yield()               -- the function runs in a coroutine lem runs
			got.after = true
		end, 'the value')
		utils.yield()
		error('boom')
	end)
	for _ = 1, 4 do utils.yield() end
	t.like(got.msg, '^[^\n]*utils%.lua:%d+: boom\nstack traceback:\n.*in function <[^\n]*\nspawned at [^\n]*utils%.lua:%d+$',
		'onerror: the message, its traceback and where the coroutine was spawned')
	t.is(got.v, 'the value', 'onerror: the value given with the function')
	t.ok(got.co and got.co ~= co, 'onerror: the function runs in a coroutine of its own')
	t.ok(got.after, 'onerror: and may suspend; the program goes on')

	local n, last = 0, nil
	utils.spawn(function()
		utils.onerror(function() n = n + 1; last = 'first' end)
		utils.onerror(function(_, v) n = n + 1; last = v end, 2)
		error(setmetatable({}, { __tostring = function() return 'an object' end }))
	end)
	utils.spawn(function()
		utils.onerror(function(msg) n = n + 1; last = msg end)
		error({})
	end)
	utils.yield(); utils.yield(); utils.yield()
	t.is(n, 2, 'onerror: set twice, the last one runs, once')
	t.like(last, '^%(error object is a table value%)\n', 'onerror: an error value that is not a string is described')

	local caught, ran = nil, false
	utils.spawn(function()
		utils.onerror(function() ran = true end)
		caught = { pcall(error, 'inner', 0) }
		pcall(function() utils.onerror(function(msg) ran = msg end) end)
		error('outer', 0)
	end)
	utils.yield(); utils.yield()
	t.same(caught, { false, 'inner' }, 'onerror: an error caught by pcall stays with pcall')
	t.like(ran, '^outer\n', 'onerror set inside a pcall is the coroutine\'s')

	t.error(function() utils.onerror(42) end, "bad argument #1 to 'onerror' %(function expected, got number%)",
		'onerror: a bad argument')
	t.error(function() utils.onerror('f') end, "bad argument #1 to 'onerror' %(function expected, got string%)",
		'onerror: a string is no function')
end
-- in a program of its own: what ends it
local cases = {
	{ 'utils.onerror(function() print("ran") end); utils.onerror(); error("gone", 0)',
		'^lem: gone\n', 'onerror(): removed, the error ends the program' },
	{ 'utils.onerror(function() print("ran") end, 1); utils.onerror(nil); error("gone", 0)',
		'^lem: gone\n', 'onerror(nil) removes it too' },
	{ 'utils.spawn(function() utils.onerror(function() print("ran") end) end) utils.yield() utils.yield() ' ..
		'utils.spawn(function() error("later", 0) end)',
		'^lem: later\n', 'a coroutine that returned keeps no onerror for the next body it runs' },
	{ 'utils.onerror(function() error("again", 0) end); error("first", 0)',
		'^lem: again\n', 'an error in the onerror function ends the program' },
}
for _, c in ipairs(cases) do
	local status, out, err = t.run(t.lem .. " -e 'local utils = require \"lem.utils\" " .. c[1] .. "'")
	t.ok(status == 1 and out == '' and err:find(c[2]), c[3], err)
end
local status, out = t.run(t.lem .. [[ -e 'local utils = require "lem.utils"
local p = newproxy(true)
getmetatable(p).__gc = function() print(pcall(utils.onerror, print)) end
_G.keep = p']])
t.ok(status == 0 and out:find('^false\t[^\n]*no coroutine of lem runs here\n$'),
	'onerror where no coroutine of lem runs (a finalizer at exit): an error', out)
local _, printed = t.run(t.lem .. [[ -e "print(string.rep('a', 8192), 'b')"]])
t.is(printed:sub(-3), '\tb\n', 'print keeps its pieces in order past its buffer')

-- utils.exit where it cannot suspend (in a coroutine the script resumes itself) returns,
-- and the code after it runs until the coroutine lem resumed ends; with --loops 2 too,
-- the other loop waiting in receive. Each case runs RUNS times in a row, in one shell: the
-- interrupt that the stop sent to the exiting loop's own thread cut that code short in
-- some runs (a race: 5 to 70% of them, by load).
do
	local RUNS = 50
	local dir = t.tmpdir()
	local child = t.file(dir, 'exit.lua', [[
local u, loops = require 'lem.utils', require 'lem.loops'
if loops.id ~= 1 then return loops.receive() end
local co = coroutine.create(function() u.exit(3) end)
coroutine.resume(co)
for i = 1, tonumber((...)) do io.stderr:write('after ', i, '\n') end
]])
	for _, c in ipairs { { 1, 1 }, { 1, 2 }, { 2, 1 }, { 2, 2 } } do
		local loops, writes = c[1], c[2]
		local _, out = t.run(('i=0; while [ $i -lt %d ]; do ' ..
			'{ timeout -s KILL 10 %s --loops %d %s %d 2>&1 >/dev/null; echo "status $?"; } | tr "\\n" " "; ' ..
			'echo; i=$((i+1)); done'):format(RUNS, t.lem, loops, child, writes))
		local want = (writes == 2 and 'after 1 after 2 ' or 'after 1 ') .. 'status 3 '
		local runs, bad = 0, {}
		for line in out:gmatch('[^\n]+') do
			runs = runs + 1
			if line ~= want then bad[#bad + 1] = line end
		end
		t.ok(runs == RUNS and #bad == 0,
			('exit inside coroutine.resume returns, %d write%s after it run (--loops %d, %d runs)')
				:format(writes, writes == 1 and '' or 's', loops, RUNS),
			('%d of %d runs:\n%s'):format(#bad, runs, table.concat(bad, '\n')))
	end
end

t.done()
