-- lem.http's upgrade: a handler answers 101 and takes the connection over, here for a
-- tiny line echo protocol, from a raw socket and from lem's own client.
local t = require 'tap'
local http = require 'lem.http'
local io = require 'lem.io'
local utils = require 'lem.utils'

local function sleep(s) utils.sleeper():sleep(s) end

local refused, ended = {}, 0
local server = assert(http.listen('127.0.0.1', 0, function(req, res)
	local s, err = res:upgrade('echo', { ['X-Proto'] = 'v1' })
	if not s then
		refused[#refused + 1] = err
		res:send(426, err)
		return
	end
	-- the handler's coroutine runs the protocol: each line back in capitals
	while true do
		local line = s:read()
		if not line or line == 'quit' then break end
		s:write(line:upper(), '\n')
	end
	s:close()
	ended = ended + 1
end, { header_timeout = 0.3, idle_timeout = 0.3, write_timeout = 0.3 }))
local port = server:port()

local c = assert(io.tcp.connect('127.0.0.1', port, 2))
-- the first line of the new protocol comes in the same write as the head
c:write('GET /chat HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\n\r\nhello\n')
local head = c:read('*u', '\r\n\r\n', 2)
t.like(head, '^HTTP/1%.1 101 Switching Protocols\r\n', '101 Switching Protocols')
t.like(head, '\r\nUpgrade: echo\r\n', '... with Upgrade: the protocol')
t.like(head, '\r\nConnection: Upgrade\r\n', '... and Connection: Upgrade')
t.like(head, '\r\nx%-proto: v1\r\n', '... and the handler\'s fields (in lower case)')
t.is(c:read('*l', 2), 'HELLO', 'bytes sent right after the head belong to the new protocol')
c:write('more\n')
t.is(c:read('*l', 2), 'MORE', 'the echo protocol goes on')
sleep(0.5)   -- past header_timeout, idle_timeout and write_timeout
c:write('later\n')
t.is(c:read('*l', 2), 'LATER', 'lem.http\'s timeouts no longer apply')
server:shutdown()
c:write('drained\n')
t.is(c:read('*l', 2), 'DRAINED', 'a drain of the server leaves an upgraded connection alone')
c:write('quit\n')
t.is(c:read('*a', 2), '', 'the handler closes it when it is done')
c:close()
t.is(ended, 1, 'the handler ran to its end')

-- a second server: refusals, and lem's client
local after_answer
server = assert(http.listen('127.0.0.1', 0, function(req, res)
	if req.path == '/body' then
		local s, err = res:upgrade('echo')
		return res:send(400, err)
	elseif req.path == '/sent' then    -- an answer first, then the upgrade
		res:send(200, 'answered')
		after_answer = { res:upgrade('echo') }
		return
	end
	local s, err = res:upgrade('echo')
	if not s then return res:send(426, err) end
	s:write('welcome\n')
	while true do
		local line = s:read()
		if not line then break end
		s:write(line:upper(), '\n')
	end
	s:close()
end))
port = server:port()
local base = 'http://127.0.0.1:' .. port

local r = assert(http.request(base .. '/plain'))
t.is(r.status, 426, 'a request without Upgrade: res:upgrade refuses')
t.is(r:body(), 'not an upgrade request', '... saying why')
r = assert(http.request{ url = base .. '/x', headers = { Upgrade = 'echo' } })
t.is(r:body(), 'not an upgrade request', 'Upgrade without Connection: upgrade: refused')
c = assert(io.tcp.connect('127.0.0.1', port, 2))
c:write('GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n')
t.like(c:read('*a', 2), '^HTTP/1%.1 426 .*not an upgrade request$', 'HTTP/1.0: refused (RFC 9110 7.8)')
c:close()
r = assert(http.request{ method = 'POST', url = base .. '/body', body = 'unread',
	headers = { Connection = 'upgrade', Upgrade = 'echo' } })
t.is(r:body(), 'request body not read', 'a body left unread: refused')
r = assert(http.request{ url = base .. '/sent', headers = { Connection = 'upgrade', Upgrade = 'echo' } })
t.is(r:body(), 'answered', 'an upgrade after an answer: the answer went out')
t.same(after_answer, { nil, 'response already sent' }, '... and res:upgrade returned nil, \'response already sent\'')

r = assert(http.request{ url = base .. '/', headers = { Connection = 'Upgrade', Upgrade = 'echo' } })
t.is(r.status, 101, 'lem\'s client: 101')
t.is(r.headers.upgrade, 'echo', '... Upgrade: echo')
local s = assert(r:upgrade())
t.is(s:read('*l', 2), 'welcome', 'r:upgrade() gives the stream')
s:write('abc\n')
t.is(s:read('*l', 2), 'ABC', '... both ways')
s:close()
r = assert(http.request(base .. '/again'))
local ok, err = r:upgrade()
t.ok(not ok and err == 'not switching protocols', 'r:upgrade() on another status: refused', err)
r:close()

-- a handler that fails after it took the connection: logged as a handler error, and the
-- stream, the handler's, is left alone (here the test closes it)
local logged, taken = {}, nil
local failing = assert(http.listen('127.0.0.1', 0, function(req, res)
	taken = assert(res:upgrade('echo'))
	error('broken protocol')
end, { log = function(m) logged[#logged + 1] = m end }))
c = assert(io.tcp.connect('127.0.0.1', failing:port(), 2))
c:write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n')
t.like(c:read('*u', '\r\n\r\n', 2), '^HTTP/1%.1 101 ', 'a handler that fails after the upgrade: 101 went out')
t.ok(t.eventually(function() return #logged == 1 end, 2) and logged[1]:find('^handler error: .*broken protocol'),
	'... its error is logged as a handler error', logged[1])
taken:write('still mine\n')
t.is(c:read('*l', 2), 'still mine', '... and the stream stays open, the handler\'s')
taken:close()
c:close()
failing:close()

-- Upgraded connections that both ends closed leave nothing behind: 1.25 KiB of each
-- stayed in lem.http's table of handed streams (a weak key that its value held)
local done_up = 0
local churn = assert(http.listen('127.0.0.1', 0, function(req, res)
	local s = assert(res:upgrade('echo'))
	while s:read() do end
	s:close()
	done_up = done_up + 1
end))
local function upgrades(n)
	for _ = 1, n do
		local u = assert(io.tcp.connect('127.0.0.1', churn:port(), 2))
		u:write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n')
		assert(u:read('*u', '\r\n\r\n', 2))
		u:close()
	end
end
upgrades(200)
t.eventually(function() return done_up == 200 end, 5)
collectgarbage() collectgarbage()
local kib = collectgarbage('count')
upgrades(1000)
t.ok(t.eventually(function() return done_up == 1200 end, 10), '1,200 upgraded connections end')
collectgarbage() collectgarbage()
t.ok(collectgarbage('count') - kib < 300, 'and the last 1,000 left under 300 KiB behind them',
	('%.0f KiB'):format(collectgarbage('count') - kib))
churn:close()

http.close_idle()
server:close()
t.done()
