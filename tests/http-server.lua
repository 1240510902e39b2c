-- lem.http's server, in this process, against lem's own client, raw sockets and curl.
local t = require 'tap'
local http = require 'lem.http'
local io = require 'lem.io'
local utils = require 'lem.utils'

local function sleep(s) utils.sleeper():sleep(s) end
local started = utils.now()

local logged = {}
local slept = {}
local forever
local handler = function(req, res)
	local p = req.path
	if p == '/fields' then                     -- what a handler sees in res: headers only
		local keys = {}
		for k in pairs(res) do
			if not tostring(k):find('^_') then keys[#keys + 1] = tostring(k) end
		end
		table.sort(keys)
		res:send(200, table.concat(keys, ','))
	elseif p == '/echo' then
		local body, err = req:body()
		if not body then return end            -- the server answered already
		res.headers['Content-Type'] = 'application/octet-stream'
		res:send(200, body)
	elseif p == '/stream' then                 -- the body piece by piece
		local n, pieces = 0, 0
		while true do
			local data = req:read()
			if not data then break end
			n, pieces = n + #data, pieces + 1
		end
		res:send(200, n .. ' bytes')
	elseif p == '/chunked' then
		res.headers['X-Mode'] = 'chunked'
		res:start(200)
		res:write('one,')
		res:write('two,', 'three')
		res:finish()
	elseif p == '/headers' then
		res:send(200, table.concat(req.headers:all('X-M'), '|') .. ';' ..
			tostring(req.headers['X-ONE']) .. ';' .. tostring(req.headers.nothing))
	elseif p == '/late' then                   -- req.headers asked for after the body
		local body = req:body()
		local h = req.headers
		res:send(200, body .. ';' .. tostring(h['x-pad'] and #h['x-pad']) .. ';' ..
			tostring(h == req.headers) .. ';' .. tostring(req.headers['X-One']))
	elseif p == '/error' then
		error('boom')
	elseif p == '/error-later' then            -- after a wait: its coroutine was woken
		sleep(0.01)
		error({ 'not a string' })
	elseif p == '/sleep' then
		sleep(0.3)
		slept[#slept + 1] = { res:send(200, 'late') }
	elseif p == '/peer' then
		local _, port = req:peer()
		res:send(200, tostring(port))
	elseif p == '/nothing' then
		return
	elseif p == '/forever' then                -- a chunked answer until a write fails
		res:start(200)
		local ok, err
		for _ = 1, 100000 do
			ok, err = res:write(string.rep('f', 16384))
			if not ok then break end
		end
		forever = { ok, err, res:write('more'), res:finish() }
	elseif p == '/big' then
		res:send(200, string.rep('x', 4 * 1048576))
	else
		res:send(200, req.method .. ' ' .. req.target .. ' ' .. req.version)
	end
end
local server = assert(http.listen('127.0.0.1', 0, handler, {
	max_body = 65536, header_timeout = 0.5, write_timeout = 0.5,
	log = function(msg) logged[#logged + 1] = msg end }))
local port = server:port()
local base = 'http://127.0.0.1:' .. port

-- a raw exchange: write text, read until the server closes
local function raw(text, timeout)
	local c = assert(io.tcp.connect('127.0.0.1', port, 2))
	c:write(text)
	local all, err = c:read('*a', timeout or 5)
	c:close()
	return all or err
end

-- curl in the background (a blocking popen would stop this loop, and the server with it)
local dir = t.tmpdir()
local ncurl = 0
local function curl(args)
	ncurl = ncurl + 1
	local out = dir .. '/curl' .. ncurl
	os.execute('(curl -s -S --max-time 10 ' .. args .. ' > ' .. out .. ' 2>&1; echo $? > ' ..
		out .. '.done) &')
	for _ = 1, 400 do
		local f = _G.io.open(out .. '.done')
		if f then
			local status = tonumber(f:read('*a'))
			f:close()
			local o = _G.io.open(out)
			local text = o:read('*a')
			o:close()
			return text, status
		end
		sleep(0.025)
	end
	return nil, 'curl did not end'
end

---------------------------------------------------------------- lem's client
local r = assert(http.request(base .. '/fields'))
t.is(r:body(), 'headers', 'res has no field of its own but headers (the rest begin with _)')
r = assert(http.request(base .. '/a/b?x=1&y'))
t.is(r.status, 200, 'GET: 200')
t.is(r:body(), 'GET /a/b?x=1&y 1.1', 'GET: method, target and version')
t.like(r.headers.date, '^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$', 'Date')
t.is(r.headers.Server, 'lem', 'Server, looked up in any case')
t.is(r.headers['content-length'], '18', 'Content-Length')

r = assert(http.request{ method = 'HEAD', url = base .. '/x' })
t.is(r.status, 200, 'HEAD: 200')
t.is(r.headers['content-length'], '11', 'HEAD: the length a GET would have')
t.is(r:body(), '', 'HEAD: no body')

r = assert(http.request{ method = 'POST', url = base .. '/echo', body = 'hello, world',
	headers = { ['Content-Type'] = 'text/plain' } })
t.is(r:body(), 'hello, world', 'POST with Content-Length: echoed')
t.is(r.headers['CONTENT-TYPE'], 'application/octet-stream', 'response field set by the handler')

local parts = { 'abc', '', 'defg', string.rep('z', 30000) }
local i = 0
r = assert(http.request{ method = 'POST', url = base .. '/stream',
	body = function() i = i + 1 return parts[i] end })
t.is(r:body(), '30007 bytes', 'POST with a chunked body (the client\'s iterator), read piece by piece')

r = assert(http.request(base .. '/chunked'))
t.is(r.headers['transfer-encoding'], 'chunked', 'res:start without a length: chunked')
t.is(r:body(), 'one,two,three', 'chunked response decoded by the client')

r = assert(http.request{ url = base .. '/headers', headers = { ['X-M'] = { 'a', 'b', 'c' }, ['x-one'] = 1 } })
t.is(r:body(), 'a|b|c;1;nil', 'headers:all, any case, a missing field')

-- a head longer than the parser's 2 KiB of C stack, its fields made when asked for
r = assert(http.request{ url = base .. '/late', method = 'POST', body = 'b',
	headers = { ['X-Pad'] = string.rep('p', 3000), ['x-one'] = 1 } })
t.is(r:body(), 'b;3000;true;1', 'req.headers made when asked for, after the body, once')

r = assert(http.request(base .. '/nothing'))
t.is(r.status, 200, 'a handler that sends nothing: 200')
t.is(r:body(), '', '... with an empty body')

-- keep-alive: the pooled connection serves the next requests
local ports = {}
for k = 1, 3 do
	r = assert(http.request(base .. '/peer'))
	ports[k] = r:body()
end
t.ok(ports[1] == ports[2] and ports[2] == ports[3], 'keep-alive: three requests on one connection')

---------------------------------------------------------------- raw clients
local function statuses(text)
	local list = {}
	for code in text:gmatch('HTTP/1%.1 (%d%d%d)') do list[#list + 1] = code end
	return table.concat(list, ' ')
end

local batch = {}
for k = 1, 100 do
	batch[k] = 'GET /n' .. k .. ' HTTP/1.1\r\nHost: x\r\n' ..
		(k == 100 and 'Connection: close\r\n' or '') .. '\r\n'
end
local text = raw(table.concat(batch))
local order, ok = 0, true
for n in text:gmatch('GET /n(%d+) 1%.1') do
	order = order + 1
	if tonumber(n) ~= order then ok = false end
end
t.ok(ok and order == 100, '100 pipelined requests in one write: answered in order', order)
t.like(text, 'Connection: close\r\n\r\nGET /n100 1%.1$', 'the last one closes the connection')

text = raw('GET /ten HTTP/1.0\r\n\r\n')
t.like(text, '^HTTP/1%.1 200 OK\r\n.*\r\n\r\nGET /ten 1%.0$', 'HTTP/1.0: answered, then closed')
text = raw('GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n')
t.is(statuses(text), '200 200', 'HTTP/1.0 keep-alive: the connection carries a second request')
t.like(text, 'Connection: keep%-alive\r\n', '... and says so')

text = raw('POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' ..
	'5\r\nhello\r\n3;ext=1\r\n, w\r\n0\r\nTrailer: x\r\n\r\n' ..
	'GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
t.like(text, '^HTTP/1%.1 200.-\r\n\r\nhello, wHTTP/1%.1 200.-GET /after 1%.1$',
	'a chunked request body (extension, trailer), then the next request')

text = raw('POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789' ..
	'GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
t.like(text, 'GET /next 1%.1$', 'an unread body is drained and the next request served')

-- 100-continue: sent when the handler first reads the body, not before
do
	local c = assert(io.tcp.connect('127.0.0.1', port, 2))
	c:write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n')
	local line = c:read('*u', '\r\n\r\n', 2)
	t.is(line, 'HTTP/1.1 100 Continue\r\n\r\n', 'Expect: 100-continue: 100 Continue')
	c:write('ping')
	local head = c:read('*u', '\r\n\r\n', 2)
	t.like(head, '^HTTP/1%.1 200', '... then the answer')
	t.is(c:read(4, 2), 'ping', '... to the body sent after it')
	c:close()
	c = assert(io.tcp.connect('127.0.0.1', port, 2))
	c:write('POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n')
	text = c:read('*a', 3)
	c:close()
	t.ok(text and not text:find('100 Continue') and text:find('Connection: close'),
		'a handler that does not read: no 100, and the connection closes', text)
end

---------------------------------------------------------------- hostile clients
text = raw('GET / HTTP/1.1\r\nHost: x\r\nX-Big: ' .. string.rep('a', 1048576) .. '\r\n\r\n')
t.like(text, '^HTTP/1%.1 431 ', '1 MB of header: 431')
local many = {}
for k = 1, 101 do many[k] = 'X-' .. k .. ': v\r\n' end
text = raw('GET / HTTP/1.1\r\nHost: x\r\n' .. table.concat(many) .. '\r\n')
t.like(text, '^HTTP/1%.1 431 ', 'more than max_headers fields: 431')
for k = 1, 10000 do many[k] = 'X-' .. k .. ': v\r\n' end
text = raw('GET / HTTP/1.1\r\nHost: x\r\n' .. table.concat(many) .. '\r\n')
t.like(text, '^HTTP/1%.1 431 ', '10,000 fields: 431')
text = raw('GET /' .. string.rep('t', 9000) .. ' HTTP/1.1\r\nHost: x\r\n\r\n')
t.like(text, '^HTTP/1%.1 414 ', 'a target past max_target: 414')
text = raw('GET /' .. string.rep('t', 100000) .. ' HTTP/1.1\r\nHost: x\r\n\r\n')
t.like(text, '^HTTP/1%.1 414 ', 'a target past the whole head limit: 414 too')
text = raw('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n')
t.like(text, '^HTTP/1%.1 413 .*Connection: close', 'Content-Length past max_body: 413 before the handler')
local chunk = string.format('%x\r\n%s\r\n', 40000, string.rep('c', 40000))
text = raw('POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' ..
	chunk .. chunk .. '0\r\n\r\n')
t.like(text, '^HTTP/1%.1 413 ', 'a chunked body past max_body: 413')
text = raw('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n' ..
	'0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n')
t.like(text, '^HTTP/1%.1 400 ', 'Content-Length and Transfer-Encoding: 400')
t.ok(not text:find('smuggled'), '... and the connection closed: nothing smuggled')
text = raw('POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n')
t.like(text, '^HTTP/1%.1 400 ', 'a bad chunk size: 400')
text = raw('GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n')
t.like(text, '^HTTP/1%.1 501 ', 'a transfer coding other than chunked: 501')
text = raw('GET / HTTP/2.0\r\nHost: x\r\n\r\n')
t.like(text, '^HTTP/1%.1 505 ', 'HTTP/2.0 on an HTTP/1 connection: 505')
text = raw('GET / HTTP/1.1\r\nHost : x\r\n\r\n')
t.like(text, '^HTTP/1%.1 400 ', 'whitespace before a colon: 400')

do   -- slowloris: a head that never ends
	local c = assert(io.tcp.connect('127.0.0.1', port, 2))
	local t0 = t.now()
	c:write('GET / HTTP/1.1\r\nHost: x\r\n')
	sleep(0.2)
	c:write('X-Slow: 1\r\n')
	text = c:read('*a', 3)
	c:close()
	local dt = utils.now() - t0
	t.ok(text and text:find('^HTTP/1%.1 408 '), 'slowloris past header_timeout: 408', text)
	t.ok(dt > 0.4 and dt < 1.5, 'after header_timeout (0.5 s)', dt)
end

do   -- a client that never reads a 4 MB answer: write_timeout closes the connection
	local c = assert(io.tcp.connect('127.0.0.1', port, 2))
	c:write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n')
	sleep(1.2)
	local data, err = c:read('*a', 3)
	c:close()
	t.ok(not data or #data < 4 * 1048576, 'a client that does not read: cut off by write_timeout',
		data and #data or err)
end

local before = #logged
r = assert(http.request(base .. '/error'))
t.is(r.status, 500, 'a handler error: 500')
t.is(r.headers.connection, 'close', '... and the connection closed')
t.like(logged[before + 1], 'handler error: .*boom.*stack traceback', '... logged with its traceback')
r:close()
r = assert(http.request(base .. '/after-error'))
t.is(r.status, 200, 'the server goes on after a handler error')
r:close()

do   -- handler errors on many connections at once, before and after a wait, between answers
	local fds, logs, n, good = t.nfds(), #logged, 0, 0
	for i = 1, 40 do
		utils.spawn(function()
			local c = assert(io.tcp.connect('127.0.0.1', port, 2))
			local bad = i % 2 == 0 and '/error' or '/error-later'
			c:write('GET /a HTTP/1.1\r\nHost: x\r\n\r\n')
			local a = c:read('*u', '\r\n\r\n', 5)
			local body = a and c:read(tonumber(a:match('Content%-Length: (%d+)')), 5)
			c:write('GET ' .. bad .. ' HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n')
			local rest = c:read('*a', 5)
			c:close()
			if body == 'GET /a 1.1' and rest and rest:find('^HTTP/1.1 500') and
				rest:find('Connection: close') and not rest:find('HTTP/1.1', 2, true) then
				good = good + 1
			end
			n = n + 1
		end)
	end
	t.eventually(function() return n == 40 end, 10)
	t.is(good, 40, '40 connections: the answer before, then 500 and the end of the connection, nothing after')
	local errors, described = 0, 0
	for k = logs + 1, #logged do
		if logged[k]:find('^handler error: ') then errors = errors + 1 end
		if logged[k]:find('^handler error: %(error object is a table value%)\nstack traceback') then
			described = described + 1
		end
	end
	t.is(errors, 40, 'each error logged once')
	t.is(described, 20, 'an error value that is not a string logged as lem describes it, with its traceback')
	t.eventually(function() return t.nfds() == fds end)
	t.is(t.nfds(), fds, 'and every connection closed')
	r = assert(http.request(base .. '/after-errors'))
	t.is(r.status, 200, 'the server goes on')
	r:close()
end

do   -- a client that goes away while its handler sleeps
	local c = assert(io.tcp.connect('127.0.0.1', port, 2))
	c:write('GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n')
	c:close()
	t.eventually(function() return #slept == 1 end)
	t.is(#slept, 1, 'the handler woke up after its client left')
	r = assert(http.request(base .. '/still'))
	t.is(r.status, 200, 'and the server goes on')
	r:close()
end

do   -- a reset in the middle of a chunked answer: closing with unread input sends RST
	local c = assert(io.tcp.connect('127.0.0.1', port, 2))
	c:write('GET /forever HTTP/1.1\r\nHost: x\r\n\r\n')
	local head = c:read('*u', '\r\n\r\n', 2)
	t.like(head, 'Transfer%-Encoding: chunked', 'a long chunked answer starts')
	c:read(100000, 2)
	c:close()
	for _ = 1, 100 do
		if forever then break end
		sleep(0.02)
	end
	t.ok(forever and forever[1] == nil and forever[2], 'the reset: the handler\'s write fails', forever and tostring(forever[2]))
	t.ok(forever and forever[3] == nil and forever[4] == nil, '... and so do the writes after it')
	r = assert(http.request(base .. '/after-reset'))
	t.is(r.status, 200, 'the server goes on after a reset')
	r:close()
end

---------------------------------------------------------------- curl
local out, st = curl('-i ' .. base .. '/curl?q=1')
t.is(st, 0, 'curl GET: exit 0')
t.like(out, '^HTTP/1%.1 200 OK\r\n.*\r\n\r\nGET /curl%?q=1 1%.1$', 'curl GET')
out = curl('-i -X POST --data-binary "form data" ' .. base .. '/echo')
t.like(out, '\r\n\r\nform data$', 'curl POST with Content-Length')
out = curl('-i -H "Transfer-Encoding: chunked" --data-binary "piece" ' .. base .. '/echo')
t.like(out, '\r\n\r\npiece$', 'curl POST with a chunked body')
local file = t.file(dir, 'body', string.rep('0123456789', 5000))
out = curl('-i -H "Expect: 100-continue" --data-binary @' .. file .. ' ' .. base .. '/stream')
t.like(out, 'HTTP/1%.1 100 Continue.*HTTP/1%.1 200 OK.*50000 bytes$', 'curl Expect: 100-continue')
out = curl(base .. '/chunked')
t.is(out, 'one,two,three', 'curl reads a chunked answer')
out = curl('-I ' .. base .. '/')
t.like(out, '^HTTP/1%.1 200 OK\r\n.*Content%-Length: 10\r\n\r\n$', 'curl HEAD')
out = curl('-s ' .. base .. '/a ' .. base .. '/b ' .. base .. '/c')
t.is(out, 'GET /a 1.1GET /b 1.1GET /c 1.1', 'curl: three requests, keep-alive')
out = curl('-s --http1.0 ' .. base .. '/old')
t.is(out, 'GET /old 1.0', 'curl --http1.0')

---------------------------------------------------------------- a Unix socket
local path = dir .. '/http.sock'
local us = assert(http.listen_unix(path, function(req, res) res:send(200, 'unix ' .. req.path) end))
out = curl('--unix-socket ' .. path .. ' http://localhost/u')
t.is(out, 'unix /u', 'http.listen_unix, with curl')
us:close()

---------------------------------------------------------------- idle keep-alive connections
do   -- an idle connection keeps no coroutine: it waits in stream:idle until idle_timeout
	local ks = assert(http.listen('127.0.0.1', 0, function(req, res) res:send(200, req.path) end,
		{ idle_timeout = 0.4 }))
	local before = utils.stats()
	local c = assert(io.tcp.connect('127.0.0.1', ks:port()))
	local function get(p)
		c:write('GET ' .. p .. ' HTTP/1.1\r\nHost: x\r\n\r\n')
		local h = c:read('*u', '\r\n\r\n', 2)
		return h and c:read(tonumber(h:match('Content%-Length: (%d+)')), 2)
	end
	local function idle(n) return utils.stats().idle_streams == before.idle_streams + n end
	t.is(get('/k1'), '/k1', 'a kept-alive connection: first answer')
	t.ok(idle(1), '... after which it is an idle stream at once (a first request has no grace)')
	local now = utils.stats()
	t.is(now.parked_io, before.parked_io + 1, '... and no coroutine waits on it (the one more waiting is the new listener\'s)')
	t.is(get('/k2'), '/k2', 'the next request on it is served')
	t.ok(idle(0), '... and then it is not idle yet: it waits for the next head in a read (the grace)')
	t.ok(t.eventually(function() return idle(1) end, 2), 'then it is an idle stream again')
	t.is(get('/k3'), '/k3', 'the next request on it is served')
	t.ok(idle(1), '... and, as its last grace went by with nothing, it is idle again at once')
	-- a head begun within the grace, or when idle: the rest may take header_timeout
	local c2 = assert(io.tcp.connect('127.0.0.1', ks:port()))
	local function rest(x)
		x:write('Host: x\r\n\r\n')
		local h = x:read('*u', '\r\n\r\n', 2)
		return h and x:read(tonumber(h:match('Content%-Length: (%d+)')), 2)
	end
	c2:write('GET /g1 HTTP/1.1\r\n')
	t.is(rest(c2), '/g1', 'a second connection: first answer')
	c2:write('GET /g2 HTTP/1.1\r\n')
	t.is(rest(c2), '/g2', '... and second')
	c2:write('GET /g3 HTTP/1.1\r\n')                -- within the grace
	c:write('GET /k4 HTTP/1.1\r\n')                 -- on an idle connection
	utils.sleeper():sleep(0.2)
	t.ok(idle(0), 'heads begun, within the grace or when idle: neither connection goes idle while the rest comes')
	t.is(rest(c2), '/g3', '... and both are served')
	t.is(rest(c), '/k4', '...')
	c2:close()
	t.ok(t.eventually(function() return idle(1) end, 2), 'then the connection is idle again')
	local t0 = utils.now()
	t.is(c:read('*a', 2), '', 'idle_timeout closes it')
	t.near(utils.now() - t0, 0.4, 0.25, '... after idle_timeout')
	t.ok(t.eventually(function() return utils.stats().idle_streams == before.idle_streams end, 2),
		'... and the idle stream is gone')
	c:close()
	ks:close()
end

---------------------------------------------------------------- limits at their defaults
do   -- each limit of docs/http.md at its default: the largest allowed is served, one more is not
	local ds = assert(http.listen('127.0.0.1', 0, function(req, res)
		res.headers.connection = 'close'
		res:send(200, 'ok')
	end))
	local function status(text)
		local c = assert(io.tcp.connect('127.0.0.1', ds:port(), 2))
		c:write(text)
		local all, err = c:read('*a', 5)
		c:close()
		return all and all:match('^HTTP/1%.1 (%d+)') or all or err
	end
	local function head(n)         -- a head of n bytes, its final empty line included
		local pre = 'GET / HTTP/1.1\r\nHost: x\r\nX-Pad: '
		return pre .. ('p'):rep(n - #pre - 4) .. '\r\n\r\n'
	end
	t.is(status(head(16384)), '200', 'a head of 16,384 bytes (max_header_bytes\' default): served')
	t.is(status(head(16385)), '431', '... one byte more: 431')
	local function fields(n)
		local f = { 'Host: x\r\n' }
		for k = 2, n do f[k] = 'X-' .. k .. ': v\r\n' end
		return 'GET / HTTP/1.1\r\n' .. table.concat(f) .. '\r\n'
	end
	t.is(status(fields(100)), '200', '100 field lines (max_headers\' default): served')
	t.is(status(fields(101)), '431', '... 101: 431')
	local function target(n) return 'GET /' .. ('t'):rep(n - 1) .. ' HTTP/1.1\r\nHost: x\r\n\r\n' end
	t.is(status(target(8192)), '200', 'a target of 8,192 bytes (max_target\'s default): served')
	t.is(status(target(8193)), '414', '... one byte more: 414')
	local function length(n) return 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ' .. n .. '\r\n\r\n' end
	t.is(status(length(8 * 1048576)), '200', 'a Content-Length of 8 MiB (max_body\'s default): the handler runs')
	t.is(status(length(8 * 1048576 + 1)), '413', '... one byte more: 413')
	ds:close()
end

---------------------------------------------------------------- bodies and timeouts
do
	local got = {}
	local bs = assert(http.listen('127.0.0.1', 0, function(req, res)
		if req.path == '/read' then got[#got + 1] = { req:body() } return end
		res:send(200, req.path)
	end, { max_body = 10, header_timeout = 0.3, body_timeout = 0.3, server = 'mine/1' }))
	local function exchange(text, pause, more)
		local c = assert(io.tcp.connect('127.0.0.1', bs:port(), 2))
		local t0 = utils.now()
		c:write(text)
		if pause then sleep(pause) c:write(more) end
		local all, err = c:read('*a', 5)
		c:close()
		return all or err, utils.now() - t0
	end
	local a = exchange('POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' ..
		'b\r\n' .. ('x'):rep(11) .. '\r\n0\r\n\r\n')
	t.like(a, '^HTTP/1%.1 413 .*\r\nConnection: close\r\n', 'a chunked body past max_body: 413 at once')
	t.same(got[1], { nil, 'body too large' }, '... and the read returns nil, \'body too large\'')
	local dt
	a, dt = exchange('POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc')
	t.like(a, '^HTTP/1%.1 408 .*\r\nConnection: close\r\n', 'a body that comes too slowly: 408, and the connection closes')
	t.same(got[2], { nil, 'timeout' }, '... and the read returns nil, \'timeout\'')
	t.near(dt, 0.3, 0.25, '... after body_timeout')
	a, dt = exchange('')
	t.like(a, '^HTTP/1%.1 408 .*\r\nConnection: close\r\n', 'a new connection that sends nothing: 408')
	t.near(dt, 0.3, 0.25, '... after header_timeout from its accept')
	a = exchange('GET /lf HTTP/1.1\nHost: x\n\n')
	t.like(a, '^HTTP/1%.1 408 ', 'a head with bare LF line ends is never complete: 408 after header_timeout')
	a = exchange('GET /lf HTTP/1.1\nHost: x\nX-Pad: ' .. ('p'):rep(17000) .. '\n\n')
	t.like(a, '^HTTP/1%.1 400 ', '... past max_header_bytes, with a bare LF among its first bytes: 400 (the parser sees it)')
	a = exchange('GET /lf HTTP/1.1\r\nHost: x\r\nX-Pad: ' .. ('p'):rep(17000) .. '\n\n')
	t.like(a, '^HTTP/1%.1 431 ', '... with its first bare LF past max_header_bytes: 431')
	a = exchange('GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
	t.like(a, '\r\nServer: mine/1\r\n', 'the server option: the Server field')
	bs:close()
	-- a timeout set to false: none
	local ns = assert(http.listen('127.0.0.1', 0, function(req, res) res:send(200, 'x') end,
		{ header_timeout = false }))
	local c = assert(io.tcp.connect('127.0.0.1', ns:port(), 2))
	c:write('GET / HTTP/1.1\r\n')
	t.same({ c:read('*a', 0.8) }, { nil, 'timeout' }, 'header_timeout = false: a head may take its time')
	c:write('Host: x\r\nConnection: close\r\n\r\n')
	t.like(c:read('*a', 2), '^HTTP/1%.1 200 ', '... and is served when it ends')
	c:close()
	ns:close()
end

do   -- a handler that fails after its answer started: no 500, the connection closes mid-answer
	local logs = {}
	local fs = assert(http.listen('127.0.0.1', 0, function(req, res)
		if req.path == '/pieces' then     -- the body's pieces, as req:read() gives them
			local total, largest = 0, 0
			while true do
				local piece = req:read()
				if not piece then break end
				total, largest = total + #piece, math.max(largest, #piece)
			end
			return res:send(200, total .. ' ' .. largest)
		end
		res:start(200)
		res:write('part')
		error('late failure')
	end, { log = function(msg) logs[#logs + 1] = msg end }))
	local fbase = 'http://127.0.0.1:' .. fs:port()
	local fr = assert(http.request(fbase .. '/'))
	t.is(fr.status, 200, 'a handler error after res:start: the answer already begun')
	t.same({ fr:body() }, { nil, 'closed' }, '... is cut short: the connection closes')
	t.like(logs[1], '^handler error: .*late failure', '... and the error is logged')
	fr = assert(http.request{ method = 'POST', url = fbase .. '/pieces', body = ('x'):rep(200000) })
	local total, largest = (fr:body() or ''):match('^(%d+) (%d+)$')
	t.ok(total == '200000' and tonumber(largest) <= 65536, 'req:read(): pieces of at most 64 KiB', largest)
	fs:close()
end

t.same({ http.listen_unix(dir .. '/no/such/dir/http.sock', handler) }, { nil, 'no such file or directory' },
	'http.listen_unix in a folder that does not exist: nil, message')

do   -- before closing on a client's error, what it still sends is read and dropped until it
	-- has been quiet for 50 ms (or 1 s, or 1 MiB): a slow sender is not cut off at once
	local ls = assert(http.listen('127.0.0.1', 0, function(req, res) res:send(200, 'x') end,
		{ max_body = 10 }))
	local c = assert(io.tcp.connect('127.0.0.1', ls:port(), 2))
	local t0 = utils.now()
	c:write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n')
	local sending = true
	utils.spawn(function()                  -- 100 bytes every 5 ms: never quiet for 50 ms
		while sending and c:write(('d'):rep(100)) do sleep(0.005) end
	end)
	local answer = c:read('*u', '\r\n\r\n', 5)
	c:read('*a', 5)                     -- the end: a close, or a reset after 1 s
	local dt = utils.now() - t0
	sending = false
	c:close()
	t.like(answer, '^HTTP/1%.1 413 ', 'a body past max_body, sent slowly: 413')
	t.ok(dt > 0.2 and dt < 2, '... and the connection closes after the linger, not at once', tostring(dt))
	ls:close()
end

do   -- res:flush(): a small answer held back for the pipeline goes out now
	local flushed
	local ps = assert(http.listen('127.0.0.1', 0, function(req, res)
		res:send(200, req.path)
		if req.path == '/first' then
			if req.query == 'flush' then flushed = { res:flush() } end
			sleep(0.3)
		end
	end))
	for _, q in ipairs({ 'flush', 'hold' }) do
		local c = assert(io.tcp.connect('127.0.0.1', ps:port(), 2))
		local t0 = utils.now()
		c:write('GET /first?' .. q .. ' HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n')
		local head = c:read('*u', '\r\n\r\n', 2)
		local dt = utils.now() - t0
		c:close()
		if q == 'flush' then
			t.ok(head and dt < 0.2, 'res:flush(): the answer held back for the pipeline goes out at once', dt)
			t.same(flushed, { true }, '... and flush returns true')
		else
			t.ok(head and dt > 0.25, 'without it, the answer waits for the pipeline\'s next', dt)
		end
	end
	ps:close()
end

do   -- an unread body of at most 256 KiB is read and dropped; a longer one closes the connection
	local us = assert(http.listen('127.0.0.1', 0, function(req, res) res:send(200, req.path) end))
	local function unread(n)
		local c = assert(io.tcp.connect('127.0.0.1', us:port(), 2))
		c:write('POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: ' .. n .. '\r\n\r\n' .. ('b'):rep(n),
			'GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
		local all, err = c:read('*a', 5)
		c:close()
		return all or err
	end
	local a = unread(262144)
	t.like(a, '^HTTP/1%.1 200 [^\n]*\r\nServer: lem\r\nDate: [^\r]*\r\nContent%-Length: 2\r\n\r\n/uHTTP/1%.1 200 .*/next$',
		'an unread body of 256 KiB: dropped, the connection goes on')
	a = unread(262145)
	t.like(a, '^HTTP/1%.1 200 .*\r\nConnection: close\r\n\r\n/u$',
		'an unread body of 256 KiB and one byte: its answer says Connection: close, and the connection ends')
	us:close()
end

-- http.listen's bad arguments: errors where it was called, nothing left listening
for _, bad in ipairs({ { 'header_timeout', 0 / 0 }, { 'write_timeout', 0 / 0 },
		{ 'idle_timeout', -1 }, { 'body_timeout', 0 / 0 }, { 'max_body', 0 / 0 },
		{ 'write_timeout', '5' }, { 'header_timout', 5 } }) do
	t.error(function() http.listen('127.0.0.1', 0, handler, { [bad[1]] = bad[2] }) end,
		'http%-server%.lua:%d+: ' .. (bad[1] == 'header_timout' and 'unknown option' or
			'bad option ' .. bad[1] .. ' %(' .. (type(bad[2]) == 'string' and 'number' or 'non%-negative')),
		'http.listen with ' .. bad[1] .. ' = ' .. tostring(bad[2]))
end
t.error(function() http.listen('127.0.0.1', 0, 'handler') end, "bad argument #3 to 'listen'",
	'a handler that is not a function')
t.error(function() local s = http.listen('127.0.0.1', 'abc', handler) return s end,
	"http%-server%.lua:%d+: bad argument #2 to 'listen' %(number expected, got string%)",
	'a port that is not a number: lem.io\'s error where http.listen was called')
t.error(function() local s = http.listen('127.0.0.1', 70000, handler) return s end,
	"http%-server%.lua:%d+: bad argument #2 to 'listen' %(port must be", 'a port past 65535')
t.error(function() local s = http.listen_unix('', handler) return s end,
	"http%-server%.lua:%d+: bad argument #1 to 'listen_unix' %(empty path%)", 'an empty Unix path')
t.error(function() local s = http.listen('127.0.0.1', 0, handler, { tls = 'x' }) return s end,
	'http%-server%.lua:%d+: bad option tls %(a context of io%.tls%.context expected%)',
	'a tls option that is not a context')

t.is(#logged, before + 1 + 40, 'nothing else logged (the errors above only)')
http.close_idle()
server:close()
t.ok(utils.now() - started < 20, 'the whole test is quick: no error close waits long', utils.now() - started)
t.done()
