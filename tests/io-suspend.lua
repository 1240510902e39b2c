-- lem.io's suspensions: a read, write, accept, autospawn, listen or connect that cannot
-- suspend raises and leaves its object usable (nothing half-registered, no descriptor or
-- anchor left behind); a caller resumed by hand leaves its object free; many waits do
-- not grow lem's anchors.
local t = require 'tap'
local utils = require 'lem.utils'
local io = require 'lem.io'

local pair = t.tcp_pair
local puc = not rawget(_G, 'jit')
local function pack(...) return { n = select('#', ...), ... } end

-- Whether obj's wait is free: a try-once call answers 'timeout', not 'busy'.
local function free_read(s) return select(2, s:read('*l', 0)) == 'timeout' end
local function free_accept(l) return select(2, l:accept(0)) == 'timeout' end

-- Runs f where lem cannot suspend, inside coroutine.wrap; returns its error.
local function wrapped(f)
	local ok, err = pcall(coroutine.wrap(f))
	return not ok and tostring(err) or nil
end

-- Lets the loop run a while: lookups finish, spawned coroutines run.
local function settle()
	for _ = 1, 5 do utils.sleeper():sleep(0.01) end
end

local function collect() collectgarbage() collectgarbage() end

-- ---- read ----
local a, b = pair()
t.like(wrapped(function() return b:read() end), 'cannot suspend here', 'read inside coroutine.wrap raises')
t.ok(free_read(b), '... the stream is not busy afterwards')
local got
utils.spawn(function() got = pack(b:read()) end)
utils.yield()
a:write('one\n')
settle()
t.same(got, { n = 1, 'one' }, '... and a read from a coroutine lem runs waits and works')

-- a read inside table.sort's comparator: Lua cannot yield across that C call
local sorted = pcall(table.sort, { 1, 2, 3 }, function(x, y)
	b:read()
	return x < y
end)
if puc then
	t.ok(not sorted, "a read inside table.sort's comparator raises (PUC)")
else
	t.ok(true, "a read inside table.sort's comparator (" .. (sorted and 'works' or 'raises') .. ' in LuaJIT)')
end
t.ok(free_read(b), '... the stream is not busy afterwards')
a:write('two\n')
t.is(b:read(), 'two', '... and reads on')

-- a read inside pcall suspends (PUC: from a helper coroutine of lem's pcall) and is
-- seen waiting by others
utils.spawn(function() got = pack(pcall(b.read, b)) end)
utils.yield()
t.same(pack(b:read('*l', 0)), { n = 2, nil, 'busy' }, 'a read inside pcall waits: another reader gets busy')
a:write('three\n')
settle()
t.same(got, { n = 2, true, 'three' }, '... and it gets its line')
t.ok(free_read(b), '... then the stream is free')

-- ---- write ----
-- A Unix pair: its kernel buffers are small, so that a 1 MB write must wait.
local dir = t.tmpdir()
local function unix_pair()
	local path = dir .. '/sock'
	local ul = assert(io.unix.listen(path))
	local x = assert(io.unix.connect(path))
	local y = assert(ul:accept(2))
	ul:close()
	return x, y
end
local big = ('w'):rep(1024 * 1024)
a:close() b:close()
a, b = unix_pair()
t.like(wrapped(function() return a:write(big) end), 'cannot suspend here',
	'a write that must wait, inside coroutine.wrap, raises')
local second
utils.spawn(function() second = pack(a:write('x')) end)
utils.yield()
local drained = 0
while b:read(1, 0.2) do drained = drained + 1 end    -- what the kernel took, and 'x'
t.same(second, { n = 1, true }, '... the stream is not busy afterwards: the next write waits and ends')
t.ok(drained > 1 and drained <= #big + 1, '... the part written went out', drained .. ' bytes')
local filled = 0
utils.spawn(function() a:write(big) filled = filled + 1 end)
utils.yield()
t.same(pack(a:write('x')), { n = 2, nil, 'busy' }, '... a writer from a coroutine lem runs waits')
drained = 0
while drained < #big do drained = drained + #assert(b:read(math.min(65536, #big - drained))) end
settle()
t.is(filled, 1, '... and its write ends')
t.is(a:write('after\n'), true, '... and the stream writes on')
t.is(b:read(), 'after', '... in order')

-- ---- accept and autospawn ----
local l = assert(io.tcp.listen('127.0.0.1', 0))
t.like(wrapped(function() return l:accept() end), 'cannot suspend here', 'accept inside coroutine.wrap raises')
t.ok(free_accept(l), '... the listener is not busy afterwards')
t.like(wrapped(function() return l:autospawn(print) end), 'cannot suspend here',
	'autospawn inside coroutine.wrap raises')
t.ok(free_accept(l), '... the listener is not busy afterwards')
local acc
utils.spawn(function() acc = l:accept(2) end)
utils.yield()
local c = assert(io.tcp.connect('127.0.0.1', l:port()))
settle()
t.ok(acc, '... and an accept from a coroutine lem runs waits and works')
local served = 0
utils.spawn(function() l:autospawn(function(s) served = served + 1 s:close() end) end)
utils.yield()
local c2 = assert(io.tcp.connect('127.0.0.1', l:port()))
settle()
t.is(served, 1, '... as does autospawn')
c:close() c2:close() acc:close() l:close()

-- ---- connect and listen ----
collect()
local base = t.nfds()
l = assert(io.tcp.listen('127.0.0.1', 0))
-- a name is looked up on the pool: the connect always waits
t.like(wrapped(function() return io.tcp.connect('localhost', l:port()) end), 'cannot suspend here',
	'a connect that looks a name up, inside coroutine.wrap, raises')
t.like(wrapped(function() return io.tcp.listen('localhost', 0) end), 'cannot suspend here',
	'a listen that looks a name up, inside coroutine.wrap, raises')
-- a numeric address: loopback connects at once or waits; either is fine
local err = wrapped(function() return io.tcp.connect('127.0.0.1', l:port()) end)
t.ok(err == nil or err:find('cannot suspend here'), 'a connect to an address inside coroutine.wrap connects or raises', err)
settle()
local conn = io.tcp.connect('localhost', l:port(), 2)
t.ok(conn, '... a connect from a coroutine lem runs still works')
if conn then conn:close() end
while true do
	local s = l:accept(0)
	if not s then break end
	s:close()
end
l:close()
conn = nil
collect()
t.is(t.nfds(), base, '... and the failed suspensions left no descriptor behind')

-- ---- a caller resumed by hand (unsupported) leaves its object free ----
a, b = pair()
local victim
utils.spawn(function() victim = coroutine.running() b:read() end)
utils.yield()
coroutine.resume(victim)
t.ok(free_read(b), 'a reader resumed by hand: the stream is free again')
a:write('five\n')
t.is(b:read(), 'five', '... and reads on')
-- a writer resumed by hand: the rest of its data stays alive until it is written
a:close() b:close()
a, b = unix_pair()
utils.spawn(function() victim = coroutine.running() a:write(big, 'end') end)
utils.yield()
coroutine.resume(victim)
collect()
local parts, left = {}, #big + 3
while left > 0 do
	local part = b:read(math.min(65536, left), 2)
	if not part then break end
	parts[#parts + 1] = part
	left = left - #part
end
parts = table.concat(parts)
t.ok(#parts == #big + 3 and parts == big .. 'end', '... a writer resumed by hand: its data is written whole',
	('%d bytes'):format(#parts))
t.is(a:write('four\n'), true, '... and the stream writes on')
t.is(b:read(), 'four', '... in order')

-- ---- many waits do not grow lem's anchors ----
local function rounds(k)
	for _ = 1, k do
		utils.spawn(function() a:write('x\n') end)
		assert(b:read() == 'x')                 -- suspends: the writer runs after
		wrapped(function() return b:read() end) -- raises
		if puc then pcall(table.sort, { 1, 2 }, function(x, y) b:read() return x < y end) end
	end
end
rounds(1000)                                   -- warm up: spare coroutines, buffers
collect()
local before = collectgarbage('count')
rounds(1000)
collect()
local after = collectgarbage('count')
t.ok(after - before < 4, '1000 suspended and 2000 failed reads do not grow memory',
	('%.1f KB before, %.1f KB after'):format(before, after))
t.ok(free_read(b), '... and leave the stream free')
a:close() b:close()

t.done()
