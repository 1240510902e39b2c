-- Hooks, tracebacks, debug levels and error positions inside pcall and xpcall: the PUC
-- build runs a protected call in a helper coroutine, which must not show. Each snippet
-- runs under lem and under plain lua5.1; their outputs must be the same.
local t = require 'tap'
local utils = require 'lem.utils'

if rawget(_G, 'jit') then
	t.skip('pcall and the debug library', 'LuaJIT keeps its own pcall')
	t.done()
	return
end

-- Tracebacks from a main chunk end in "[C]: ?" under lua5.1 (its caller is C), not under
-- lem (a coroutine's main chunk has no caller): clean() drops that line.
local prelude = [[
local function clean(s) return (s:gsub('\n\t%[C%]: %?$', '')) end
local function show(...) local t = { select('#', ...), ... } for i = 2, t[1] + 1 do t[i] = tostring(t[i]) end print(table.concat(t, ' ', 2, t[1] + 1)) end
]]

local cases = {
	{ 'a count hook counts the instructions inside a pcall', [[
local n = 0
debug.sethook(function() n = n + 1 end, '', 1)
pcall(function() for i = 1, 100 do end end)
xpcall(function() for i = 1, 50 do end end, print)
debug.sethook()
print(n)
]] },
	{ 'call and return hooks inside pcall, xpcall and a pcall of a C function', [[
local ev = {}
debug.sethook(function(e) local i = debug.getinfo(2, 'nS') ev[#ev + 1] = e .. ':' .. tostring(i.name) .. ':' .. i.what end, 'cr')
pcall(print, 'p')
pcall(function() return 1 end)
xpcall(function() error('x') end, function(m) return m end)
pcall(pcall, error, 'e')
debug.sethook()
print(table.concat(ev, ' '))
]] },
	{ 'line hooks inside a pcall', [[
local lines = {}
local function f()
  local a = 1
  a = a + 1
  return a
end
debug.sethook(function(e, l) lines[#lines + 1] = l end, 'l')
pcall(f)
debug.sethook()
print(table.concat(lines, ' '))
]] },
	{ 'debug.gethook inside a pcall', [[
local function h() end
debug.sethook(h, 'c', 5)
local ok, f, m, c = pcall(debug.gethook)
local g, m2, c2 = select(2, pcall(function() return debug.gethook() end))
debug.sethook()
print(ok, f == h, m, c, g == h, m2, c2)
]] },
	{ 'a hook set inside a pcall stays set after it, and one cleared inside stays cleared', [[
local n = 0
local function h() n = n + 1 end
pcall(function() debug.sethook(h, 'c') end)
print(debug.gethook() == h)
debug.sethook()
debug.sethook(h, 'c')
pcall(function() debug.sethook() end)
print(debug.gethook())
pcall(function() error(debug.sethook(h, 'r')) end)
print(debug.gethook() == h, select(2, debug.gethook()))
debug.sethook()
]] },
	{ 'no stale hook in a later pcall', [[
local n = 0
pcall(function() debug.sethook(function() n = n + 1 end, 'c') end)
debug.sethook()
local before = n
for i = 1, 3 do pcall(function() return debug.gethook() end) end
print(before, n, debug.gethook(), select(2, pcall(debug.gethook)))
]] },
	{ 'a pcall inside a hook runs without hooks', [[
local n, inner = 0, 0
debug.sethook(function(e)
  n = n + 1
  if n == 1 then pcall(function() for i = 1, 10 do inner = inner + 1 end end) end
end, 'c')
local function f() end
f() f()
debug.sethook()
print(n, inner)
]] },
	{ 'debug.getinfo(2) and (3) inside a pcall', [[
local function f()
  for _, l in ipairs { 1, 2, 3 } do
    local i = debug.getinfo(l, 'nSl')
    print(l, i.what, i.name, i.namewhat, i.short_src == '[C]', i.currentline, i.linedefined)
  end
  print(debug.getinfo(2, 'f').func == pcall)
end
local function g() pcall(f) end
g()
xpcall(function() local i = debug.getinfo(2, 'nS') print(i.name, i.what) print(debug.getinfo(2, 'f').func == xpcall) end, print)
]] },
	{ 'debug.getlocal and setlocal reach the frames outside a pcall', [[
local function g()
  local outer = 'o'
  pcall(function()
    print(debug.getlocal(3, 1))
    print(debug.setlocal(3, 1, 'changed'))
  end)
  print(outer)
end
g()
print(pcall(debug.getlocal, 50, 1))
]] },
	{ 'debug.traceback inside pcall, xpcall and nested pcalls shows the frames outside', [[
local function inner() print(clean(debug.traceback('here'))) end
local function outer() pcall(inner) end
outer()
local function deep() pcall(function() pcall(function() print(clean(debug.traceback())) end) end) end
deep()
local function fails() error('boom') end
print(clean(select(2, xpcall(fails, debug.traceback))))
print(clean(select(2, xpcall(function() local x = nil; return x.y end, debug.traceback))))
print(clean(debug.traceback('lvl', 2)))
pcall(function() print(clean(debug.traceback('zero', 0))) end)
]] },
	{ 'error positions with levels inside a pcall', [[
local function lvl(n) error('x', n) end
show(pcall(lvl, 1))
show(pcall(lvl, 2))
show(pcall(lvl, 3))
local function via() lvl(3) end
show(pcall(via))
show(pcall(error, 'm', 2))
show(pcall(error, 'm'))
show(pcall(error))
show(pcall(function() error('top', 2) end))
print(type(select(2, pcall(function() error({}, 2) end))))
show(pcall(function() assert(false, 'asserted') end))
show(pcall(function() local t = nil; t.x = 1 end))
show(pcall(pcall))
show(pcall(function() pcall() end))
]] },
}

local tmp = os.tmpname()
local have = t.run('lua5.1 -v') == 0
for _, c in ipairs(cases) do
	if not have then
		t.skip(c[1], 'no lua5.1 to compare with')
	else
		local f = assert(io.open(tmp, 'wb'))
		f:write(prelude, c[2])
		f:close()
		local _, want = t.run('lua5.1 ' .. tmp)
		local _, got, err = t.run(t.lem .. ' ' .. tmp)
		t.ok(got == want and want ~= '', c[1], 'lua5.1:\n' .. want .. '\nlem:\n' .. got .. err)
	end
end
os.remove(tmp)

-- Where lem suspends inside a pcall, which plain lua5.1 cannot do.
local n = 0
local function h() n = n + 1 end
pcall(function() debug.sethook(h, 'c'); utils.yield() end)
t.ok(debug.gethook() == h, 'a hook set inside a pcall that suspends stays set after it')
debug.sethook()
debug.sethook(h, 'c')
local seen
pcall(function() utils.yield(); seen = debug.gethook() end)
debug.sethook()
t.ok(seen == h, "the caller's hook is there after a suspension inside a pcall")
n = 0
pcall(function() utils.yield() end)
utils.spawn(function() pcall(function() end) end)
utils.yield()
t.is(n, 0, 'no hook left behind in a recycled helper')
local tb
local function waits() pcall(function() utils.sleeper():sleep(0.001); tb = debug.traceback() end) end
waits()
t.like(tb, "in function 'pcall'.-in function 'waits'", 'a traceback after a suspension inside a pcall shows the frames outside: ' .. tostring(tb))
local function lvl2() error('after sleep', 2) end
local ok, e = pcall(function() utils.yield(); lvl2() end)
t.like(e, 'pcall%-debug%.lua:%d+: after sleep', 'error level 2 after a suspension: ' .. tostring(e))

t.done()
