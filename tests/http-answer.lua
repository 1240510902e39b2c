-- The head of lem.http's answers, byte for byte (docs/http.md, "The response"): Server and
-- Date unless the handler set them (false leaves one out), list values, the framing and
-- Connection fields that are lem.http's own, the names and values refused (header
-- injection) and the statuses, each an error where the handler called, and a second
-- answer refused. The same answer given again, and answers that differ, each exact.
local t = require 'tap'
local http = require 'lem.http'
local io = require 'lem.io'

local logged = {}
local twice                  -- what a second res:send returned
local cases = {
	['/plain'] = function(res) res:send(200, 'same') end,
	['/type'] = function(res)
		res.headers['Content-Type'] = 'text/plain'
		res:send(200, 'typed')
	end,
	['/noserver'] = function(res)
		res.headers.server = false
		res.headers.date = false
		res:send(200, 'bare')
	end,
	['/ownserver'] = function(res)
		res.headers.Server = 'mine'
		res.headers.Date = 'Thu, 01 Jan 1970 00:00:00 GMT'
		res:send(200, 'own')
	end,
	['/list'] = function(res)
		res.headers['Set-Cookie'] = { 'a=1', 'b=2' }
		res.headers['X-Number'] = 42
		res.headers['X-Gone'] = false
		res:send(200, 'list')
	end,
	['/framing'] = function(res)          -- lem.http's own fields: not sent as set
		res.headers['Content-Length'] = 999
		res.headers['Transfer-Encoding'] = 'gzip'
		res.headers['Connection'] = 'keep-alive'
		res:send(200, 'framed')
	end,
	['/close'] = function(res)
		res.headers.Connection = 'close'
		res:send(200, 'closing')
	end,
	['/crlf'] = function(res)
		res.headers['X-Bad'] = 'a\r\nInjected: yes'
		res:send(200, 'never')
	end,
	['/name'] = function(res)
		res.headers['Bad Name'] = 'x'
		res:send(200, 'never')
	end,
	['/number'] = function(res) res:send(200, 42) end,
	['/nobody'] = function(res) res:send(204, 'dropped') end,
	['/notmodified'] = function(res) res:send(304, 'dropped') end,
	['/none'] = function(res) res:send(200) end,
	['/inline'] = function(res) res:send(200, string.rep('i', 16384)) end,   -- in the head's string
	['/apart'] = function(res) res:send(200, string.rep('a', 16385)) end,    -- a write of its own
	['/table'] = function(res) res:send(200, {}) end,
	['/status'] = function(res) res:send(99, 'never') end,
	['/fraction'] = function(res) res:send(200.5) end,
	['/startstatus'] = function(res) res:start(1000) end,
	['/twice'] = function(res)
		res:send(200, 'first')
		local ok, err = res:send(200, 'second')
		twice = { ok, err }
	end,
	['/listcrlf'] = function(res)
		res.headers['X-List'] = { 'fine', 'bad\nvalue' }
		res:send(200, 'never')
	end,
}
local server = assert(http.listen('127.0.0.1', 0, function(req, res)
	return cases[req.path](res)
end, { log = function(msg) logged[#logged + 1] = msg end }))
local port = server:port()

-- Sends each target's GET on one connection (HTTP/1.1) and reads the answers: a list of
-- { head, body }; stops at the connection's end. Then what came after them until the end
-- of the connection, unless open (the connection is expected to stay open: no wait).
local function exchange(targets, open)
	local c = assert(io.tcp.connect('127.0.0.1', port, 2))
	local out = {}
	for _, target in ipairs(targets) do
		assert(c:write('GET ', target, ' HTTP/1.1\r\nHost: x\r\n\r\n'))
		local head = c:read('*u', '\r\n\r\n', 5)
		if not head then break end
		local len = tonumber(head:match('\r\nContent%-Length: (%d+)\r\n'))
		out[#out + 1] = { head, len and c:read(len, 5) }
	end
	local rest = not open and c:read('*a', 5)
	c:close()
	return out, rest
end

local DATE = '%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT'
local function plain_head(body)
	return '^HTTP/1%.1 200 OK\r\nServer: lem\r\nDate: ' .. DATE ..
		'\r\nContent%-Length: ' .. #body .. '\r\n\r\n$'
end

local got = exchange({ '/plain', '/plain', '/type', '/plain', '/noserver', '/plain' }, true)
t.is(#got, 6, 'six answers on one connection')
for i, n in ipairs({ 1, 2, 4, 6 }) do
	t.like(got[n][1], plain_head('same'), 'the same answer again, whole (' .. i .. ')')
	t.is(got[n][2], 'same', '... and its body (' .. i .. ')')
end
t.like(got[3][1], '^HTTP/1%.1 200 OK\r\nServer: lem\r\nDate: ' .. DATE ..
	'\r\ncontent%-type: text/plain\r\nContent%-Length: 5\r\n\r\n$',
	'a field of the handler\'s, after Server and Date')
t.is(got[3][2], 'typed', '... its body')
t.is(got[5][1], 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n',
	'server = false and date = false leave both out')

got = exchange({ '/ownserver', '/list', '/framing' }, true)
local h = got[1][1]
t.like(h, '\r\nserver: mine\r\n', 'the handler\'s own Server')
t.like(h, '\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n', '... and Date')
t.ok(select(2, h:lower():gsub('server:', '')) == 1 and select(2, h:lower():gsub('date:', '')) == 1,
	'... once each', h)
t.like(got[2][1], '\r\nset%-cookie: a=1\r\nset%-cookie: b=2\r\n', 'a list value: one line each')
t.like(got[2][1], '\r\nx%-number: 42\r\n', 'a number value')
t.ok(not got[2][1]:lower():find('x-gone'), 'false leaves a field out')
t.is(got[3][2], 'framed', 'Content-Length, Transfer-Encoding, Connection set by the handler...')
t.ok(not got[3][1]:find('999') and not got[3][1]:find('gzip') and
	not got[3][1]:lower():find('connection'), '... are not sent', got[3][1])

local answers, rest = exchange({ '/close', '/plain' })
t.is(#answers, 1, 'Connection: close set by the handler: one answer')
t.like(answers[1][1], '\r\nConnection: close\r\n', '... saying close')
t.is(rest, '', '... and the connection ends')

got = exchange({ '/number' }, true)
t.is(got[1] and got[1][2], '42', 'a number body: sent as its text')

got = exchange({ '/nobody', '/notmodified', '/none', '/inline', '/apart', '/plain' }, true)
t.is(#got, 6, 'bodies of each kind: six answers on one connection')
t.like(got[1][1], '^HTTP/1%.1 204 No Content\r\nServer: lem\r\nDate: ' .. DATE .. '\r\n\r\n$',
	'204: no Content-Length, and the body given is not sent')
t.like(got[2][1], '^HTTP/1%.1 304 Not Modified\r\nServer: lem\r\nDate: ' .. DATE .. '\r\n\r\n$',
	'304: the same')
t.like(got[3][1], plain_head(''), 'no body: Content-Length: 0')
t.ok(got[4][2] == string.rep('i', 16384) and got[5][2] == string.rep('a', 16385),
	'a body at the inline limit and one past it, whole')
t.like(got[6][1], plain_head('same'), '... and the next answer after them')
local function head_of(target)
	local c = assert(io.tcp.connect('127.0.0.1', port, 2))
	assert(c:write('HEAD ', target, ' HTTP/1.1\r\nHost: x\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n'))
	local head = c:read('*u', '\r\n\r\n', 5)
	local next_head = c:read('*u', '\r\n\r\n', 5)
	c:close()
	return head, next_head
end
for _, target in ipairs({ '/inline', '/apart' }) do
	local head, next_head = head_of(target)
	t.like(head, '\r\nContent%-Length: ' .. (target == '/inline' and 16384 or 16385) .. '\r\n\r\n$',
		'HEAD ' .. target .. ': the length a GET would have')
	t.like(next_head, plain_head('same'), '... and no body: the next answer follows the head')
end

for _, case in ipairs({ { '/table', 'bad body %(string expected, got table%)' },
                        { '/status', 'http%-answer%.lua:%d+: bad status 99 %(200 to 599 expected%)' },
                        { '/fraction', 'http%-answer%.lua:%d+: bad status 200%.5 %(' },
                        { '/startstatus', 'http%-answer%.lua:%d+: bad status 1000 %(' },
                        { '/crlf', 'http%-answer%.lua:%d+: invalid value for header x%-bad' },
                        { '/name', 'invalid header name "bad name"' },
                        { '/listcrlf', 'invalid value for header x%-list' } }) do
	local n = #logged
	answers, rest = exchange({ case[1], '/plain' })
	t.like(answers[1] and answers[1][1], '^HTTP/1%.1 500 ', case[1] .. ': 500')
	t.ok(#answers == 1 and not (answers[1][1] .. (rest or '')):find('Injected'),
		'... nothing of the value sent, and the connection ends')
	t.like(logged[n + 1], case[2], '... the handler\'s error logged')
end

got = exchange({ '/twice', '/plain' }, true)
t.is(got[1] and got[1][2], 'first', 'the first res:send answers')
t.ok(twice and twice[1] == nil and twice[2] == 'response already sent',
	'... a second one returns nil, \'response already sent\'', twice and tostring(twice[2]))
t.is(got[2] and got[2][2], 'same', '... and the connection goes on')

got = exchange({ '/plain', '/type', '/plain' }, true)
t.like(got[3][1], plain_head('same'), 'after a different answer, the first again, whole')

server:close()
t.done()
