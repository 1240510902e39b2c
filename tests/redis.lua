-- lem.redis against a real redis-server, started here on a Unix socket in a temporary
-- folder: every reply type, binary values, errors, the commands call refuses, pipelining
-- from many coroutines, pub/sub, a server killed mid-wait and restarted, connect
-- failures, the collector.
local t = require 'tap'
local utils = require 'lem.utils'
local redis = require 'lem.redis'
local redisserver = require 'redisserver'

local dir = t.tmpdir()
local sock = dir .. '/r.sock'

local function sleep(s) utils.sleeper():sleep(s) end
local function start() return redisserver.start(dir) end

local pid, why = start()
if not t.ok(pid, 'redis-server started on a Unix socket', why) then
	t.done()
	return
end

local r = assert(redis.connect(sock, 2))
t.like(tostring(r), '^redis %(open%)', 'tostring')

-- reply types
t.is(r:call('PING'), 'PONG', 'status reply: a string')
t.is(r:call('SET', 'k', 'v'), 'OK', 'SET: OK')
t.is(r:call('GET', 'k'), 'v', 'bulk string')
t.is(r:call('INCRBY', 'n', 41), 41, 'integer reply (number argument)')
t.is(r:call('INCR', 'n'), 42, 'integer again')
t.is(r:call('GET', 'missing'), redis.null, 'nil bulk: redis.null')
t.is(tostring(redis.null), 'redis.null', 'tostring(redis.null)')
local v, err = r:call('LPUSH', 'k', 'x')
t.is(v, nil, 'error reply: nil')
t.like(err, '^WRONGTYPE', 'error reply: the server\'s message')
v, err = r:call('NOSUCHCOMMAND')
t.like(err, '^ERR unknown command', 'unknown command')
t.error(function() r:call() end, 'bad argument', 'call without a command raises')
t.error(function() r:call('SET', 'k', {}) end, 'bad argument', 'a table argument raises')

local bin = 'a\0b\r\nc\0\r\n' .. string.rep('\255', 10)
t.is(r:call('SET', 'bin', bin), 'OK', 'SET a binary value')
t.is(r:call('GET', 'bin'), bin, 'binary-safe bulk string (\\0, \\r\\n)')
t.is(r:call('SET', 'empty', ''), 'OK', 'SET an empty value')
t.is(r:call('GET', 'empty'), '', 'empty bulk string')
local big = string.rep('0123456789', 100000)
t.is(r:call('SET', 'big', big), 'OK', 'SET 1 MB')
t.is(r:call('GET', 'big'), big, 'GET 1 MB')

r:call('DEL', 'list')
t.is(r:call('RPUSH', 'list', 'a', 'b', 'c'), 3, 'RPUSH')
t.same(r:call('LRANGE', 'list', 0, -1), { 'a', 'b', 'c' }, 'array reply')
t.same(r:call('LRANGE', 'nolist', 0, -1), {}, 'empty array')
t.same(r:call('EVAL', "return {1, 'two', {3, {'four'}}, redis.error_reply('bad')}", 0),
	{ 1, 'two', { 3, { 'four' } }, { err = 'ERR bad' } }, 'nested arrays, an error inside one')
t.same(r:call('MGET', 'k', 'missing'), { 'v', redis.null }, 'nil inside an array')
t.is(r:call('MULTI'), 'OK', 'MULTI')
t.is(r:call('INCR', 'n'), 'QUEUED', 'QUEUED')
t.is(r:call('LPUSH', 'k', 'x'), 'QUEUED', 'QUEUED (will fail)')
local ex = r:call('EXEC')
t.is(ex[1], 43, 'EXEC: array of replies')
t.like(type(ex[2]) == 'table' and ex[2].err, '^WRONGTYPE', 'EXEC: the failed command')
local args = {}
for i = 1, 100 do args[#args + 1] = 'f' .. i; args[#args + 1] = i end
t.is(r:call('HSET', 'h', unpack(args)), 100, 'a command of 201 arguments')
t.is(r:call('HGET', 'h', 'f77'), '77', 'and its values')

-- commands whose replies call cannot hand out one per command, in order (none, a stream,
-- another mode, RESP3) raise "bad argument" at the line of the call and send nothing
do
	-- in a coroutine of its own, so that a call that waits for a reply never coming
	-- fails the test instead of hanging it
	local function refused(f, want, name)
		local got
		local wake = utils.sleeper()
		utils.spawn(function()
			got = { pcall(f) }
			wake:wakeup()
		end)
		wake:sleep(1)
		local at = debug.getinfo(f, 'S')
		want = ('%s:%d: bad argument %s'):format(at.short_src, at.linedefined, want)
		t.is(got and not got[1] and got[2], want, name)
	end
	local reply = "#1 to 'call' (CLIENT REPLY is not supported: every command gets its reply)"
	refused(function() r:call('CLIENT', 'REPLY', 'OFF') end, reply, 'CLIENT REPLY OFF refused')
	refused(function() r:call('CLIENT', 'REPLY', 'SKIP') end, reply, 'CLIENT REPLY SKIP refused')
	refused(function() r:call('client', 'reply', 'on') end, reply, 'client reply on refused (any case)')
	local mode = "#1 to 'call' (%s changes the connection's mode: use %s)"
	refused(function() r:call('SUBSCRIBE', 'a', 'b') end, mode:format('SUBSCRIBE', 'subscribe'),
		'SUBSCRIBE refused: use subscribe')
	refused(function() r:call('Subscribe', 'a') end, mode:format('SUBSCRIBE', 'subscribe'),
		'Subscribe refused (any case)')
	refused(function() r:call('PSUBSCRIBE', 'n*') end, mode:format('PSUBSCRIBE', 'psubscribe'),
		'PSUBSCRIBE refused: use psubscribe')
	refused(function() r:call('UNSUBSCRIBE') end, mode:format('UNSUBSCRIBE', 'unsubscribe'),
		'UNSUBSCRIBE refused: use unsubscribe')
	refused(function() r:call('punsubscribe', 'n*') end, mode:format('PUNSUBSCRIBE', 'punsubscribe'),
		'PUNSUBSCRIBE refused: use punsubscribe')
	local sharded = "#1 to 'call' (sharded pub/sub is not supported: it changes the connection's mode)"
	refused(function() r:call('SSUBSCRIBE', 'a') end, sharded, 'SSUBSCRIBE refused')
	refused(function() r:call('SUNSUBSCRIBE') end, sharded, 'SUNSUBSCRIBE refused')
	refused(function() r:call('MONITOR') end,
		"#1 to 'call' (MONITOR is not supported: it streams replies nobody asked for)", 'MONITOR refused')
	refused(function() r:call('SYNC') end,
		"#1 to 'call' (SYNC is for replicas: it streams replies nobody asked for)", 'SYNC refused')
	refused(function() r:call('PSYNC', '?', -1) end,
		"#1 to 'call' (PSYNC is for replicas: it streams replies nobody asked for)", 'PSYNC refused')
	refused(function() r:call('REPLCONF', 'ACK', 0) end,
		"#1 to 'call' (REPLCONF is for replicas: some of its forms get no reply)", 'REPLCONF refused')
	local resp3 = "#2 to 'call' (only protocol 2 is supported: replies are read as RESP2)"
	refused(function() r:call('HELLO', 3) end, resp3, 'HELLO 3 refused')
	refused(function() r:call('hello', '3', 'SETNAME', 'x') end, resp3, 'hello 3 SETNAME refused')
	t.is(type(r:call('HELLO')), 'table', 'HELLO alone: served')
	t.is(type(r:call('HELLO', 2)), 'table', 'HELLO 2: served')
	t.is(r:call('CLIENT', 'SETNAME', 'lem'), 'OK', 'other CLIENT commands: served')
	t.is(r:call('PING'), 'PONG', 'the refused commands sent nothing')

	-- a refused CLIENT REPLY SKIP among pipelined callers: each of the others its reply
	local got, done = {}, 0
	local wake = utils.sleeper()
	local function spawn(name, f)
		utils.spawn(function()
			got[name] = { pcall(f) }
			done = done + 1
			if done == 3 then wake:wakeup() end
		end)
	end
	spawn('skip', function() return r:call('CLIENT', 'REPLY', 'SKIP') end)
	spawn('set', function() return r:call('SET', 'k1', 'v1') end)
	spawn('get', function() return r:call('GET', 'k1') end)
	wake:sleep(5)
	t.is(done, 3, 'three pipelined callers returned')
	t.like(got.skip and not got.skip[1] and got.skip[2], 'CLIENT REPLY is not supported',
		'CLIENT REPLY SKIP raised in its coroutine')
	t.same(got.set, { true, 'OK' }, 'SET got its own OK')
	t.same(got.get, { true, 'v1' }, 'GET got its own value')
end

-- pipelining: 100 coroutines, 100 commands each, on one connection
do
	local done, bad = 0, 0
	local wake = utils.sleeper()
	for c = 1, 100 do
		utils.spawn(function()
			for i = 1, 100 do
				local key = 'p' .. c
				local got = r:call('SET', key, c .. ':' .. i)
				local back = r:call('GET', key)
				if got ~= 'OK' or back ~= c .. ':' .. i then bad = bad + 1 end
			end
			done = done + 1
			if done == 100 then wake:wakeup() end
		end)
	end
	wake:sleep(60)
	t.is(done, 100, '100 coroutines finished')
	t.is(bad, 0, '20000 pipelined replies each matched its caller')
end

-- the callers' ring grows while it has wrapped: 10 coroutines call in a loop, then 30
-- more join them; a call that raises after its command was formatted sends nothing
do
	local done, bad, n = 0, 0, 40
	local wake = utils.sleeper()
	local function caller(c)
		for i = 1, 200 do
			local want = c .. ':' .. i
			if r:call('ECHO', want) ~= want then bad = bad + 1 end
		end
		done = done + 1
		if done == n then wake:wakeup() end
	end
	for c = 1, 10 do utils.spawn(caller, c) end
	utils.spawn(function()
		for _ = 1, 3 do utils.yield() end
		for c = 11, n do utils.spawn(caller, c) end
	end)
	-- formatted, then raising where it cannot suspend: its command must not go out
	local ok, e = coroutine.wrap(function() return pcall(r.call, r, 'ECHO', 'lost') end)()
	t.ok(not ok and e:match('cannot suspend'), 'a call that cannot suspend raises meanwhile', e)
	wake:sleep(60)
	t.is(done, n, 'callers joining a wrapped ring finished')
	t.is(bad, 0, 'and each got its own replies')
	t.is(r:call('ECHO', 'after'), 'after', 'the raised call left nothing behind')
end

-- the reply limit
t.is(r:limit(), redis.maxreply, 'limit() is redis.maxreply by default')
r:limit(100000)
v, err = r:call('GET', 'big')
t.is(err, 'reply too large', 'a reply over the limit: nil, reply too large')
t.same({ r:call('PING') }, { nil, 'closed' }, 'and the connection is closed')
r = assert(redis.connect(sock))
t.error(function() r:limit(1023) end, "bad argument #1 to 'limit' %(from 1024 bytes", 'a limit below 1024 raises')
t.is(r:limit(1024), 1024, '... 1024 is taken')
r:limit(redis.maxreply)
t.is(redis.maxreply, 64 * 1048576, 'redis.maxreply: 64 MiB')

-- arrays nest 7 deep below the reply (hiredis's reader); deeper fails and closes
do
	local function nested(n) return 'return ' .. ('{'):rep(n) .. '1' .. ('}'):rep(n) end
	local v = r:call('EVAL', nested(8), 0)
	local depth = 0
	while type(v) == 'table' do depth, v = depth + 1, v[1] end
	t.is(depth, 8, 'a reply of 8 arrays one in another')
	t.same({ r:call('EVAL', nested(9), 0) }, { nil, 'No support for nested multi bulk replies with depth > 7' },
		'9: nil and hiredis\'s message')
	t.same({ r:call('PING') }, { nil, 'closed' }, '... and the connection is closed')
	r = assert(redis.connect(sock))
end

-- QUIT: its caller gets OK, the calls after it 'closed by the server'
do
	local q = assert(redis.connect(sock))
	local got, n = {}, 0
	for i, cmd in ipairs({ 'QUIT', 'PING' }) do
		utils.spawn(function() got[i] = { q:call(cmd) } n = n + 1 end)
	end
	t.eventually(function() return n == 2 end, 2)
	t.same(got, { { 'OK' }, { nil, 'closed by the server' } }, 'QUIT: OK, then the call behind it: nil, closed by the server')
	t.same({ q:call('PING') }, { nil, 'closed' }, '... and later calls nil, closed')
end

-- pub/sub between two connections
do
	local sub = assert(redis.connect(sock))
	t.same({ sub:message(0) }, { nil, 'not subscribed' }, 'message before subscribe')
	t.is(sub:subscribe('news', 'sport'), true, 'subscribe')
	t.same({ sub:message(2) }, { 'subscribe', 'news', 1 }, 'confirmation 1')
	t.same({ sub:message(2) }, { 'subscribe', 'sport', 2 }, 'confirmation 2')
	t.like(select(2, sub:call('GET', 'k')), '^subscribed', 'call on a subscribed connection')
	t.is(r:call('PUBLISH', 'news', 'hello\0world'), 1, 'PUBLISH: one receiver')
	t.same({ sub:message(2) }, { 'message', 'news', 'hello\0world' }, 'the message')
	t.same({ sub:message(0.1) }, { nil, 'timeout' }, 'message times out')
	local waiting
	utils.spawn(function() waiting = { sub:message(0.2) } end)
	utils.yield()
	t.same({ sub:message(0) }, { nil, 'busy' }, 'message while another coroutine waits in it: nil, busy')
	t.eventually(function() return waiting end, 2)
	t.same(waiting, { nil, 'timeout' }, '... and the one that waits goes on')
	utils.spawn(function()
		sleep(0.05)
		r:call('PUBLISH', 'sport', 'goal')
	end)
	t.same({ sub:message(2) }, { 'message', 'sport', 'goal' }, 'a message while waiting')
	sub:psubscribe('n*')
	t.same({ sub:message(2) }, { 'psubscribe', 'n*', 3 }, 'psubscribe confirmation')
	for i = 1, 3 do r:call('PUBLISH', 'news', 'm' .. i) end
	t.same({ sub:message(2) }, { 'message', 'news', 'm1' }, 'messages in order (1)')
	t.same({ sub:message(2) }, { 'pmessage', 'news', 'm1', 'n*' }, 'pmessage: pattern last')
	t.same({ sub:message(2) }, { 'message', 'news', 'm2' }, 'messages in order (2)')
	sub:unsubscribe()
	sub:punsubscribe()
	local seen = {}
	for _ = 1, 6 do
		local kind = sub:message(2)
		seen[kind] = (seen[kind] or 0) + 1
		if kind == 'unsubscribe' or kind == 'punsubscribe' then break end
	end
	t.ok(seen.unsubscribe or seen.punsubscribe, 'unsubscribe confirmations come')
	for _ = 1, 6 do                  -- to the last confirmation: subscribed to nothing
		local _, _, count = sub:message(2)
		if count == 0 then break end
	end
	t.like(select(2, sub:call('PING')), '^subscribed: ',
		'subscribed to nothing any more: call still returns nil, subscribed: ...')
	t.is(sub:close(), true, 'close a subscribed connection')
	t.same({ sub:message() }, { nil, 'closed' }, 'message after close')
end

-- a subscriber that falls behind: Redis closes it (client-output-buffer-limit pubsub)
do
	local sub = assert(redis.connect(sock))
	assert(r:call('CONFIG', 'SET', 'client-output-buffer-limit', 'pubsub 256kb 128kb 1'))
	sub:subscribe('flood')
	sub:message(2)
	local waiting
	utils.spawn(function() waiting = { sub:message(5) } end)   -- close wakes a waiting message
	local payload = ('m'):rep(10000)
	for _ = 1, 200 do r:call('PUBLISH', 'flood', payload) end
	t.eventually(function() return waiting end, 2)
	t.is(waiting and waiting[1], 'message', 'a subscriber gets its messages')
	for _ = 1, 1800 do r:call('PUBLISH', 'flood', payload) end     -- 18 MB it does not read
	local n, kind, err = 0
	repeat
		kind, err = sub:message(2)
		n = n + 1
	until not kind
	t.same({ kind, err }, { nil, 'closed by the server' },
		'a subscriber past client-output-buffer-limit: nil, closed by the server, after what came', n)
	assert(r:call('CONFIG', 'SET', 'client-output-buffer-limit', 'pubsub 32mb 8mb 60'))
	sub = assert(redis.connect(sock))
	sub:subscribe('c')
	sub:message(2)
	utils.spawn(function() waiting = { sub:message(5) } end)
	utils.yield()
	sub:close()
	utils.yield()
	t.same(waiting, { nil, 'closed' }, 'a message waiting when its connection is closed: nil, closed')
end

-- a connection nobody refers to, but a coroutine waits on, is kept alive
do
	local got
	utils.spawn(function() got = { assert(redis.connect(sock)):call('BLPOP', 'kept', 5) } end)
	sleep(0.1)
	collectgarbage()
	collectgarbage()
	r:call('RPUSH', 'kept', 'v')
	t.eventually(function() return got end, 3)
	t.same(got, { { 'kept', 'v' } }, 'a connection only a waiting coroutine holds: kept through a collection')
end

-- a connection closed while callers wait: each gets nil, 'closed'
do
	local c = assert(redis.connect(sock))
	local got = {}
	for i = 1, 3 do
		utils.spawn(function() got[i] = { c:call('BLPOP', 'nothing', 5) } end)
	end
	utils.yield()
	c:close()
	utils.yield()
	t.same(got, { { nil, 'closed' }, { nil, 'closed' }, { nil, 'closed' } },
		'close wakes every caller with nil, closed')
end

-- the server killed mid-wait, then restarted
do
	local c = assert(redis.connect(sock))
	local got
	local wake = utils.sleeper()
	utils.spawn(function()
		got = { c:call('BLPOP', 'nothing', 10) }
		wake:wakeup()
	end)
	sleep(0.1)
	os.execute('kill -9 ' .. pid)
	wake:sleep(5)
	t.is(got and got[1], nil, 'server killed: nil')
	t.like(got and got[2], 'closed by the server', 'server killed: a clear message')
	t.same({ c:call('PING') }, { nil, 'closed' }, 'the connection is closed')
	t.same({ r:call('PING') }, { nil, 'closed by the server' },
		'an idle connection learns it at its next call')
	pid, why = start()
	t.ok(pid, 'redis-server restarted', why)
	local c2 = redis.connect(sock)
	t.is(c2 and c2:call('PING'), 'PONG', 'a new connect works after the restart')
	r = c2
end

-- connect failures
do
	v, err = redis.connect(dir .. '/nothing.sock')
	t.is(v, nil, 'connect to a missing socket: nil')
	t.is(err, 'no such file or directory', 'and why')
	local port = t.free_port()
	v, err = redis.connect('127.0.0.1', port, 2)
	t.same({ v, err }, { nil, 'connection refused' }, 'TCP connect refused')
	v, err = redis.connect('localhost', port, 2)
	t.is(v, nil, 'a name looked up, refused: nil')
	t.ok(err == 'connection refused' or err == 'cannot assign requested address', 'and why', err)
	v, err = redis.connect('name.invalid', port, 5)
	t.is(v, nil, 'a name that does not resolve: nil')
	t.ok(err == 'Name or service not known' or err == 'Temporary failure in name resolution',
		'... and getaddrinfo\'s words', err)
	-- A listener whose backlog is full: the kernel drops further SYNs, so a connect
	-- stays in progress until its timeout.
	local lio = require 'lem.io'
	local l = assert(lio.tcp.listen('127.0.0.1', 0, 1))
	local fill = {}
	repeat
		local s = lio.tcp.connect('127.0.0.1', l:port(), 0.2)
		fill[#fill + 1] = s
	until not s or #fill > 16
	local t0 = t.now()
	v, err = redis.connect('127.0.0.1', l:port(), 0.2)
	t.same({ v, err }, { nil, 'timeout' }, 'connect to a full backlog: nil, timeout')
	t.near(utils.now() - t0, 0.2, 0.15, 'on time')
	for _, s in ipairs(fill) do s:close() end
	l:close()
	t.same({ redis.connect('localhost', port, 0) }, { nil, 'timeout' }, 'timeout 0 with a name')
	t.error(function() redis.connect('127.0.0.1', 70000) end, 'port', 'a bad port raises')
end

-- out of memory (tests/lib/failalloc.c, preloaded into a child lem, fails allocations
-- above a size): a call whose command cannot be formatted raises 'not enough memory'; a
-- reply that cannot be made in the loop's callback gives its caller nil, 'not enough memory'
do
	local shim = (os.getenv('LEM') or ''):match('^(.*)/[^/]*$')
	local oom = t.file(dir, 'oom.lua', [[
local fa = require 'failalloc'
local redis = require 'lem.redis'
local r = assert(redis.connect(arg[1]))
local big, bigger = ('v'):rep(1048576), ('w'):rep(4 * 1048576)
assert(r:call('SET', 'oom', big))
fa.above(65536)
local ok, e = pcall(r.call, r, 'SET', 'oom2', bigger)
fa.above(nil)
print(ok, e, r:call('PING'))
fa.above(65536)
local v, err = r:call('GET', 'oom')
fa.above(nil)
print(v, err, fa.failures())
]])
	if (os.getenv('LEM_SANITIZER') or '') ~= '' or not shim then
		t.skip('out of memory: not enough memory', 'sanitizers replace the allocator')
	else
		local st, out, e = t.run('LD_PRELOAD=' .. shim .. '/modules/failalloc.so ' .. t.lem .. ' ' .. oom .. ' ' .. sock)
		local lines = {}
		for line in out:gmatch('[^\n]+') do lines[#lines + 1] = line end
		t.like(lines[1], '^false\t[^\t]*not enough memory\tPONG$',
			'out of memory formatting a command: the call raises not enough memory, the connection goes on', e)
		t.like(lines[2], '^nil\tnot enough memory\t[1-9]%d*$', 'out of memory making a reply: nil, not enough memory')
		t.is(st, 0, '... and lem exits 0')
	end
end

-- an unclosed connection is closed by the collector
do
	collectgarbage()
	local before = t.nfds()
	local c = assert(redis.connect(sock))
	c:call('PING')
	t.is(t.nfds(), before + 1, 'a connection holds one descriptor')
	c = nil
	collectgarbage()
	collectgarbage()
	t.is(t.nfds(), before, 'the collector closed it')
end

r:close()
os.execute('kill ' .. pid)
t.done()
