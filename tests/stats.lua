-- utils.stats(): the figures of known workloads (parked sleepers, runnable coroutines,
-- pending timers, the longest resume and where, I/O, messages between two loops).
local t = require 'tap'
local utils = require 'lem.utils'
local lio = require 'lem.io'
local lem = t.lem

local dir = t.tmpdir()
local function sleep(s) utils.sleeper():sleep(s) end

local s = utils.stats()
for _, k in ipairs { 'runnable', 'parked_sleep', 'timers', 'spares', 'resumes', 'iterations',
                     'max_resume', 'memory', 'parked_io', 'idle_streams', 'streams', 'listeners' } do
	t.is(type(s[k]), 'number', k .. ' is a number')
end
t.is(type(s.max_resume_where), 'string', 'max_resume_where is a string')
t.ok(s.memory > 10000 and s.memory < 1e8, 'memory is the Lua state\'s bytes: ' .. s.memory)

-- N sleepers parked, M coroutines runnable, K timers pending
local N, M, K = 7, 5, 3
local base = utils.stats()
local sleepers = {}
for i = 1, N do
	sleepers[i] = utils.sleeper()
	utils.spawn(function() sleepers[i]:sleep(i % 2 == 0 and 60 or nil) end)   -- timed or not
end
utils.yield()                                   -- they run and park
for _ = 1, M do utils.spawn(function() end) end
local timers = {}
for i = 1, K do timers[i] = utils.timer(60, function() end) end
s = utils.stats()
t.is(s.parked_sleep - base.parked_sleep, N, 'parked_sleep counts the coroutines in a sleep')
t.is(s.runnable, M, 'runnable counts the coroutines queued to run')
t.is(s.timers - base.timers, K, 'timers counts the pending timers')
t.ok(s.resumes >= base.resumes + N, 'resumes counts resumes: ' .. base.resumes .. ' -> ' .. s.resumes)
for i = 1, N do sleepers[i]:wakeup() end
timers[1]:cancel()
utils.yield()
s = utils.stats()
t.is(s.parked_sleep, base.parked_sleep, 'woken sleepers are no longer counted')
t.is(s.runnable, 0, 'the runqueue ran dry')
t.is(s.timers - base.timers, K - 1, 'a cancelled timer is no longer counted')
t.ok(s.spares >= M, 'finished coroutines are kept as spares: ' .. s.spares)
for i = 2, K do timers[i]:cancel() end
local it = utils.stats().iterations
sleep(0.01)
t.ok(utils.stats().iterations > it, 'iterations grow when the loop polls')

-- the longest resume, and where its coroutine stood: alone in its batch (a timer's), it
-- is timed alone
local spun = utils.sleeper()
utils.timer(0.001, function()
	local t1 = os.clock() + 0.05
	while os.clock() < t1 do end
	spun:sleep()   -- SPIN-LINE
end)
sleep(0.01)
s = utils.stats()
local line
local n = 0
for l in io.lines(arg[0]) do n = n + 1; if l:find('SPIN%-LINE') and not l:find('find') then line = n end end
t.ok(s.max_resume >= 0.05 and s.max_resume < 5, 'max_resume is the longest resume, in seconds: ' .. s.max_resume)
t.like(s.max_resume_where, 'stats%.lua:' .. line .. '$', 'max_resume_where: the line where it suspended')
spun:wakeup()

-- I/O: a reader parked, open streams and listeners
local server = assert(lio.tcp.listen('127.0.0.1', 0))
local a = assert(lio.tcp.connect('127.0.0.1', server:port()))
local b = assert(server:accept(2))
s = utils.stats()
t.is(s.listeners, 1, 'listeners counts the open listeners')
t.is(s.streams, 2, 'streams counts the open streams')
local got
utils.spawn(function() got = b:read() end)
utils.yield()
t.is(utils.stats().parked_io, 1, 'parked_io counts a reader waiting')
t.is(lio.stats().parked_io, 1, 'io.stats() is the same table')
a:write('x\n')
t.eventually(function() return got end)
t.is(got, 'x', '... which gets its line')
t.is(utils.stats().parked_io, 0, '... and is no longer counted')
a:close(); b:close(); server:close()
s = utils.stats()
t.ok(s.streams == 0 and s.listeners == 0, 'closed streams and listeners are no longer counted')

-- messages between two loops: counts and bytes on both sides, 'full' answers
local script = t.file(dir, 'msgs.lua', [[
local utils, loops = require 'lem.utils', require 'lem.loops'
if loops.id == 1 then
	for i = 1, 10 do assert(loops.send(2, ('x'):rep(100), i)) end
	local fulls = 0
	for _ = 1, 5 do if select(2, loops.send(2, 'y')) == 'full' then fulls = fulls + 1 end end
	while select(2, loops.send(2, 'go')) == 'full' do   -- retried until it goes
		fulls = fulls + 1
		utils.sleeper():sleep(0.01)
	end
	local from, s2 = loops.receive()
	local s = loops.stats()
	print(('1 sent=%d bytes_sent=%d full=%d fulls=%d'):format(s.sent, s.bytes_sent, s.full, fulls))
	print('2 ' .. s2)
else
	local t0 = utils.now()              -- the mailbox fills meanwhile
	while utils.stats().mailbox < 12 and utils.now() - t0 < 10 do utils.sleeper():sleep(0.01) end
	local s = utils.stats()
	local depth = s.mailbox
	local n = 0
	while true do
		local from, v = loops.receive()
		n = n + 1
		if v == 'go' then break end
	end
	s = utils.stats()
	loops.send(1, ('mailbox=%d received=%d bytes_received=%d parked_receive=%d n=%d'):format(
		depth, s.received, s.bytes_received, s.parked_receive, n))
end
]])
local status, out, err = t.run(lem .. ' --loops 2 --mailbox 12 ' .. script)
t.is(status, 0, 'two loops exchange messages' .. (err ~= '' and ': ' .. err or ''))
local sent, bsent, full, fulls = out:match('1 sent=(%d+) bytes_sent=(%d+) full=(%d+) fulls=(%d+)')
local depth, recvd, brecvd, parked, n = out:match('2 mailbox=(%d+) received=(%d+) bytes_received=(%d+) parked_receive=(%d+) n=(%d+)')
t.ok(sent and depth, 'both loops report: ' .. out:gsub('\n', ' '))
if sent and depth then
	t.is(tonumber(full), tonumber(fulls), "full counts the sends answered 'full' (" .. fulls .. ')')
	t.is(tonumber(sent), 13, 'sent counts the messages that went: 10, two y and go')
	t.is(tonumber(recvd), tonumber(n), 'received counts the messages received')
	t.is(tonumber(recvd), tonumber(sent), 'as many received as sent')
	t.is(tonumber(brecvd), tonumber(bsent), 'bytes_received on one side is bytes_sent on the other')
	t.ok(tonumber(bsent) > 10 * 100, 'bytes count the encoded values: ' .. bsent)
	t.is(tonumber(depth), 12, 'mailbox is the depth of the mailbox: full at 12')
	t.is(tonumber(parked), 0, 'parked_receive: nobody waits any more')
end

-- a loop parked in receive
status, out = t.run(lem .. [[ --loops 2 -e "local u, l = require 'lem.utils', require 'lem.loops'
	if l.id == 2 then u.spawn(function() l.receive() end) u.yield()
	print(l.id, u.stats().parked_receive) u.exit(0) else l.receive() end"]])
t.like(out, '2\t1', 'parked_receive counts a coroutine waiting in receive')

t.done()
