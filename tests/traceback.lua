-- The traceback of an uncaught error: the same frames as the plain interpreter of the
-- same VM shows (lua5.1 for the PUC build, luajit for the LuaJIT build) for the same
-- script; and require's errors in a module's main chunk.
local t = require 'tap'

local jit = rawget(_G, 'jit') ~= nil
local plain = jit and 'luajit' or 'lua5.1'
local dir = t.tmpdir()

-- Each script runs from dir, as `<interpreter> <name>.lua`, so that the paths in the
-- output are the same. lem's report starts with "lem:" where plain's starts with its name,
-- and plain's main chunk has a C caller (its last line: "[C]: ?" or "[C]: at 0x..."), lem's
-- none.
local function clean(s, name)
	s = s:gsub('^' .. name:gsub('%p', '%%%0') .. ':', 'lem:')
	return (s:gsub('\n\t%[C%]: %?\n?$', '\n'):gsub('\n\t%[C%]: at 0x%x+\n?$', '\n'))
end

t.file(dir, 'boom.lua', [[
local x = 1
local function boom() error('in a module') end
boom()
return x
]])
t.file(dir, 'bad.lua', [[
local t = nil
return t.field
]])

local cases = {
	{ 'a runtime error three calls deep', [[
local function f() local x = nil; return x.y end
local function g() f() end
g()
]] },
	{ 'error() in a function', [[
local function f() error('plain') end
f()
]] },
	{ 'an error in a table.sort comparator shows the comparator and the caller', [[
local function cmp(a, b) error('in cmp') end
local function sorter() table.sort({ 3, 2, 1 }, cmp) end
sorter()
]] },
	{ 'an error in string.gsub callback', [[
local function each(s) return s .. nil end
local function run() return (('abc'):gsub('.', each)) end
run()
]] },
	{ 'an error in a required module shows its lines and the caller', [[
package.path = './?.lua;' .. package.path
local function load() return require 'boom' end
load()
]] },
	{ 'a runtime error in a required module', [[
package.path = './?.lua;' .. package.path
require 'bad'
]] },
	{ 'an error after a pcall that failed', [[
local function f() error('inner') end
local ok = pcall(f)
local function g() error('outer ' .. tostring(ok)) end
g()
]] },
	{ 'an error in an xpcall handler is reported as xpcall does', [[
local function h(m) return 'handled: ' .. m end
local function f() error('x', 0) end
local ok, m = xpcall(f, h)
error(m, 0)
]] },
	{ 'debug.traceback inside pcall and xpcall bodies shows the frames outside', [[
local function inner() print(debug.traceback('here')) end
local function outer() pcall(inner) end
outer()
print(select(2, xpcall(function() error('x') end, debug.traceback)))
print(pcall(debug.traceback))
local function deep() pcall(function() pcall(function() print(debug.traceback()) end) end) end
deep()
local function f() local ok, tb = pcall(debug.traceback, 'msg', 1) print(tb) end
f()
]] },
	{ 'an error in a comparator inside a pcall body', [[
local function cmp() error('cmp in pcall') end
local function run() table.sort({ 2, 1 }, cmp) end
print(select(2, xpcall(run, debug.traceback)))
local function body() local ok, e = pcall(run) error(e, 0) end
body()
]] },
}

local have = t.run(plain .. ' -v') == 0
for i, c in ipairs(cases) do
	if not have then
		t.skip(c[1], 'no ' .. plain .. ' to compare with')
	else
		local name = 'case' .. i .. '.lua'
		t.file(dir, name, c[2])
		local cd = 'cd ' .. dir .. ' && '
		local _, pout, perr = t.run(cd .. plain .. ' ' .. name)
		local st, out, err = t.run(cd .. t.lem .. ' ' .. name)
		-- in printed tracebacks, every main chunk's caller goes
		local want = pout:gsub('\n\t%[C%]: %?\n', '\n'):gsub('\n\t%[C%]: at 0x%x+\n', '\n') ..
		             clean(perr, plain)
		local got = out .. err
		t.ok(got == want and perr ~= '' == (st == 1), c[1],
		     plain .. ':\n' .. pout .. perr .. '\nlem (status ' .. tostring(st) .. '):\n' .. out .. err)
	end
end

-- A module whose main chunk suspends: lem-only.
t.file(dir, 'waits.lua', [[
local utils = require 'lem.utils'
utils.yield()
return {}
]])
package.path = dir .. '/?.lua;' .. package.path
local ok, e = pcall(require, 'waits')
t.ok(not ok, 'a module that suspends in its main chunk fails to load')
t.like(e, '^' .. dir:gsub('%p', '%%%0') .. "/waits%.lua:2: cannot suspend in a module's main chunk: require runs it from C",
       'the error says where and why')
t.is(package.loaded.waits, nil, 'and leaves nothing in package.loaded')
ok, e = pcall(require, 'waits')
t.like(e, 'waits%.lua:2: cannot suspend', 'a second require tries again (no "loop or previous error")')
ok, e = pcall(require, 'boom')
t.ok(not ok and e:find('in a module', 1, true), 'a module that raises: ' .. tostring(e))
t.is(package.loaded.boom, nil, 'leaves nothing in package.loaded either')
t.is(require('tap'), t, 'require returns a loaded module')
t.is(require('string'), string, 'and the standard ones')
t.file(dir, 'noval.lua', 'x_loaded = (x_loaded or 0) + 1\n')
t.is(require('noval'), true, 'a chunk that returns nothing: true')
require 'noval'
t.is(x_loaded, 1, 'loaded once')
t.file(dir, 'selfreq.lua', 'return require "selfreq"\n')
ok, e = pcall(require, 'selfreq')
t.like(e, "loop or previous error loading module 'selfreq'", 'a module requiring itself: ' .. tostring(e))
t.like(select(2, pcall(require, 'no.such.module')), "module 'no.such.module' not found:", 'a missing module')

-- Where plain Lua prints no traceback, lem does: an error value that is not a string.
local st, out, err = t.run(t.lem .. [[ -e "local function f() error({}) end f()"]])
t.like(err, "^lem: %(error object is a table value%)\nstack traceback:\n\t%[C%]: in function 'error'\n\t%(command line%):1: in function 'f'",
       'a table as error: its type and the traceback: ' .. err)
st, out, err = t.run(t.lem .. [[ -e "error(setmetatable({}, { __tostring = function() return 'described' end }))"]])
t.like(err, "^lem: described\nstack traceback:\n\t%[C%]: in function 'error'", 'a value with __tostring: ' .. err)

st, out, err = t.run('cd ' .. dir .. ' && ' .. t.lem .. [[ -e "package.path = './?.lua;' .. package.path; local function load() require 'waits' end load()"]])
t.is(st, 1, 'uncaught: status 1')
t.like(err, "^lem: %./waits%.lua:2: cannot suspend in a module's main chunk.-\nstack traceback:\n.-\t%./waits%.lua:2: in main chunk\n\t%[C%]: in function 'require'\n\t%(command line%):1: in function 'load'",
       'uncaught: the traceback shows the module and its caller: ' .. err)

-- Spawned coroutines and timers: lem's report against plain Lua running the same function
-- in a coroutine under xpcall with a traceback handler (harness.lua, whose frames go),
-- and the line that says where the coroutine was spawned.
t.file(dir, 'harness.lua', [[
local function spawn(f, ...)
	local args, n = { ... }, select('#', ...)
	local co = coroutine.create(function()
		xpcall(function() select(1, f)(unpack(args, 1, n)) end, function(m)   -- f: no name
			io.stderr:write('lem: ', debug.traceback(m, 2), '\n')
			os.exit(1)
		end)
	end)
	assert(coroutine.resume(co))
end
return spawn, function(_, f) spawn(f) end, function() end, function() end
]])
local prelude = {
	lem = "local u = require 'lem.utils' local spawn, timer, sleep, yield = u.spawn, u.timer, function() u.sleeper():sleep(0.001) end, u.yield\n",
	plain = "local spawn, timer, sleep, yield = dofile('harness.lua')\n",
}
local function harnessless(s)
	return (s:gsub('\n\tharness%.lua:[^\n]*', ''):gsub("\n\t%[C%]: in function 'xpcall'", ''))
end

local spawned = {
	{ 'an error in a spawned function, calls deep', [[
local function deep() error('deep down') end
local function work(n) deep() end
spawn(work, 1) -- spawned
]] },
	{ 'a runtime error in a spawned function with arguments', [[
local function work(a, b) return a.x + b end
spawn(work, nil, 2) -- spawned
]] },
	{ 'nested spawns: the innermost site', [[
local function inner() local t = {} return t.a.b end
local function outer() spawn(inner) end -- spawned
spawn(outer)
]] },
	{ 'an error in a timer', [[
local function later() error('too late') end
timer(0.001, later) -- spawned
]] },
	{ 'a sort comparator in a spawned function', [[
local function work() table.sort({ 3, 1, 2 }, function(a, b) return a.x < b end) end
spawn(work) -- spawned
]] },
	{ 'an error after a suspension', [[
local function fails() error('after sleeping') end
local function work() sleep() fails() end
spawn(work) -- spawned
]] },
	{ 'an error after a yield', [[
local function work() yield() local x = nil; x() end
spawn(work) -- spawned
]] },
	{ 'an error after a failed pcall in a spawned function', [[
local function work() pcall(error, 'caught') error('uncaught') end
spawn(work) -- spawned
]] },
}
for i, c in ipairs(spawned) do
	if not have then
		t.skip(c[1], 'no ' .. plain .. ' to compare with')
	else
		local line = 1
		for l in c[2]:gmatch('[^\n]*\n') do
			line = line + 1
			if l:find('-- spawned', 1, true) then break end
		end
		local name = 'spawn' .. i .. '.lua'
		local cd = 'cd ' .. dir .. ' && '
		t.file(dir, name, prelude.plain .. c[2])
		local _, _, perr = t.run(cd .. plain .. ' ' .. name)
		t.file(dir, name, prelude.lem .. c[2])
		local st, _, err = t.run(cd .. t.lem .. ' ' .. name)
		local want = harnessless(perr) .. 'spawned at ' .. name .. ':' .. line .. '\n'
		t.ok(st == 1 and err == want, c[1], 'want:\n' .. want .. '\nlem (status ' .. tostring(st) .. '):\n' .. err)
	end
end

t.file(dir, 'chain.lua', [[
local utils = require 'lem.utils'
local function inner() error('in inner') end
local function middle() utils.sleeper():sleep(0.001) utils.spawn(inner) end
local function outer() utils.timer(0.001, middle) end
utils.spawn(outer)
]])
st, out, err = t.run('cd ' .. dir .. ' && ' .. t.lem .. ' chain.lua')
t.like(err, "^lem: chain%.lua:2: in inner\nstack traceback:\n.-\nspawned at chain%.lua:3\n$",
       'by default, only the nearest site: ' .. err)
st, out, err = t.run('cd ' .. dir .. ' && ' .. t.lem .. ' --debug chain.lua')
t.is(err, [[
lem: chain.lua:2: in inner
stack traceback:
	[C]: in function 'error'
	chain.lua:2: in function <chain.lua:2>
spawned at chain.lua:3
stack traceback:
	chain.lua:3: in function <chain.lua:3>
spawned at chain.lua:4
stack traceback:
	chain.lua:4: in function <chain.lua:4>
spawned at chain.lua:5
stack traceback:
	chain.lua:5: in main chunk
]], '--debug: each site with its traceback, up the chain (a timer, a suspension between)')
st, out, err = t.run(t.lem .. [[ -e "require('lem.utils').spawn(function() error('lvl2', 2) end)"]])
t.like(err, '^lem: lvl2\n', 'error(m, 2) in a spawned function: no position, its caller is lem: ' .. err)
st, out, err = t.run(t.lem .. [[ -e "local u = require('lem.utils') u.spawn(u.sleeper().sleep, 42)"]])
t.like(err, "^lem: bad argument #1 to '%?' %(sleeper expected, got number%)\nstack traceback:\n\t%[C%]: [^\n]*\nspawned at %(command line%):1\n$",
       'a C function spawned: ' .. err)

st, out, err = t.run(t.lem .. [[ -e "local u = require('lem.utils')
local function cmp(a, b) u.yield() end
table.sort({ 1, 2, 3 }, cmp)"]])
t.like(err, "^lem: %(command line%):2: cannot suspend across a C function: a table.sort comparator",
       'suspending in a sort comparator says where and why: ' .. err)

for _, where in ipairs { 'r(1)', "require('lem.utils').spawn(r, 1)" } do
	st, out, err = t.run(t.lem .. ' -e "local function r(n) return 1 + r(n + 1) end ' .. where .. '"')
	-- LuaJIT has not always room left to call the handler that takes the traceback
	local ok = err:find("^lem: %(command line%):1: stack overflow\nstack traceback:\n\t%(command line%):1: in function 'r'\n") or
	           jit and err:find('^lem: error in error handling %(the stack was full, most likely: a runaway recursion%)\n')
	t.ok(st == 1 and ok, 'a stack overflow is reported: ' .. where .. ': ' .. err:sub(1, 200))
end

-- An error while handling a message from another loop names that loop.
t.file(dir, 'loops.lua', [[
local loops = require 'lem.loops'
if loops.id == 1 then loops.send(2, 'job') return end
local from, job = loops.receive()
error('cannot do ' .. job)
]])
st, out, err = t.run('cd ' .. dir .. ' && ' .. t.lem .. ' --loops 2 loops.lua')
t.like(err, '^lem%[2%]: loops%.lua:4: cannot do job %(handling a message from loop 1%)\nstack traceback:\n',
       'an error after receive names the sender: ' .. err)
t.file(dir, 'loops2.lua', [[
local loops, utils = require 'lem.loops', require 'lem.utils'
if loops.id == 1 then loops.send(2, 'job') return end
local from, job = loops.receive()
utils.yield()
error('later')
]])
st, out, err = t.run('cd ' .. dir .. ' && ' .. t.lem .. ' --loops 2 loops2.lua')
t.like(err, '^lem%[2%]: loops2%.lua:5: later\n', 'not once the coroutine has suspended since: ' .. err)

t.done()
