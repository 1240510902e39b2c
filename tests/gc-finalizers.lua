-- Finalizers that the collector runs while the loop itself allocates (a coroutine made on
-- the loop's main state, a value a callback builds): lem.io's objects then give their
-- anchors back from inside a finalizer's frame on that state, which must not disturb the
-- loop's own slots.
local t = require 'tap'
local utils = require 'lem.utils'
local io = require 'lem.io'

local server = assert(io.tcp.listen('127.0.0.1', 0))
local port = server:port()
utils.spawn(server.autospawn, server, function(c) c:read('*a') c:close() end)

collectgarbage('setpause', 50)      -- collect often: finalizers run at many places
local made = 0
for _ = 1, 16 do
	for _ = 1, 25 do
		local c = io.tcp.connect('127.0.0.1', port)
		if c then
			c:read('*l', 0.001)         -- a wait: the stream takes its anchor slots
			made = made + 1
		end                             -- and is dropped unclosed
	end
	for i = 1, 200 do                   -- coroutines made on the loop's main state
		utils.spawn(function(a) return a end, i)
	end
	utils.yield()
end
collectgarbage('collect')
t.ok(made > 350, 'made and dropped ' .. made .. ' streams while the loop allocated')
local s = utils.sleeper()
utils.spawn(function() s:wakeup('alive') end)
t.is(s:sleep(1), 'alive', 'the loop still schedules after finalizers ran on its main state')
server:close()

-- A finalizer (__gc) that raises: the collector step that runs it raises its error where
-- the allocation that started the step was made. In a coroutine that is its error; lem's
-- own allocations outside any coroutine (a callback's values, a queued function's
-- coroutine, the report of an uncaught error, the runqueue's growth) are made in
-- protected calls, so that such an error is reported and the loop stops with status 1,
-- where the unprotected error aborted the process (status 134).
local LEM = os.getenv('LEM')
local dir = t.tmpdir()
-- (LuaJIT's compiled code is turned off: Debian's LuaJIT crashes when a finalizer errs
-- in a collector step that a trace exit starts, plain luajit as well.)
local MAKE = [[
if jit then jit.off() end
local n = 0
local function mk() local junk = {} for i = 1, 200 do junk[i] = {} end for i = 1, 20 do local p = newproxy(true) getmetatable(p).__gc = function() n = n + 1 error('finalizer ' .. n) end end end
]]
local uncaught = t.file(dir, 'uncaught.lua', MAKE .. [[
local utils = require 'lem.utils'
pcall(mk)
for round = 1, 200 do
	for i = 1, 200 do utils.spawn(function() utils.sleeper():sleep(0.0001) end) end
	pcall(mk)
	utils.sleeper():sleep(0.001)
end
print('never')
]])
local caught = t.file(dir, 'caught.lua', MAKE .. [[
local utils = require 'lem.utils'
local io = require 'lem.io'
local stop, wakes = false, 0
local function guard(f) return function() while not stop do pcall(f) end end end
utils.spawn(guard(function() mk() utils.sleeper():sleep(0.0005) wakes = wakes + 1 end))
utils.spawn(guard(function() for i = 1, 20 do utils.spawn(function() pcall(mk) end) end utils.yield() end))
utils.spawn(guard(function() utils.timer(0.0002, function() pcall(mk) end) utils.sleeper():sleep(0.0003) end))
local l = assert(io.tcp.listen('127.0.0.1', 0))
utils.spawn(function() l:autospawn(function(c)
	while true do
		local ok, d = pcall(c.read, c, '*l')
		if ok and not d then break end
		pcall(c.write, c, 'ok\n')
	end
	c:close()
end) end)
utils.spawn(guard(function()
	local c = io.tcp.connect('127.0.0.1', l:port())
	if c then for i = 1, 10 do c:write('x\n') c:read('*l') end c:close() end
end))
utils.timer(1, function() stop = true print('finalizers ' .. n .. ' wakes ' .. wakes) utils.exit(0) end)
]])
local statuses, outs, during = {}, {}, 0
for i = 1, 5 do
	local st, out, err = t.run(LEM .. ' ' .. uncaught)
	statuses[#statuses + 1] = st
	if st ~= 1 or not err:find('^lem: [^\n]*finalizer %d+') or out:find('never') then
		outs[#outs + 1] = err
	end
	if err:find('^lem: [^\n]*finalizer %d+ %(raised while [%w ]+%)\n') then
		during = during + 1
	end
end
t.is(#outs, 0, 'an erring finalizer ends lem with status 1 and its message, 5 runs: '
	.. table.concat(statuses, ' '), outs[1])
-- Under LuaJIT the collector goes on with the next finalizer while lem makes a coroutine
-- or reports the first error (every run); PUC Lua's waits for memory to double after an
-- error in one, and its first error is a coroutine's.
if jit then
	t.is(during, 5, "raised while lem made a coroutine or reported an error: 'lem: <message> "
		.. "(raised while ...)', status 1")
end
statuses, outs = {}, {}
for i = 1, 5 do
	local st, out, err = t.run(LEM .. ' ' .. caught)
	statuses[#statuses + 1] = st
	local n, wakes = out:match('finalizers (%d+) wakes (%d+)')
	if st ~= 0 or not n or tonumber(n) < 1 or tonumber(wakes) < 1 then
		outs[#outs + 1] = out .. err
	end
end
t.is(#outs, 0, 'erring finalizers caught where they raise: timers, sleeps, spawns and '
	.. 'streams go on, 5 runs of 1 s: ' .. table.concat(statuses, ' '), outs[1])
t.done()
