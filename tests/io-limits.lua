-- lem.io's read limits (stream:limit): a peer cannot grow a stream's buffer without
-- bound, with a line that never ends, a '*a' that never ends or a huge count; and a read
-- that runs out of memory returns nil, 'not enough memory' instead of ending lem.
local t = require 'tap'
local utils = require 'lem.utils'
local io = require 'lem.io'

local pair = t.tcp_pair

local function pack(...) return { n = select('#', ...), ... } end

-- ---- the method ----
local a, b = pair()
t.ok(type(b.limit) == 'function', 'streams have a limit method')
if not b.limit then      -- the code before limits: report, don't die on every call below
	t.done()
	return
end
t.same(pack(b:limit()), { n = 2, 65536, 16777216 }, 'default limits: 64 KiB lines, 16 MiB reads')
t.same(pack(b:limit(100)), { n = 2, 100, 16777216 }, 'limit(line) sets the line limit only')
t.same(pack(b:limit(nil, 1000)), { n = 2, 100, 1000 }, 'limit(nil, all) sets the other only')
local big = b:limit(math.huge, math.huge)
t.ok(big > 2 ^ 40, 'math.huge means no limit', tostring(big))
t.error(function() b:limit(-1) end, "bad argument #1 to 'limit'", 'a negative limit raises')
t.error(function() b:limit(1.5) end, 'whole number', 'a fractional limit raises')
t.error(function() b:limit(0 / 0) end, 'whole number', 'a nan limit raises')
t.error(function() b:limit(1, 'x') end, "bad argument #2 to 'limit'", 'a string limit raises')
t.error(function() b.limit({}) end, 'stream expected', 'limit on a non-stream raises')
a:close() b:close()
t.error(function() b:limit() end, 'closed stream', 'limit on a closed stream raises')

-- ---- lines ----
-- A peer that sends a line without end: the reader stops buffering at the limit and says
-- so at once (before: it waited for the '\n' as long as the peer kept sending).
a, b = pair()
local MB = 1024 * 1024
local flood = ('x'):rep(16 * MB)
local wrote
utils.spawn(function() wrote = a:write(flood) end)
t.same(pack(b:read('*l', 5)), { n = 2, nil, 'line too long' }, 'a line past the default 64 KiB limit: nil, line too long')
t.same(pack(b:read('*l', 5)), { n = 2, nil, 'line too long' }, '... again on the next read: the data stays')
utils.sleeper():sleep(0.05)
t.ok(not wrote, '... and the reader stopped taking it: the 16 MB writer still waits')
t.is(b:read(10), flood:sub(1, 10), 'a count read takes the buffered data')
b:close() a:close()

-- the limit is exact, however the data came in
a, b = pair()
b:limit(10)
a:write('0123456789\n', '0123456789\r\n', '01234567890\n', 'ok\n')
t.is(b:read(), '0123456789', 'a line of exactly the limit')
t.is(b:read(), '0123456789', '... also with \\r\\n')
t.same(pack(b:read()), { n = 2, nil, 'line too long' }, 'one byte more: line too long, even with its \\n there')
t.is(b:read(12), '01234567890\n', '... the line stays for a count read')
t.is(b:read(), 'ok', '... and the stream goes on')
a:write('0123456')
utils.spawn(function() a:write('789\r') utils.sleeper():sleep(0.02) a:write('\n') end)
t.is(b:read('*l', 5), '0123456789', "a line of the limit and its '\\r' waits for the '\\n'")
a:write('0123456789abc')
a:close()
t.same(pack(b:read('*l', 5)), { n = 2, nil, 'line too long' }, 'an unterminated last line past the limit')
t.is(b:read('*a'), '0123456789abc', "... stays for '*a'")
b:close()

-- ---- '*a' and counts ----
a, b = pair()
b:limit(nil, 1000)
a:write(('y'):rep(1001))
t.same(pack(b:read('*a', 5)), { n = 2, nil, 'too long' }, "'*a' past the limit: nil, too long at once")
t.same(pack(b:read(1001)), { n = 2, nil, 'too long' }, 'a count past the limit: nil, too long')
t.is(b:read(1000), ('y'):rep(1000), 'a count of the limit reads; the data stayed')
a:write(('z'):rep(999))
a:close()
t.is(b:read('*a', 5), 'y' .. ('z'):rep(999), "'*a' of exactly the limit until EOF")
b:close()
a, b = pair()
b:limit(nil, 1000)
a:write(('y'):rep(1001))
a:close()
t.same(pack(b:read('*a', 5)), { n = 2, nil, 'too long' }, "'*a' of one byte more than the limit, the peer gone: too long at EOF too")
t.is(#b:read(1000), 1000, '... the data stayed')
b:close()

-- the default bounds counts too: a peer's Content-Length cannot make a server buffer 1 GB
a, b = pair()
t.same(pack(b:read(1024 * MB, 0)), { n = 2, nil, 'too long' }, 'read(1 GiB) with default limits: nil, too long')
a:close() b:close()

-- ---- out of memory ----
-- A child lem reads 160 MB of zeros from a pipe under a memory limit. Before, the buffer's
-- realloc failure (or the string's, made in the read watcher's callback) aborted it.
local san = os.getenv('LEM_SANITIZER') or ''
if san ~= '' then
	t.skip('out of memory in a read', 'a sanitizer maps too much for ulimit -v')
	t.skip('out of memory in a count read', 'a sanitizer maps too much for ulimit -v')
else
	local probe = os.tmpname()
	local f = assert(_G.io.open(probe, 'w'))
	f:write([[
local f = io.open('/proc/self/status')
local vm = f:read('*a'):match('VmSize:%s*(%d+)')
f:close()
require 'lem.io'
print(vm)
]])
	f:close()
	local _, out = t.run(t.lem .. ' ' .. probe)
	local base = assert(tonumber(out:match('%d+')), 'VmSize of a child lem')
	local MiB = 1024               -- ulimit -v counts KiB
	local function oom(fmt)
		f = assert(_G.io.open(probe, 'w'))
		f:write(([[
local io = require 'lem.io'
io.stdin:limit(nil, math.huge)
local data, err = io.stdin:read(%s)
local rest = io.stdin:read(1000)
print(type(data), err, rest and #rest)
]]):format(fmt))
		f:close()
		-- the buffer may grow to 64 MiB (a doubling past it fails), not a second 64 MiB
		local limit = base + 96 * MiB
		return t.run('head -c 167772160 /dev/zero | (ulimit -v ' .. limit .. ' && exec ' ..
			t.lem .. ' ' .. probe .. ')')
	end
	local st, text, err = oom("'*a'")
	t.ok(st == 0, "'*a' out of memory: no abort", ('status %s: %s'):format(st, err))
	t.is(text, 'nil\tnot enough memory\t1000\n', "... read returns nil, 'not enough memory', the data stays")
	st, text, err = oom('64 * 1024 * 1024')
	t.ok(st == 0, 'a 64 MiB count read whose string does not fit: no abort',
		('status %s: %s'):format(st, err))
	t.is(text, 'nil\tnot enough memory\t1000\n', "... read returns nil, 'not enough memory', the data stays")
	-- A coroutine that runs out of memory while it holds it: its error's report (made
	-- where no Lua call protects it) aborted the process ("unprotected error in the Lua
	-- API"), and took a server down with it
	local function run_limited(script)
		f = assert(_G.io.open(probe, 'w'))
		f:write(script)
		f:close()
		return t.run('ulimit -v ' .. (base + 64 * MiB) .. ' && exec ' .. t.lem .. ' ' .. probe)
	end
	st, text, err = run_limited([[
require('lem.utils').spawn(function() local t = {} for i = 1, 1e9 do t[i] = { i } end end)
]])
	t.ok(st == 1 and err:find('^lem: not enough memory\n') and err:find('spawned at'),
		'a spawned coroutine out of memory, holding it: reported, exit 1, no abort',
		('status %s: %s'):format(st, err))
	st, text, err = run_limited([[
local http = require 'lem.http'
local srv = assert(http.listen('127.0.0.1', 0, function(req, res)
	if req.path == '/big' then local t = {} for i = 1, 1e9 do t[i] = { i } end end
	res:send(200, 'fine')
end, { log = function() end }))
local url = 'http://127.0.0.1:' .. srv:port()
local a, b = http.request(url .. '/big'), http.request(url .. '/ok')
print(a and a.status, b and b.status, b and b:body())
http.close_idle()
srv:close()
]])
	t.ok(st == 0, 'an http handler out of memory, holding it: the server goes on',
		('status %s: %s'):format(st, err))
	t.is(text, '500\t200\tfine\n', '... 500 to that request, 200 to the next')
	-- A loop of spawns: each queues its function (and arguments) in the runqueue, whose
	-- new segment, made where nothing caught its failure, aborted the process ("out of
	-- memory (runqueue)"), as did the coroutine made on the loop's own state for a spawn
	-- with arguments
	for _, args in ipairs { '', ', n' } do
		-- LuaJIT: the coroutines made end and are kept for reuse on a thread whose stack
		-- LuaJIT's collector shrank, and growing it back out of memory still aborts
		if args ~= '' and jit then
			t.skip('spawn(f, n) in a loop out of memory: it raises, no abort',
				"LuaJIT: the spare coroutines' stack")
			break
		end
		st, text, err = run_limited(([[
local utils, n = require 'lem.utils', 0
local f = function() end
local ok, e = pcall(function() while true do utils.spawn(f%s) n = n + 1 end end)
print(ok, e, n > 1000)
]]):format(args))
		t.ok(st == 0 and text == 'false\tnot enough memory\ttrue\n',
			('spawn(f%s) in a loop out of memory: it raises, no abort'):format(args),
			('status %s: %s%s'):format(st, text, err))
	end
	os.remove(probe)
end

-- Out of descriptors (EMFILE), autospawn stops accepting for 0.1 s rather than spinning
-- on the listener that stays readable; the client waits in the backlog until a
-- descriptor is free. The child lem fills its descriptors with clients of its own.
local emfile = t.file(t.tmpdir(), 'emfile.lua', [[
local io, utils = require 'lem.io', require 'lem.utils'
local l = assert(io.tcp.listen('127.0.0.1', 0))
local served, held = 0, {}
utils.spawn(function() l:autospawn(function(c) served = served + 1 held[#held + 1] = c end) end)
local clients, err = {}, nil
repeat
	local c
	c, err = io.tcp.connect('127.0.0.1', l:port(), 5)
	clients[#clients + 1] = c
until not c
utils.sleeper():sleep(0.05)
table.remove(clients, 1):close()
clients[#clients + 1] = assert(io.tcp.connect('127.0.0.1', l:port(), 5))   -- no descriptor to accept it
local before, c0 = served, os.clock()
utils.sleeper():sleep(0.5)
local cpu, during = os.clock() - c0, served - before
table.remove(clients, 1):close()
utils.sleeper():sleep(0.3)
-- descriptors back before the exit, where a leak checker needs some
for _, c in ipairs(clients) do c:close() end
for _, c in ipairs(held) do c:close() end
print(err, during, served - before, cpu < 0.1 and 'idle' or ('spun %.3f s'):format(cpu))
os.exit(0)
]])
local st, out, err = t.run('ulimit -n 64 && ' .. t.lem .. ' ' .. emfile)
t.is(out, 'too many open files\t0\t1\tidle\n',
	'out of descriptors: autospawn waits without spinning, and accepts the client once one is free', err)

-- ---- out of descriptors ----
-- A child lem under ulimit -n 64 takes every descriptor left (Lua's io.open), with a
-- client queued on its listener; a timer gives them back 0.3 s later.
do
	local dir = t.tmpdir()
	local function starved(body)
		local script = t.file(dir, 'starved.lua', [[
local io, utils = require 'lem.io', require 'lem.utils'
local l = assert(io.tcp.listen('127.0.0.1', 0))
local c = assert(io.tcp.connect('127.0.0.1', l:port()))
local hog = {}
while true do
	local f = _G.io.open('/dev/null')
	if not f then break end
	hog[#hog + 1] = f
end
utils.timer(0.3, function() for _, f in ipairs(hog) do f:close() end end)
]] .. body)
		return t.run('ulimit -n 64 && exec timeout -s KILL 10 ' .. t.lem .. ' ' .. script)
	end
	-- Before, accept returned the error at once: a loop that retries never yielded, the
	-- timer never ran, and the child spun until killed.
	local st, out, err = starved([[
local s, e, errs, last = nil, nil, 0, nil
local t0 = utils.now()
local quick, qe = l:accept(0.02)
print('quick', quick, qe, utils.now() - t0 >= 0.015)
repeat
	s, e = l:accept()
	if not s then errs, last = errs + 1, e end
until s
print('accepted', errs, last)
]])
	t.is(st, 0, 'accept out of descriptors, retried in a loop: no spin', err)
	t.like(out, 'quick\tnil\ttoo many open files\ttrue\n',
		"... accept(timeout) returns nil, 'too many open files' after its timeout")
	local errs, last = out:match('accepted\t(%d+)\t([^\n]*)')
	t.ok(errs and tonumber(errs) >= 1 and tonumber(errs) <= 10 and last == 'too many open files',
		'... each failed accept waited: a few errors, then the client once descriptors came back', out)
	st, out, err = starved([[
utils.spawn(function() l:autospawn(function(s) print('served') s:close() l:close() end) end)
]])
	t.ok(st == 0 and out == 'served\n', 'autospawn out of descriptors waits, then serves the client',
		('status %s: %s%s'):format(st, out, err))
	-- Out of memory for an autospawn handler's coroutine: it was made on the loop's own
	-- state, and the process aborted. failalloc (tests/lib/failalloc.c) refuses, in
	-- loop 1 only, allocations above 600 bytes: a coroutine's stack. Loop 1 is woken by
	-- messages, in place: it makes no coroutine of its own meanwhile.
	local shim = (os.getenv('LEM') or ''):match('^(.*)/[^/]*$')
	if (os.getenv('LEM_SANITIZER') or '') ~= '' or not shim or jit then
		t.skip('autospawn out of memory for a handler: the client is closed, no abort',
			'sanitizers replace the allocator; LuaJIT needs blocks of that size elsewhere')
	else
		local script = t.file(dir, 'spawnmem.lua', [[
local fa, io, utils, loops = require 'failalloc', require 'lem.io', require 'lem.utils', require 'lem.loops'
if loops.id == 1 then
	local l = assert(io.tcp.listen('127.0.0.1', 0))
	utils.spawn(function() l:autospawn(function(s) s:write('hi\n') s:close() end) end)
	utils.yield()
	fa.above(600)
	loops.send(2, l:port())
	loops.receive()
	fa.above(nil)
	loops.receive()
	l:close()
else
	local _, port = loops.receive()
	local a = io.tcp.connect('127.0.0.1', port)
	local t0 = utils.now()
	local line, e = a:read('*l', 5)
	print(line, e, utils.now() - t0 < 2)
	loops.send(1, 'memory back')
	utils.sleeper():sleep(0.3)
	local b = io.tcp.connect('127.0.0.1', port)
	print(b:read('*l', 5))
	loops.send(1, 'done')
end
]])
		st, out, err = t.run('LD_PRELOAD=' .. shim .. '/modules/failalloc.so LUA_CPATH=' .. shim ..
			"/modules/?.so exec timeout -s KILL 20 " .. t.lem .. ' --loops 2 ' .. script)
		t.ok(st == 0 and out == 'nil\tclosed\ttrue\nhi\n',
			'autospawn out of memory for a handler: that client is closed at once, no abort; the next is served',
			('status %s: %s%s'):format(st, out, err))
	end
	-- glibc's getaddrinfo, unable to open /etc/hosts, says the name is not known
	st, out, err = starved([[
print(select(2, io.tcp.connect('localhost', l:port())))
]])
	t.is(out, 'too many open files\n', "a name looked up out of descriptors: nil, 'too many open files'")
end

t.done()
