-- examples/server.lua, the main job on lem.http: HTTP answers, keep-alive, pipelining,
-- the framing checks as the server sees them, and with --loops 2 connections served by
-- both loops (SO_REUSEPORT spreads them).
local t = require 'tap'
local io = require 'lem.io'
local utils = require 'lem.utils'

local port = t.free_port()

local dir = t.tmpdir()
local server = (os.getenv('LEM_SOURCE') or '.') .. '/examples/server.lua'
local pid, output, wait = t.background(dir, '--loops 2 ' .. server .. ' ' .. port)
wait('listening', 2)
t.like(output(), 'loop 1: listening on http://127%.0%.0%.1:' .. port, 'loop 1 listens')
t.like(output(), 'loop 2: listening on http://127%.0%.0%.1:' .. port, 'loop 2 listens on the same port')

local function request(text)
	local c, err = io.tcp.connect('127.0.0.1', port, 5)
	if not c then return nil, err end   -- the server is gone: the checks say so
	c:write(text)
	local all = c:read('*a', 5)
	c:close()
	return all
end

local r = request('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
t.like(r, '^HTTP/1%.1 200 OK\r\n', 'GET / answers 200')
t.like(r, 'Content%-Length: 14\r\n', 'content-length framed')
t.like(r, '\r\n\r\nHello, World!\n$', 'body Hello, World!')
-- what TechEmpower's plaintext test asks of every answer
t.like(r, '\r\nServer: lem\r\n', 'a Server field')
t.like(r, '\r\n[Cc]ontent%-[Tt]ype: text/plain\r\n', 'a Content-Type field')
local date = r:match('\r\nDate: (%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT)\r\n')
t.ok(date, 'a Date field in the IMF-fixdate form', r)
utils.sleeper():sleep(1.1)
r = request('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
t.ok(date and r and r:find('\r\nDate: ') and not r:find(date, 1, true),
	'the Date changes with the second', r)

-- keep-alive and pipelining: three requests in one write, three answers in order
r = request('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /nothing HTTP/1.1\r\nHost: x\r\n\r\n' ..
	'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
local codes = {}
for code in r:gmatch('HTTP/1%.1 (%d+)') do codes[#codes + 1] = code end
t.same(codes, { '200', '404', '200' }, 'pipelined requests answered in order on one connection')
r = request('HEAD / HTTP/1.0\r\n\r\n')
t.ok(r:find('^HTTP/1%.1 200') and not r:find('Hello'), 'HEAD over HTTP/1.0: headers only, then closed')
r = request('BREW / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
t.like(r, '^HTTP/1%.1 405', 'other methods: 405')
r = request('nonsense\r\n\r\n')
t.like(r, '^HTTP/1%.1 400', 'a bad request line: 400')

-- request bodies are read and dropped, whatever frames them, and the next request follows
local post = 'POST /x HTTP/1.1\r\nHost: x\r\n'
r = request(post .. 'Content-Length: 5\r\n\r\nhello' .. 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
codes = {}
for code in r:gmatch('HTTP/1%.1 (%d+)') do codes[#codes + 1] = code end
t.same(codes, { '404', '200' }, 'a Content-Length body is skipped')
r = request(post .. 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a;ext=1\r\n' ..
	('z'):rep(26) .. '\r\n0\r\nTrailer: x\r\n\r\n' .. 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
codes = {}
for code in r:gmatch('HTTP/1%.1 (%d+)') do codes[#codes + 1] = code end
t.same(codes, { '404', '200' }, 'a chunked body (extensions, trailers) is skipped')
r = request(post .. 'Transfer-Encoding: chunked\r\n\r\nzz\r\n')
t.like(r, '^HTTP/1%.1 400', 'a bad chunk size: 400')
r = request(post .. 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello!!\r\n0\r\n\r\n')
t.like(r, '^HTTP/1%.1 400', 'a chunk longer than its size: 400')
r = request(post .. 'Transfer-Encoding: gzip\r\n\r\n')
t.like(r, '^HTTP/1%.1 400', 'a body whose last coding is not chunked: 400')

local GOOD = 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
local function alive()
	return os.execute('kill -0 ' .. pid .. ' 2>/dev/null') == 0
end

-- Framing that is not as RFC 9112 says: the answer (400, or 501 for a coding the server
-- does not know, 413 or 431 past a limit), then the connection closed; the server still
-- answers a good request on a new connection afterwards.
local function refused(head, code, name)
	local r = request(head)
	local want = '^HTTP/1%.1 ' .. code .. ' [%w ]+\r\n.*Connection: close\r\n\r\n[^\r\n]*\n$'
	local after = alive() and request(GOOD)
	t.ok(r and r:find(want) and after and after:find('^HTTP/1%.1 200 '), name,
		('answer: %q\nthen: %q\nserver output:\n%s'):format(tostring(r), tostring(after), output()))
end
local function body(fields) return post .. fields .. '\r\n\r\n' end
local function chunk(size) return body('Transfer-Encoding: chunked') .. size .. '\r\nhello\r\n0\r\n\r\n' end
for _, v in ipairs({ '1.5', 'inf', '1e300', '18446744073709551616', '0x10', '-1', '+5', '',
		'5 5' }) do
	refused(body('Content-Length: ' .. v), 400, ('Content-Length: %q: 400'):format(v))
end
refused(body('Content-Length: 1000000000000000'), 413, 'a Content-Length past max_body: 413')
refused(body('Content-Length: 5\r\nContent-Length: 6'), 400, 'two different Content-Lengths: 400')
refused(body('Content-Length: 5, 6'), 400, 'a Content-Length list of different values: 400')
refused(body('Content-Length: 5\r\nTransfer-Encoding: chunked'), 400, 'Content-Length, then Transfer-Encoding: 400')
refused(body('Transfer-Encoding: chunked\r\nContent-Length: 5'), 400, 'Transfer-Encoding, then Content-Length: 400')
refused(body('Transfer-Encoding: xchunked'), 400, 'Transfer-Encoding: xchunked: 400')
refused(body('Transfer-Encoding: chunked, gzip'), 400, 'chunked not the last coding: 400')
refused(body('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked'), 400, 'chunked twice: 400')
refused(body('Transfer-Encoding:'), 400, 'an empty Transfer-Encoding: 400')
refused(body('Transfer-Encoding: gzip, chunked'), 501, 'another coding before chunked: 501')
refused(body('Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked'), 501, 'another coding on an earlier line: 501')
refused('POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 400,
	'Transfer-Encoding in HTTP/1.0: 400')
for _, size in ipairs({ 'ffffffffffffffff', '1000000000000' }) do
	refused(chunk(size), 413, ('chunk size %q, past max_body: 413'):format(size))
end
for _, size in ipairs({ '5 x', '5x', '-5', '', '0x5', ' 5', '5;a\0' }) do
	refused(chunk(size), 400, ('chunk size %q: 400'):format(size))
end
refused(body('Transfer-Encoding: chunked') .. '5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n', 400,
	'a bare CR in a trailer: 400')
refused(body('X-A: a\rb'), 400, 'a bare CR in a field value: 400')
refused(body('X-A: a\r\n b'), 400, 'obs-fold: 400')
refused('POST /x HTTP/1.1\r\n X-A: a\r\nHost: x\r\n\r\n', 400, 'white space before the first field line: 400')
refused(body('Content-Length : 5'), 400, 'white space before the colon: 400')
refused(body('Host\t: x'), 400, 'a tab before the colon: 400')
refused(body('X-A: a\0b'), 400, 'a NUL in a field value: 400')
refused(body('No colon'), 400, 'a field line without a colon: 400')
refused(body(('X-A: a\r\n'):rep(100) .. 'X-B: b'), 431, 'more than 100 field lines: 431')
refused('GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'a bare CR in the request line: 400')
refused('GET / HTTP/1.1\r\n\r\n', 400, 'HTTP/1.1 without Host: 400')
refused('POST /x HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello' .. GOOD, 400, 'lines ended by LF alone: 400')

-- What RFC 9112 lets a server accept is accepted, and the next request follows.
local function accepted(text, name)
	local r = request(text .. GOOD)
	codes = {}
	for code in (r or ''):gmatch('HTTP/1%.1 (%d+)') do codes[#codes + 1] = code end
	t.ok(#codes == 2 and codes[1] == '404' and codes[2] == '200', name,
		('answer: %q'):format(tostring(r)))
end
accepted(body('Content-Length: 5\r\nContent-Length: 5') .. 'hello', 'identical Content-Lengths')
accepted(body('Content-Length: 5 , 5') .. 'hello', 'a Content-Length list of identical values')
accepted(body('Content-Length: 0005') .. 'hello', 'a Content-Length with leading zeros')
accepted(body('Transfer-Encoding: Chunked') .. '0005 ; a=b;c="d e"\r\nhello\r\n000\r\n\r\n',
	'chunked in capitals, a size with leading zeros, extensions with white space')
accepted(body('Transfer-Encoding: , chunked ,') .. '0\r\n\r\n', 'empty elements in Transfer-Encoding')
accepted(body('Content-Length: 200000') .. ('b'):rep(200000), 'a body larger than a piece')
accepted(body('Transfer-Encoding: chunked') .. '30001\r\n' .. ('b'):rep(0x30001) .. '\r\n0\r\n\r\n',
	'a chunk larger than a piece')
-- (a pattern that backtracks over them took seconds per 30 000 spaces)
accepted(body('Connection: a' .. (' '):rep(6000) .. 'b\r\nContent-Length: 0' .. (' '):rep(6000)),
	'long runs of white space in values are read in linear time')
refused(body('Content-Length: 5' .. (' '):rep(6000) .. '5'), 400,
	'long runs of white space in a bad Content-Length: 400 at once')
-- A head past lem.http's 16 KiB limit: the server answers and closes with the rest unread,
-- so the kernel may reset the connection before the client reads the answer.
local function too_long(head, code, name)
	local r = request(head)
	local after = alive() and request(GOOD)
	t.ok((r == nil or r:find('^HTTP/1%.1 ' .. code .. ' ')) and after and after:find('^HTTP/1%.1 200 '),
		name, ('answer: %q\nthen: %q\nserver output:\n%s'):format(tostring(r), tostring(after), output()))
end
too_long(body('X-Long: ' .. ('a'):rep(70000)), 431, 'a field line past 64 KiB: 431 (or a reset), and the server lives')
too_long('GET /' .. ('a'):rep(70000) .. ' HTTP/1.1\r\n\r\n', 414, 'a request line past 64 KiB: 414 (or a reset), and the server lives')

-- Random requests: framing field lines with values made of pieces that numbers, sizes and
-- codings are made of, some of them mutated further. The server may answer, wait or
-- close; it must never stop, nor log an error that its checks let through.
math.randomseed(9)
local function pick(list) return list[math.random(1, #list)] end
local pieces = { '0', '5', 'f', 'x', ',', ';a=b', ' ', '\t', '\r', '\0', '-', '+', '.5', 'e300',
	'ffffffffffffffff', '99999999999999999999', 'chunked', 'gzip' }
local function word()
	local w = ''
	for _ = 1, math.random(1, 3) do w = w .. pick(pieces) end
	return w
end
local function mutate(s)
	for _ = 1, math.random(1, 3) do
		local i = math.random(1, #s)
		local p = math.random() < 0.8 and pick(pieces) or string.char(math.random(0, 255))
		if math.random() < 0.5 then s = s:sub(1, i - 1) .. p .. s:sub(i)   -- insert
		else s = s:sub(1, i - 1) .. s:sub(i + math.random(1, 3)) end         -- delete
	end
	return s
end
local function garbage()
	local fields = {}
	for i = 1, math.random(0, 3) do
		fields[i] = pick({ 'Content-Length: ', 'Transfer-Encoding: ', 'Connection: ', 'Host: ' }) ..
			pick({ '5', 'chunked', 'close', word() }) .. '\r\n'
	end
	local s = pick({ 'POST /x HTTP/1.1', 'GET / HTTP/1.0', 'GET / HTTP/1.1' }) .. '\r\n' ..
		table.concat(fields) .. '\r\n' .. pick({ '', 'hello', word() .. '\r\nhello\r\n0\r\n\r\n' })
	return math.random() < 0.5 and mutate(s) or s
end
local sent = 0
for _ = 1, 200 do
	local c = io.tcp.connect('127.0.0.1', port, 5)
	if c then
		c:write(garbage())
		c:close()
		sent = sent + 1
	end
end
r = alive() and request(GOOD)
t.ok(sent == 200 and r and r:find('^HTTP/1%.1 200 ') and not output():find('error'),
	'200 random requests: the server still serves, and logged no error',
	('sent %d; then: %q\nserver output:\n%s'):format(sent, tostring(r), output()))

-- the spread over two loops
local seen = { 0, 0 }
for _ = 1, 200 do
	local body = request('GET /loop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'):match('\r\n\r\n(%d+)\n$')
	local n = tonumber(body)
	if n then seen[n] = (seen[n] or 0) + 1 end
end
t.is(seen[1] + seen[2], 200, 'every connection answered by loop 1 or loop 2')
t.ok(seen[1] > 0 and seen[2] > 0, 'both loops served connections (' .. seen[1] .. ' and ' .. seen[2] .. ')')

if os.getenv('LEM_SANITIZER') == 'tsan' then   -- ThreadSanitizer defers signals
	os.execute('kill -9 ' .. pid)
	t.skip('SIGTERM stops the server', 'signals are deferred under ThreadSanitizer')
else
	os.execute('kill ' .. pid)
	t0 = utils.now()
	while os.execute('kill -0 ' .. pid .. ' 2>/dev/null') == 0 and utils.now() - t0 < 5 do
		utils.sleeper():sleep(0.05)
	end
	t.ok(os.execute('kill -0 ' .. pid .. ' 2>/dev/null') ~= 0, 'SIGTERM stops the server')
end
t.done()
