-- examples/server.lua, the main job: HTTP answers, keep-alive, pipelining, and with
-- --loops 2 connections served by both loops (SO_REUSEPORT spreads them).
local t = require 'tap'
local io = require 'lem.io'
local utils = require 'lem.utils'

-- a free port: one we can listen on ourselves
local port
for _ = 1, 20 do
	local p = math.random(20000, 60000)
	local l = io.tcp.listen('127.0.0.1', p)
	if l then l:close(); port = p; break end
end
assert(port, 'no free port')

local dir = os.tmpname()
os.remove(dir)
os.execute('mkdir -p ' .. dir)
local out = dir .. '/out'
local server = (os.getenv('LEM_SOURCE') or '.') .. '/examples/server.lua'
os.execute(t.lem .. ' --loops 2 ' .. server .. ' ' .. port .. ' > ' .. out .. ' 2>&1 & echo $! > ' .. dir .. '/pid')
local pid = assert(_G.io.open(dir .. '/pid')):read('*l')

local function output()
	local f = _G.io.open(out)
	local s = f and f:read('*a') or ''
	if f then f:close() end
	return s
end
local t0 = utils.now()
while select(2, output():gsub('listening', '')) < 2 and utils.now() - t0 < 10 do
	utils.sleeper():sleep(0.05)
end
t.like(output(), 'loop 1: listening on http://127%.0%.0%.1:' .. port, 'loop 1 listens')
t.like(output(), 'loop 2: listening on http://127%.0%.0%.1:' .. port, 'loop 2 listens on the same port')

local function request(text)
	local c = assert(io.tcp.connect('127.0.0.1', port, 5))
	assert(c:write(text))
	local all = c:read('*a', 5)
	c:close()
	return all
end

local r = request('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
t.like(r, '^HTTP/1%.1 200 OK\r\n', 'GET / answers 200')
t.like(r, 'Content%-Length: 14\r\n', 'content-length framed')
t.like(r, '\r\n\r\nHello, World!\n$', 'body Hello, World!')

-- keep-alive and pipelining: three requests in one write, three answers in order
r = request('GET / HTTP/1.1\r\n\r\nGET /nothing HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n')
local codes = {}
for code in r:gmatch('HTTP/1%.1 (%d+)') do codes[#codes + 1] = code end
t.same(codes, { '200', '404', '200' }, 'pipelined requests answered in order on one connection')
r = request('HEAD / HTTP/1.0\r\n\r\n')
t.ok(r:find('^HTTP/1%.1 200') and not r:find('Hello'), 'HEAD over HTTP/1.0: headers only, then closed')
r = request('BREW / HTTP/1.1\r\nConnection: close\r\n\r\n')
t.like(r, '^HTTP/1%.1 405', 'other methods: 405')
r = request('nonsense\r\n\r\n')
t.like(r, '^HTTP/1%.1 400', 'a bad request line: 400')

-- request bodies are read and dropped, whatever frames them, and the next request follows
local post = 'POST /x HTTP/1.1\r\n'
r = request(post .. 'Content-Length: 5\r\n\r\nhello' .. 'GET / HTTP/1.1\r\nConnection: close\r\n\r\n')
codes = {}
for code in r:gmatch('HTTP/1%.1 (%d+)') do codes[#codes + 1] = code end
t.same(codes, { '404', '200' }, 'a Content-Length body is skipped')
r = request(post .. 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a;ext=1\r\n' ..
	('z'):rep(26) .. '\r\n0\r\nTrailer: x\r\n\r\n' .. 'GET / HTTP/1.1\r\nConnection: close\r\n\r\n')
codes = {}
for code in r:gmatch('HTTP/1%.1 (%d+)') do codes[#codes + 1] = code end
t.same(codes, { '404', '200' }, 'a chunked body (extensions, trailers) is skipped')
r = request(post .. 'Transfer-Encoding: chunked\r\n\r\nzz\r\n')
t.like(r, '^HTTP/1%.1 400', 'a bad chunk size: 400')
r = request(post .. 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello!!\r\n0\r\n\r\n')
t.like(r, '^HTTP/1%.1 400', 'a chunk longer than its size: 400')
r = request(post .. 'Transfer-Encoding: gzip\r\n\r\n')
t.like(r, '^HTTP/1%.1 400', 'a body whose last coding is not chunked: 400')

-- the spread over two loops
local seen = { 0, 0 }
for _ = 1, 200 do
	local body = request('GET /loop HTTP/1.1\r\nConnection: close\r\n\r\n'):match('\r\n\r\n(%d+)\n$')
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
os.execute('rm -rf ' .. dir)
t.done()
