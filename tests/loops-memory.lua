-- lem.loops and memory: a message that cannot be decoded fails its receiver, and no
-- message is kept after its receive failed or its loop ended.
local t = require 'tap'
local lem = t.lem

local dir = t.tmpdir()
local function script(name, text) return t.file(dir, name, text) end

-- A loop whose receiver was woken, but which stops before the receiver runs: the message
-- handed over is freed with the loop (the sanitizer run's leak check sees it otherwise).
-- utils.now() changes at each poll: the first poll after the send delivers the message,
-- and this coroutine, queued before the receiver, exits first.
local st, out, err = t.run(lem .. [[ -e "
local l, u = require 'lem.loops', require 'lem.utils'
u.spawn(function() l.receive(); print('receiver ran') end)
u.yield()
assert(l.send(1, ('x'):rep(100000), { 1, 2, 3 }))
local now = u.now()
while u.now() == now do u.yield() end
u.exit(3)"]])
t.is(st, 3, 'a loop that stops with a message handed to a receiver not yet resumed')
t.is(out, '', '... never resumes it' .. (err ~= '' and ': ' .. err or ''))

-- Decoding a message fails when memory runs out: failalloc (tests/lib/failalloc.c),
-- preloaded, makes this thread's requests above a size fail.
local shim = (os.getenv('LEM') or ''):match('^(.*)/[^/]*$')
shim = shim and shim .. '/modules/failalloc.so'
local san = os.getenv('LEM_SANITIZER') or ''
local mem = script('mem.lua', [[
local fa, l, u = require 'failalloc', require 'lem.loops', require 'lem.utils'
local MB, N, how = 2^20, tonumber(arg[2]), arg[1]
fa.above(MB / 2)
local vm_uses_malloc = not pcall(string.rep, 'y', MB)
fa.above(nil)
if not vm_uses_malloc then print('skip') return end   -- LuaJIT's own allocator

local function rss()
	local f = io.open('/proc/self/status')
	local kb = f:read('*a'):match('VmRSS:%s*(%d+)')
	f:close()
	return tonumber(kb) / 1024
end
-- A string this state does not hold: strings are interned, and one that exists already
-- costs no allocation to decode.
local sent = 0
local function big()
	sent = sent + 1
	return ('x'):rep(MB) .. sent
end
local bad, errs = 0, {}
local function check(ok, e)
	if ok or not tostring(e):find('not enough memory') then
		bad = bad + 1
		errs[tostring(e)] = true
	end
end

local function once()
	if how == 'now' then             -- the message is there when receive is called
		assert(l.send(1, big(), { 1 }))
		collectgarbage()
		fa.above(MB / 2)
		check(pcall(l.receive))
		fa.above(nil)
	elseif how == 'waiting' then     -- the receiver waits when the message comes
		local got
		u.spawn(function() got = { pcall(l.receive) } end)
		u.yield()
		assert(l.send(1, big()))
		collectgarbage()
		fa.above(MB / 2)
		while not got do u.yield() end
		fa.above(nil)
		check(got[1], got[2])
	else                             -- ... and it comes from another loop
		local got
		u.spawn(function() got = { pcall(l.receive) } end)
		u.yield()
		collectgarbage()
		fa.above(MB / 2)
		assert(l.send(2, 'go'))
		local s = u.sleeper()
		while not got do s:sleep(0.001) end
		fa.above(nil)
		check(got[1], got[2])
	end
end

if how == 'loops' and l.id == 2 then
	while true do
		local _, what = l.receive()
		if what ~= 'go' then return end
		assert(l.send(1, big()))
	end
end
for _ = 1, 5 do once() end
collectgarbage()
local before = rss()
for _ = 1, N do once() end
collectgarbage()
local grown = rss() - before
if how == 'loops' then l.send(2, 'stop') end
assert(l.send(1, 'after', { 1 }))
local from, what, tb = l.receive()
print(('%d bad %s; grown %s MB; after: %s %s %s'):format(bad, next(errs) or '',
	grown < 8 and 'under 8' or tostring(grown), tostring(from), tostring(what), tostring(tb and tb[1])))
]])

for _, case in ipairs({
	{ 'now', '', 'a message there at once' },
	{ 'waiting', '', 'a receiver waiting for it' },
	{ 'loops', '--loops 2 ', 'a receiver waiting for another loop\'s message' },
}) do
	local how, opts, what = case[1], case[2], case[3]
	if san ~= '' then
		t.skip(what .. ': a catchable memory error', 'sanitizers replace the allocator')
	else
		st, out, err = t.run('LD_PRELOAD=' .. shim .. ' ' .. lem .. ' ' .. opts .. mem .. ' ' .. how .. ' 200')
		if out:match('^skip\n') then
			t.skip(what .. ': a catchable memory error', 'the VM does not allocate through malloc')
		else
			t.is(out, '0 bad ; grown under 8 MB; after: 1 after 1\n',
				what .. ', out of memory: 200 receives fail with a catchable \'not enough memory\', '
				.. 'the messages are freed, and the mailbox works on' .. (err ~= '' and ': ' .. err or ''))
			t.is(st, 0, '... and lem exits 0')
		end
	end
end

t.done()
