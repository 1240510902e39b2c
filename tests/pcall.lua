-- pcall and xpcall around calls that suspend, in both builds.
local t = require 'tap'
local utils = require 'lem.utils'
local jit = rawget(_G, 'jit')

t.same({ pcall(function(a, b) return a + b, 'x' end, 1, 2) }, { true, 3, 'x' }, 'pcall returns the results')
t.same({ pcall(function() utils.yield(); return 'after yield' end) }, { true, 'after yield' }, 'pcall around a yield')
t.same({ pcall(function() return utils.sleeper():sleep(0.01) end) }, { true, nil, 'timeout' }, 'pcall around a timed sleep')

local s = utils.sleeper()
utils.spawn(function() s:wakeup('a', 'b') end)
t.same({ pcall(s.sleep, s) }, { true, 'a', 'b' }, 'pcall(s.sleep, s) gets the wakeup values')

-- errors come back unchanged
local obj = setmetatable({}, { __tostring = function() return 'object' end })
local ok, e = pcall(function() utils.yield(); error(obj) end)
t.ok(not ok and e == obj, 'an error value that is a table passes through unchanged, after a yield')
ok, e = pcall(error, 'plain', 0)
t.same({ ok, e }, { false, 'plain' }, 'error string without position')
ok, e = pcall(function() local x = nil; return x.y end)
t.ok(not ok and e:find('attempt to index'), 'runtime errors are caught: ' .. tostring(e))
t.same({ pcall(nil) }, { false, 'attempt to call a nil value' }, 'pcall(nil)')
t.error(function() pcall() end, "bad argument #1 to 'pcall' %(value expected%)", 'pcall() with no argument')

-- nested pcalls, suspending at every level
local trace = {}
local r = { pcall(function()
	trace[#trace + 1] = 1
	utils.yield()
	local ok2, v = pcall(function()
		utils.sleeper():sleep(0.005)
		trace[#trace + 1] = 2
		local ok3, err3 = pcall(function() utils.yield(); error('deep', 0) end)
		trace[#trace + 1] = ok3 and 'bad' or err3
		return 'inner'
	end)
	trace[#trace + 1] = v
	return ok2
end) }
t.same(r, { true, true }, 'nested pcalls return')
t.same(trace, { 1, 2, 'deep', 'inner' }, 'and ran in order across suspensions')

-- other coroutines run while one is suspended inside pcall
local other = 0
utils.spawn(function() for _ = 1, 3 do other = other + 1; utils.yield() end end)
pcall(function() for _ = 1, 5 do utils.yield() end end)
t.is(other, 3, 'others run while a pcall body yields')

-- xpcall: the handler gets the error value and sees the failing stack
local function fails() utils.yield(); error('xp boom') end
local okx, tb = xpcall(fails, debug.traceback)
t.ok(not okx, 'xpcall returns false on error')
t.like(tb, 'xp boom', 'handler result is returned')
t.like(tb, "in function 'error'.-pcall%.lua:%d+: in function", 'debug.traceback as handler sees the stack where the error was')
t.same({ xpcall(function() return 1, 2 end, print) }, { true, 1, 2 }, 'xpcall success returns results')
local okh, eh = xpcall(function() error('x') end, function() error('again') end)
t.ok(not okh, 'a failing handler still returns false')
t.ok(eh ~= nil, 'with an error value: ' .. tostring(eh))
if not jit then
	t.is(eh, 'error in error handling', "PUC: a failing handler gives 'error in error handling'")
	t.error(function() xpcall(print) end, "bad argument #2 to 'xpcall' %(value expected%)", 'xpcall without a handler')
end

-- a plain coroutine.yield inside pcall behaves like utils.yield
local seen = false
utils.spawn(function() seen = true end)
t.same({ pcall(function() coroutine.yield(); return 'y' end) }, { true, 'y' }, 'coroutine.yield inside pcall')
t.ok(seen, '... and let others run')

-- user coroutines still work inside lem, with pcall inside them
local gen = coroutine.wrap(function()
	for i = 1, 3 do
		local okp = pcall(function() coroutine.yield(i) end)
		if not okp then return 'failed' end
	end
	return 'end'
end)
t.same({ gen(), gen(), gen(), gen() }, { 1, 2, 3, 'end' }, 'coroutine.yield through pcall inside a user coroutine')

-- suspending inside a user coroutine (even within pcall) is an error, not a hang
local co = coroutine.wrap(function() return pcall(utils.yield) end)
local okc, ec = co()
t.ok(not okc and tostring(ec):find('cannot suspend here'), 'lem suspension inside a user coroutine fails cleanly')

-- where the VM cannot yield (a C function calling back into Lua) the error is catchable
-- (utils.md quotes the message of each build)
local across = jit and 'attempt to yield across C%-call boundary' or 'attempt to yield across metamethod/C%-call boundary'
local okm, em = pcall(table.sort, { 3, 1, 2 }, function(a, b) utils.yield(); return a < b end)
t.ok(not okm and tostring(em):find(across), 'yield inside table.sort comparator: ' .. tostring(em))
local okg, eg = pcall(string.gsub, 'ab', '%w', function() utils.sleeper():sleep(0.01) end)
t.ok(not okg and tostring(eg):find(across), 'a sleep inside the function given to gsub: ' .. tostring(eg))
-- a metamethod and a for iterator: PUC Lua cannot yield there, LuaJIT can
local indexed = setmetatable({}, { __index = function() utils.yield() return 'yielded' end })
local oki, ei = pcall(function() return indexed.x end)
local okf, ef = pcall(function() for _ in function() utils.yield() end do end return 'yielded' end)
if jit then
	t.same({ oki, ei, okf, ef }, { true, 'yielded', true, 'yielded' }, 'LuaJIT: a yield in __index and in a for iterator')
else
	t.ok(not oki and tostring(ei):find(across) and not okf and tostring(ef):find(across),
		'PUC: a yield in __index or in a for iterator raises', tostring(ei) .. ' / ' .. tostring(ef))
end
-- and the loop still works afterwards
t.same({ pcall(function() utils.yield(); return 'fine' end) }, { true, 'fine' }, 'the loop goes on after that')

-- deep nesting is an error, never a crash
local function nest(n) if n == 0 then return 'bottom' end local _, v = pcall(nest, n - 1) return v end
local okd, vd = pcall(nest, 20000)
t.ok(okd and (vd == 'bottom' or tostring(vd):find('overflow')), 'pcall nested 20000 deep returns: ' .. tostring(vd))

-- a pcall's helper coroutine, reused as a coroutine of its own that pcalls in turn, does
-- not pass on a deeper C call level each time: 500 generations of coroutines that pcall,
-- start the next and stay suspended
local gens, parked, last = 0, {}, nil
local function generation()
	local ok, err = pcall(function() end)
	if not ok then last = err return end
	gens = gens + 1
	if gens < 500 then utils.spawn(generation) end
	local s = utils.sleeper()
	parked[gens] = s
	s:sleep()
end
utils.spawn(generation)
local t0 = utils.now()
while gens < 500 and not last and utils.now() - t0 < 5 do utils.sleeper():sleep(0.01) end
t.is(gens, 500, '500 generations of pcalls from reused helpers', last)
for _, s in pairs(parked) do s:wakeup() end

-- finalizers that run at exit may pcall C functions
local st, out = t.run(t.lem .. [[ -e 'local p = newproxy(true) getmetatable(p).__gc = function() print(pcall(print, "in gc")) end keep = p']])
t.is(out, 'in gc\ntrue\n', 'pcall of a C function inside a finalizer at exit')

-- out of memory while a pcall makes its helper coroutine is an error of the caller's (here
-- uncaught: the process says so and exits 1), not an abort. failalloc
-- (tests/lib/failalloc.c) makes allocations above a size fail; LuaJIT allocates on its
-- own, and sanitizers replace the allocator.
local shim = (os.getenv('LEM') or ''):match('^(.*)/[^/]*$')
if jit or (os.getenv('LEM_SANITIZER') or '') ~= '' then
	t.skip('out of memory in pcall: an error, no abort', 'allocations do not go through malloc here')
else
	local st2, out2, err2 = t.run('LD_PRELOAD=' .. shim .. '/modules/failalloc.so ' .. t.lem ..
		[[ -e "local fa = require 'failalloc' fa.above(256) pcall(pcall, print) fa.above(nil) print('went on')"]])
	t.ok(st2 == 1 and err2:find('not enough memory') and out2 == '',
		'out of memory in pcall: an error, no abort', 'status ' .. tostring(st2) .. ': ' .. err2)
end

t.done()
