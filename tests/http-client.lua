-- lem.http's client against hand-written servers: framings, 1xx, bad answers, timeouts,
-- the keep-alive pool, and servers that misbehave.
local t = require 'tap'
local http = require 'lem.http'
local io = require 'lem.io'
local utils = require 'lem.utils'

-- A server that answers each request (its head read whole) with answers[i] in turn;
-- an answer 'close' closes the connection instead, one that starts with '!' closes it
-- after writing the rest.
local answers, heads, accepted = {}, {}, 0
local listener = assert(io.tcp.listen('127.0.0.1', 0))
utils.spawn(function()
	listener:autospawn(function(c)
		accepted = accepted + 1
		while true do
			local head = c:read('*u', '\r\n\r\n', 5)
			if not head then break end
			heads[#heads + 1] = head
			local len = tonumber(head:match('\r\n[Cc]ontent%-[Ll]ength: (%d+)'))
			if len and len > 0 then heads[#heads] = head .. c:read(len, 5) end
			local a = table.remove(answers, 1)
			if a == nil or a == 'close' then break end
			if a:sub(1, 1) == '!' then c:write(a:sub(2)) break end
			if a ~= 'silent' then c:write(a) end
		end
		c:close()
	end)
end)
local base = 'http://127.0.0.1:' .. listener:port()

answers = { 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello' }
local r = assert(http.request{ url = base .. '/p?q', headers = { ['X-Test'] = 'yes' } })
t.is(r.status, 200, 'status')
t.is(r.reason, 'OK', 'reason')
t.is(r.headers['x-a'], '1', 'the first value of a field')
t.same(r.headers:all('X-A'), { '1', '2' }, 'every value')
t.is(r:body(), 'hello', 'a Content-Length body')
t.ok(rawget(r, 'headers') and r.headers == r.headers, 'r.headers made once, when first asked for')

answers = { 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-B: 1\r\nX-B: 2\r\n\r\nhi' }
local r2 = assert(http.request(base .. '/late'))
t.ok(rawget(r2, 'headers') == nil, 'not made before it is asked for')
t.is(r2:body(), 'hi', 'the body read first')
t.same(r2.headers:all('x-b'), { '1', '2' }, '... and the headers after it, every value')
t.like(heads[1], '^GET /p%?q HTTP/1%.1\r\nHost: 127%.0%.0%.1:%d+\r\n', 'request line and Host')
t.like(heads[1], 'X%-Test: yes\r\n', 'the caller\'s fields')

answers = { 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n' }
r = assert(http.request(base .. '/c'))
local got = {}
while true do
	local piece = r:read()
	if not piece then break end
	got[#got + 1] = piece
end
t.is(table.concat(got), 'abcde', 'a chunked body, piece by piece')
t.is(accepted, 1, 'both on one kept-alive connection')

-- a small body that came with its head: taken at once, the connection back in the pool
answers = { 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz',
	'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nuvw',
	'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n' }
r = assert(http.request(base .. '/s1'))
local r2 = assert(http.request(base .. '/s2'))
t.is(accepted, 1, 'a body read whole with its head leaves the connection free at once')
t.is(r:read(), 'xyz', 'its read gives the body')
t.same({ r:read() }, {}, '... then nil')
t.is(r:body(), '', '... and body() what is left: nothing')
t.is(r2:body(), 'uvw', 'body() gives it whole')
t.is(r2:body(), 'uvw', '... every time')
r = assert(http.request(base .. '/s3'))
t.ok(r:body() == '' and r:read() == nil, 'an empty body')

answers = { 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok' }
r = assert(http.request{ method = 'PUT', url = base .. '/u', body = 'data' })
t.is(r.status, 201, '1xx answers are skipped')
t.is(r:body(), 'ok', '... and the final one read')
t.like(heads[#heads], 'Content%-Length: 4\r\n\r\ndata$', 'a string body with its length')

answers = { '!HTTP/1.0 200 OK\r\n\r\nuntil the end' }
r = assert(http.request(base .. '/old'))
t.is(r.version, '1.0', 'an HTTP/1.0 answer')
t.is(r:body(), 'until the end', 'a body that runs until the connection closes')

-- a pooled connection the server has closed meanwhile: GET is tried again on a new one
answers = { 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1', 'close',
	'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2' }
assert(http.request(base .. '/1')):body()
r = assert(http.request(base .. '/2'))
t.is(r:body(), '2', 'a stale pooled connection: the request goes again on a new one')

answers = { 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n' }
local ok, err = http.request(base .. '/bad')
t.ok(not ok and err:find('^bad response'), 'both framings in an answer: refused', err)

answers = { 'silent' }
local t0 = t.now()
ok, err = http.request{ url = base .. '/slow', timeout = 0.2 }
t.is(err, 'timeout', 'no answer: timeout')
t.ok(utils.now() - t0 < 1, '... on time')

http.close_idle()
answers = { 'close' }
ok, err = http.request(base .. '/unanswered')
t.same({ ok, err }, { nil, 'closed' }, 'a new connection the server closes without an answer: nil, \'closed\'')

ok, err = http.request('http://127.0.0.1:1/')
t.is(err, 'connection refused', 'nobody listens: the connect error')
t.error(function() http.request('ftp://x/') end, 'bad url', 'only http URLs')

-- misbehaving servers
answers = { 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello', 'silent' }
r = assert(http.request{ url = base .. '/stall', read_timeout = 0.2 })
t0 = t.now()
t.same({ r:body() }, { nil, 'timeout' }, 'a body that stalls: read_timeout')
t.ok(utils.now() - t0 < 0.5, '... on time', utils.now() - t0)
answers = { '!HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello' }
r = assert(http.request(base .. '/cut'))
t.same({ r:body() }, { nil, 'closed' }, 'closed in the middle of a Content-Length body')
answers = { '!HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nab' }
r = assert(http.request(base .. '/cut-chunked'))
t.is(r:read(), 'hello', 'a chunked body: the first chunk')
t.same({ r:read() }, { nil, 'closed' }, '... then closed in the middle of the next')
answers = { 'garbage that is no HTTP\r\n\r\n' }
ok, err = http.request(base .. '/garbage')
t.like(err, '^bad response', 'garbage instead of a head: bad response')
answers = { string.rep('x', 70000) }
ok, err = http.request(base .. '/endless')
t.like(err, '^bad response', 'a head without end: bad response')
answers = { 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n' }
r = assert(http.request(base .. '/bad-chunk'))
ok, err = r:body()
t.ok(not ok and err, 'a bad chunk size: an error', err)

-- a listener whose backlog is full does not answer a connect: connect_timeout
local full = assert(io.tcp.listen('127.0.0.1', 0, 1))
local held = {}
for k = 1, 3 do held[k] = io.tcp.connect('127.0.0.1', full:port(), 0.2) end
t0 = t.now()
ok, err = http.request{ url = 'http://127.0.0.1:' .. full:port() .. '/', connect_timeout = 0.2,
	read_timeout = 5 }
t.is(err, 'timeout', 'a connect that does not complete: connect_timeout')
t.ok(utils.now() - t0 < 0.5, '... on time', utils.now() - t0)
for _, c in pairs(held) do c:close() end
full:close()
-- a server that takes the connection but never answers the TLS handshake: connect_timeout
do
	local mute = assert(io.tcp.listen('127.0.0.1', 0))
	local kept = {}
	utils.spawn(function()
		while true do
			local c = mute:accept()
			if not c then break end
			kept[#kept + 1] = c
		end
	end)
	t0 = t.now()
	ok, err = http.request{ url = 'https://127.0.0.1:' .. mute:port() .. '/', connect_timeout = 0.2,
		read_timeout = 5 }
	t.is(err, 'timeout', 'https: a TLS handshake that does not complete: connect_timeout')
	t.ok(utils.now() - t0 < 1, '... on time', utils.now() - t0)
	mute:close()
	for _, c in ipairs(kept) do c:close() end
end

-- A URL that would break the request line, a bad option or header: errors where
-- http.request was called, with no connection taken for them
local heads_before = #heads
for _, u in ipairs({ base .. '/a HTTP/1.1\r\nX-Injected: yes\r\nFoo: /b', base .. '/a b',
		base .. '/a\0b', base .. '/\127', 'http://127.0.0.1:65536/', 'http://127.0.0.1:0/' }) do
	t.error(function() http.request(u) end, 'http%-client%.lua:%d+: bad url',
		'a bad url: ' .. ('%q'):format(u):gsub('\\\n', '\\n'))
end
for _, bad in ipairs({ { 'timeout', 0 / 0 }, { 'read_timeout', -1 }, { 'connect_timeout', 0 / 0 },
		{ 'max_body', -5 }, { 'max_per_host', 0 }, { 'redirects', 0 / 0 } }) do
	t.error(function() http.request{ url = base .. '/', [bad[1]] = bad[2] } end,
		'http%-client%.lua:%d+: bad option ' .. bad[1] .. ' %(',
		'bad option ' .. bad[1] .. ' = ' .. tostring(bad[2]))
end
t.error(function() http.request{ url = base .. '/', headers = { ['bad name'] = 'x' } } end,
	'http%-client%.lua:%d+: invalid header name "bad name"', 'a bad header name')
t.error(function() http.request{ url = base .. '/', headers = { x = 'a\r\nb: c' } } end,
	'http%-client%.lua:%d+: invalid value for header x', 'a header value with CR LF')
t.error(function() http.request{ url = base .. '/', headers = { x = 'a\1b' } } end,
	'http%-client%.lua:%d+: invalid value for header x', 'a header value with another control character')
for _, bad in ipairs({ { 'idle_timeout', 0 / 0 }, { 'idle_timeout', nil }, { 'idle_timeout', -1 },
		{ 'max_per_host', 0 }, { 'max_per_host', '4' }, { 'max_idle_per_host', -1 },
		{ 'max_idle_per_host', 0 / 0 } }) do
	local saved = http[bad[1]]
	http[bad[1]] = bad[2]
	t.error(function() http.request(base .. '/') end,
		'http%-client%.lua:%d+: bad http.idle_timeout, http.max_per_host or http.max_idle_per_host',
		'http.' .. bad[1] .. ' = ' .. tostring(bad[2]) .. ': an error')
	http[bad[1]] = saved
end
t.is(#heads, heads_before, 'none of them sent anything')

-- A request that raises once its connection's place is taken (a connect where lem cannot
-- suspend) gives that place back: max_per_host such errors, then a request goes through
http.close_idle()
local saved = http.max_per_host
http.max_per_host = 2
local raised = 0
for _ = 1, 3 do
	answers = { 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok' }
	local fine, e = pcall(coroutine.wrap(function() return http.request(base .. '/wrapped') end))
	if not fine and tostring(e):find('cannot suspend here') then raised = raised + 1 end
end
t.is(raised, 3, 'http.request inside coroutine.wrap: cannot suspend here')
answers = { 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok' }
r, err = http.request{ url = base .. '/after', timeout = 2 }
t.is(r and r:body(), 'ok', '... and max_per_host is whole after them', err)
http.max_per_host = saved

-- After 101 the connection speaks another protocol: a response read to its end does not
-- put it back in the pool (the next request went out on it, answered in that protocol)
http.close_idle()
answers = { 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n',
	'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok' }
local before = accepted
r = assert(http.request(base .. '/switch'))
t.is(r.status, 101, 'a 101 answer')
t.is(r:body(), '', '... has no body')
r, err = http.request{ url = base .. '/after-101', timeout = 2 }
t.is(r and r:body(), 'ok', 'the next request is answered', err)
t.is(accepted, before + 2, '... on a new connection')

-- Reads after r:close() say closed
http.close_idle()
answers = { 'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n' .. ('x'):rep(100000) }
r = assert(http.request(base .. '/closed-then-read'))
t.is(r:close(), true, 'r:close() with a body unread')
t.same({ r:read() }, { nil, 'closed' }, 'r:read() after it: nil, closed')
t.same({ r:body() }, { nil, 'closed' }, 'r:body() after it: the same')
-- ... and so does a read waiting in a body that ends with the connection
answers = { 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart' }   -- then the server waits
r = assert(http.request(base .. '/close-while-read'))
local waiting
utils.spawn(function() waiting = { pcall(r.read, r) } end)   -- waits for more, or the end
utils.sleeper():sleep(0.05)
r:close()
utils.sleeper():sleep(0.05)
t.is(waiting and waiting[1], true, 'a read waiting in a body that ends with the connection, when r:close() comes: no error')
t.is(waiting and waiting[3], 'closed', '... returns nil, closed')

-- max_body bounds r:body(); r:read() streams a body of any length, chunked too
http.close_idle()
local big = ('y'):rep(3000)
local chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' ..
	('bb8\r\n' .. big .. '\r\n'):rep(3) .. '0\r\n\r\n'
answers = { chunked, chunked }
r = assert(http.request{ url = base .. '/stream', max_body = 1000 })
local got = 0
while true do
	local piece = r:read()
	if not piece then break end
	got = got + #piece
end
t.is(got, 9000, 'max_body = 1000: r:read() streams a chunked body of 9,000 bytes')
r = assert(http.request{ url = base .. '/whole', max_body = 1000 })
t.same({ r:body() }, { nil, 'body too large' }, '... and r:body() of the same: body too large')

-- A pooled connection the server resets just as the next request comes (it closed with
-- that request unread): the request is sent again on a new connection, as for a close
local resets, rl = 0, assert(io.tcp.listen('127.0.0.1', 0))
utils.spawn(function()
	rl:autospawn(function(c)
		resets = resets + 1
		c:read('*u', '\r\n\r\n', 5)
		c:write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
		utils.sleeper():sleep(0.2)    -- the next request comes meanwhile, unread: a reset
		c:close()
	end)
end)
local rbase = 'http://127.0.0.1:' .. rl:port() .. '/'
r = assert(http.request{ url = rbase, timeout = 5 })
t.is(r:body(), 'ok', 'a first request, its connection pooled')
utils.sleeper():sleep(0.05)
r, err = http.request{ url = rbase, timeout = 5 }
t.is(r and r:body(), 'ok', 'a second one, whose connection the server resets: sent again', err)
t.is(resets, 2, '... on a new connection')
-- ... but not when its method is not idempotent, or its body is a function
for _, case in ipairs({ { 'POST', 'x' }, { 'PATCH', 'x' }, { 'PUT', function() return nil end } }) do
	http.close_idle()
	utils.sleeper():sleep(0.25)      -- the server's end of the last one closed
	assert(http.request{ url = rbase, timeout = 5 }):body()
	utils.sleeper():sleep(0.05)
	local before = resets
	r, err = http.request{ method = case[1], url = rbase, body = case[2], timeout = 5 }
	t.ok(not r and err and resets == before, ('%s with a %s body on a connection the server resets: ' ..
		'its error, not sent again'):format(case[1], type(case[2])), err)
end
http.close_idle()
rl:close()

-- An answer that comes before the upload ends (413 to a body past max_body, then a
-- reset as the server closes with the body unread): that answer is the response
local small = assert(http.listen('127.0.0.1', 0, function(req, res) res:send(200, 'read') end,
	{ max_body = 1048576 }))
for _, size in ipairs({ 2 * 1048576, 20 * 1048576 }) do
	r, err = http.request{ method = 'POST', url = 'http://127.0.0.1:' .. small:port() .. '/up',
		body = ('x'):rep(size), timeout = 10 }
	t.is(r and r.status, 413, ('a %d MiB body past max_body: the server\'s 413'):format(size / 1048576), err)
	if r then r:close() end
end
http.close_idle()
small:close()

http.close_idle()
listener:close()
t.done()
