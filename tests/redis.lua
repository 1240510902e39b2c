-- lem.redis against a real redis-server, started here on a Unix socket in a temporary
-- folder: every reply type, binary values, errors, pipelining from many coroutines,
-- pub/sub, a server killed mid-wait and restarted, connect failures, the collector.
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
	t.is(sub:close(), true, 'close a subscribed connection')
	t.same({ sub:message() }, { nil, 'closed' }, 'message after close')
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
