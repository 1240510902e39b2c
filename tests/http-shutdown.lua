-- lem.http in the shutdown: SIGTERM to a server with requests in flight and an idle
-- keep-alive connection. The requests in flight are answered whole, with Connection:
-- close; the idle connection is closed at once; new connections are refused; the process
-- exits 143 long before its deadline. And server:shutdown() in the process itself.
local t = require 'tap'
local io = require 'lem.io'
local utils = require 'lem.utils'
local http = require 'lem.http'

local function sleep(s) utils.sleeper():sleep(s) end

-- ---- server:shutdown() in this process ----
do
	local srv = assert(http.listen('127.0.0.1', 0, function(req, res)
		if req.path == '/slow' then sleep(0.3) end
		res:send(200, 'done ' .. req.path)
	end))
	local port = srv:port()
	local idle = assert(io.tcp.connect('127.0.0.1', port))
	idle:write('GET /first HTTP/1.1\r\nHost: x\r\n\r\n')
	local first = idle:read('*u', '\r\n\r\n')
	t.ok(first and first:find('200'), 'a first request on a kept-alive connection')
	idle:read(#'done /first')
	local slow = assert(io.tcp.connect('127.0.0.1', port))
	slow:write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n')
	sleep(0.05)                                   -- the slow request is in flight
	-- two kept-alive connections just answered: one waits for its next head, the other
	-- has sent a part of it
	local function answered(c, p)
		c:write('GET ' .. p .. ' HTTP/1.1\r\nHost: x\r\n\r\n')
		local h = c:read('*u', '\r\n\r\n', 2)
		return h and c:read(tonumber(h:match('Content%-Length: (%d+)')), 2)
	end
	local waiting = assert(io.tcp.connect('127.0.0.1', port))
	local begun = assert(io.tcp.connect('127.0.0.1', port))
	-- (their first request has no grace after it: the second has)
	t.is(answered(waiting, '/w'), 'done /w', 'a request on a second kept-alive connection')
	t.is(answered(begun, '/b'), 'done /b', 'and on a third')
	t.is(answered(waiting, '/w2'), 'done /w2', 'a second request on each')
	t.is(answered(begun, '/b2'), 'done /b2', '...')
	begun:write('GET /b3 HTTP/1.1\r\n')
	sleep(0.001)
	local t0 = utils.now()
	t.is(srv:shutdown(), true, 'server:shutdown() returns true')
	t.same({ idle:read('*a', 1) }, { '' }, 'the idle keep-alive connection is closed at once')
	t.same({ waiting:read('*a', 1) }, { '' }, 'so is the one that waits for its next head')
	t.ok(utils.now() - t0 < 0.5, '... at once', utils.now() - t0)
	begun:write('Host: x\r\n\r\n')
	local b2 = begun:read('*a', 2)
	t.ok(b2 and b2:find('Connection: close', 1, true) and b2:find('done /b3', 1, true),
		'a head begun is answered, with Connection: close', b2)
	local answer = slow:read('*a', 2)
	t.ok(answer and answer:find('Connection: close', 1, true) and answer:find('done /slow', 1, true),
		'the request in flight is answered whole, with Connection: close')
	t.is(select(2, io.tcp.connect('127.0.0.1', port, 1)), 'connection refused',
		'new connections are refused')
	t.error(function() srv:shutdown('x') end, "bad argument #1 to 'shutdown'", 'a bad timeout is an error')
end

-- ---- handlers still running when shutdown's timeout closes their connections ----
do
	local got, ran = {}, 0
	local srv = assert(http.listen('127.0.0.1', 0, function(req, res)
		if req.method == 'POST' then
			got.body = { req:body() }                      -- waits: the body is not all here
			got.read = { req:read() }
			got.start = { res:start(200) }
		else
			sleep(0.3)
			got.peer = { req:peer() }
			got.send = { res:send(200, 'late') }
		end
		ran = ran + 1
	end))
	local get = assert(io.tcp.connect('127.0.0.1', srv:port()))
	get:write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
	local post = assert(io.tcp.connect('127.0.0.1', srv:port()))
	post:write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc')
	sleep(0.05)
	t.is(srv:shutdown(0.1), true, 'server:shutdown(0.1) with two handlers running')
	t.ok(t.eventually(function() return ran == 2 end, 2), 'both handlers end, without an error')
	t.same(got.body, { nil, 'closed' }, 'req:body() whose connection the timeout closed: nil, closed')
	t.same(got.read, { nil, 'closed' }, 'req:read() after it: the same')
	t.same(got.start, { nil, 'closed' }, 'res:start() then: nil, closed')
	t.same(got.peer, { nil, 'closed' }, 'req:peer() after the close: nil, closed')
	t.same(got.send, { nil, 'closed' }, 'res:send() after the close: nil, closed')
	t.is(get:read('*a', 1), '', 'the clients see the end')
	get:close()
	post:close()
end

-- ---- a server closed or shut down before its listener's coroutine ran ----
do
	local closed = assert(http.listen('127.0.0.1', 0, function() end))
	local shut = assert(http.listen('127.0.0.1', 0, function() end))
	local ports = { closed:port(), shut:port() }
	t.is(closed:close(), true, 'server:close() right after http.listen')
	t.is(shut:shutdown(), true, 'server:shutdown() right after http.listen')
	sleep(0.05)                       -- their listeners' coroutines have run: no error
	t.is(select(2, io.tcp.connect('127.0.0.1', ports[1], 1)), 'connection refused',
		'the closed one refuses connections, and the process goes on')
	t.is(select(2, io.tcp.connect('127.0.0.1', ports[2], 1)), 'connection refused',
		'so does the one shut down')
end

-- ---- SIGTERM to a four-loop server ----
local dir = t.tmpdir()
local port = t.free_port()
-- A slow request is noted in the notes file, and answered 1.2 s after the shutdown began: it
-- is in flight at the signal however slowly the clients came, and the process lives on
-- well after "at once". Each loop notes when it hears the shutdown (after the server,
-- which closes its listener then).
local notes = dir .. '/notes'
local server = t.file(dir, 'server.lua', ([[
local http, utils, signal = require 'lem.http', require 'lem.utils', require 'lem.signal'
local function note(s) local f = io.open(%q, 'a') f:write(s, '\n') f:close() end
assert(http.listen('127.0.0.1', %d, function(req, res)
	if req.path == '/slow' then
		note('got')
		signal.wait('shutdown', 30)
		utils.sleeper():sleep(1.2)
	end
	res:send(200, 'answer ' .. req.path)
end))
utils.spawn(function() signal.wait('shutdown') note('heard') end)
print('listening')
io.stdout:flush()
]]):format(notes, port))
local function noted(what) return select(2, t.slurp(notes):gsub(what, '')) end
local pid, output, wait = t.background(dir, '--loops 4 ' .. server)
local up = select(2, wait('listening', 4):gsub('listening', '')) == 4
t.ok(up, 'four loops listen')

local idle = {}
for i = 1, 4 do
	local c = assert(io.tcp.connect('127.0.0.1', port))
	c:write('GET /fast HTTP/1.1\r\nHost: x\r\n\r\n')
	local h = c:read('*u', '\r\n\r\n')
	c:read(#'answer /fast')
	idle[i] = h and c
end
local results, clients, state = {}, 200, {}
for i = 1, clients do
	utils.spawn(function()
		state[i] = 'connecting'
		local c, err = io.tcp.connect('127.0.0.1', port, 2)
		if not c then results[#results + 1] = 'no connect: ' .. tostring(err) return end
		state[i] = 'writing'
		c:write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n')
		state[i] = 'reading'
		local a, e = c:read('*a', 30)
		results[#results + 1] = a or ('nothing: ' .. tostring(e))
		state[i] = 'done'
	end)
end
t.eventually(function() return noted('got') == clients end, 30)   -- every request is in flight
local signalled = utils.now()
os.execute('kill -TERM ' .. pid)
local closed = 0
for i = 1, #idle do
	local data = idle[i] and idle[i]:read('*a', 0.6)
	if data == '' then closed = closed + 1 end
end
t.is(closed, 4, 'the idle keep-alive connections are closed at once')
t.eventually(function() return noted('heard') == 4 end, 10)
t.is(select(2, io.tcp.connect('127.0.0.1', port, 1)), 'connection refused',
	'new connections are refused after the signal')
while #results < clients and utils.now() - signalled < 10 do sleep(0.02) end
local whole = 0
for _, r in ipairs(results) do
	if r:find('Connection: close', 1, true) and r:find('answer /slow', 1, true) then whole = whole + 1 end
end
t.is(whole, clients, 'every request in flight is answered whole, with Connection: close')
local status
repeat
	sleep(0.02)
	status = os.execute('kill -0 ' .. pid .. ' 2>/dev/null') ~= 0
until status or utils.now() - signalled > 10
local took = utils.now() - signalled
t.ok(status and took < 8, ('the process is gone %.2f s after SIGTERM (deadline 10 s)'):format(took))
t.ok(not output():find('deadline'), 'no deadline message')
-- ---- SIGTERM to a server under keep-alive load, many times ----
-- Clients send request after request on kept-alive connections. A drain that came as a
-- connection's read of its next head had returned, its coroutine not resumed yet, closed
-- the stream under it: lem.http then failed on it ("connection error ... closed stream"
-- on standard error) and dropped a request it had read.
local busy = t.file(dir, 'busy.lua', [[
local http = require 'lem.http'
assert(http.listen('127.0.0.1', tonumber(...), function(req, res) res:send(200, 'ok') end))
print('listening')
io.stdout:flush()
]])
local RUNS, bad = tonumber(os.getenv('SHUTDOWN_RUNS')) or 10, {}
for run = 1, RUNS do
	local bport = t.free_port()
	local bpid, boutput, bwait = t.background(dir, '--loops 2 ' .. busy .. ' ' .. bport)
	bwait('listening', 2)
	local stop, answers, running = false, 0, 0
	for _ = 1, 64 do
		utils.spawn(function()
			running = running + 1
			local c = io.tcp.connect('127.0.0.1', bport, 2)
			while c and not stop do
				if not c:write('GET /x HTTP/1.1\r\nHost: x\r\n\r\n') then break end
				local h = c:read('*u', '\r\n\r\n', 5)
				if not h or not c:read(2, 5) then break end
				answers = answers + 1
			end
			if c then c:close() end
			running = running - 1
		end)
	end
	t.eventually(function() return answers > 500 end, 10)
	os.execute('kill -TERM ' .. bpid)
	local gone = t.eventually(function() return os.execute('kill -0 ' .. bpid .. ' 2>/dev/null') ~= 0 end, 10)
	stop = true
	t.eventually(function() return running == 0 end, 10)
	local out = boutput()
	if not gone or out ~= 'listening\nlistening\n' then
		bad[#bad + 1] = ('run %d: %s, %d answers, output: %s'):format(run, gone and 'ended' or 'still running', answers, out)
	end
end
t.ok(#bad == 0, ('SIGTERM under keep-alive load: the server drains and ends quietly (%d runs)'):format(RUNS),
	table.concat(bad, '\n'))
t.done()
