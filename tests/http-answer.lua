-- The head of lem.http's answers, byte for byte (docs/http.md, "The response"): Server and
-- Date unless the handler set them (false leaves one out), list values, the framing and
-- Connection fields that are lem.http's own, the names and values refused (header
-- injection) and the statuses, each an error where the handler called, and a second
-- answer refused. The same answer given again, and answers that differ, each exact.
local t = require 'tap'
local http = require 'lem.http'
local io = require 'lem.io'
local utils = require 'lem.utils'

local logged = {}
local twice                  -- what a second res:send returned
local seen = {}              -- what other second answers returned, by path
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
	['/twostarts'] = function(res)
		res:start(200)
		local ok, err = res:start(200)
		local ok2, err2 = res:send(200, 'x')
		res:finish('started')
		seen.twostarts = { ok, err, ok2, err2 }
	end,
	['/sendstart'] = function(res)
		res:send(200, 'sent')
		seen.sendstart = { res:start(200) }
	end,
	['/unfinished'] = function(res)        -- a started answer the handler leaves
		res.headers['content-length'] = 4
		res:start(200)
		res:write('half')
	end,
	['/ctl'] = function(res)
		res.headers['X-Bad'] = 'a\1b'
		res:send(200, 'never')
	end,
	['/del'] = function(res)
		res.headers['X-Bad'] = 'a\127b'
		res:send(200, 'never')
	end,
	['/tab'] = function(res)
		res.headers['X-Tab'] = 'a\tb'
		res:send(200, 'tab')
	end,
	['/listcrlf'] = function(res)
		res.headers['X-List'] = { 'fine', 'bad\nvalue' }
		res:send(200, 'never')
	end,
}
-- /v?status,body,field,value,close: an answer made of its query's parts (a part left
-- empty is not given), for the answers that answer() gives again unmade (http.c's memo)
cases['/v'] = function(res, req)
	local status, body, field, value, close = req.query:match('^(%d+),([^,]*),([^,]*),([^,]*),(%a*)$')
	if field ~= '' then res.headers[field] = value end
	if close ~= '' then res.headers.connection = 'close' end
	res:send(tonumber(status), body ~= '' and body or nil)
end
local server = assert(http.listen('127.0.0.1', 0, function(req, res)
	return cases[req.path](res, req)
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

-- Each answer as it should be, in an order where each differs from the one before it in
-- one argument only, then is the same again: each of them whole.
local memo = { '200,a,x-a,1,', '200,a,x-a,1,', '201,a,x-a,1,', '200,a,x-a,1,', '298,a,x-a,1,',
	'299,a,x-a,1,', '200,a,x-a,1,', '200,b,x-a,1,', '200,,x-a,1,', '200,a,x-a,1,',
	'200,a,x-a,2,', '200,a,x-b,2,', '200,a,,,', '200,a,x-a,1,', '200,a,x-a,1,close' }
got = exchange((function()
	local targets = {}
	for i, q in ipairs(memo) do targets[i] = '/v?' .. q end
	return targets
end)())
for i, q in ipairs(memo) do
	local status, body, field, value, close = q:match('^(%d+),([^,]*),([^,]*),([^,]*),(%a*)$')
	local want = '^HTTP/1%.1 ' .. status .. ' %a[%a ]*\r\nServer: lem\r\nDate: ' .. DATE .. '\r\n' ..
		(field ~= '' and field:gsub('%-', '%%-') .. ': ' .. value .. '\r\n' or '') ..
		'Content%-Length: ' .. #body .. '\r\n' .. (close ~= '' and 'Connection: close\r\n' or '') ..
		'\r\n$'
	t.like(got[i] and got[i][1], want, 'answer ' .. i .. ' of one connection: ' .. q)
	t.is(got[i] and got[i][2], body, '... and its body')
end
t.is(#got, #memo, '... and the one saying close is the last')
-- GET, HEAD, GET of the same: the HEAD's answer has no body; then an HTTP/1.0 GET that
-- asks for keep-alive: its answer says keep-alive.
do
	local c = assert(io.tcp.connect('127.0.0.1', port, 2))
	assert(c:write(('%s /v?200,abc,,, HTTP/1.1\r\nHost: x\r\n\r\n'):rep(3):format('GET', 'HEAD', 'GET'),
		'GET /v?200,abc,,, HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'))
	local heads = {}
	for i = 1, 4 do
		heads[i] = c:read('*u', '\r\n\r\n', 5)
		if i ~= 2 then heads[i] = heads[i] and heads[i] .. (c:read(3, 5) or '') end
	end
	c:close()
	t.like(heads[1], 'Content%-Length: 3\r\n\r\nabc$', 'GET: the body')
	t.like(heads[2], '^HTTP/1%.1 200 OK\r\n.*Content%-Length: 3\r\n\r\n$', '... HEAD of the same: its head')
	t.like(heads[3], '^HTTP/1%.1 200 OK\r\n.*Content%-Length: 3\r\n\r\nabc$', '... with no body: the next GET follows')
	t.like(heads[4], '\r\nContent%-Length: 3\r\nConnection: keep%-alive\r\n\r\nabc$',
		'... and the same for HTTP/1.0: Connection: keep-alive')
end
-- The same answer in the next second: its Date is that second's.
local first = exchange({ '/v?200,a,,,' }, true)
utils.sleeper():sleep(1.1)
local second = exchange({ '/v?200,a,,,' }, true)
t.ok(first[1] and second[1] and first[1][1]:match('Date: ([^\r]*)') ~= second[1][1]:match('Date: ([^\r]*)'),
	'the same answer 1.1 s later has another Date', second[1] and second[1][1])

for _, case in ipairs({ { '/table', 'bad body %(string expected, got table%)' },
                        { '/status', 'http%-answer%.lua:%d+: bad status 99 %(200 to 599 expected%)' },
                        { '/fraction', 'http%-answer%.lua:%d+: bad status 200%.5 %(' },
                        { '/startstatus', 'http%-answer%.lua:%d+: bad status 1000 %(' },
                        { '/crlf', 'http%-answer%.lua:%d+: invalid value for header x%-bad' },
                        { '/name', 'invalid header name "bad name"' },
                        { '/listcrlf', 'invalid value for header x%-list' },
                        { '/ctl', 'http%-answer%.lua:%d+: invalid value for header x%-bad' },
                        { '/del', 'http%-answer%.lua:%d+: invalid value for header x%-bad' } }) do
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

got = exchange({ '/twostarts' }, true)
t.like(got[1] and got[1][1], '\r\nTransfer%-Encoding: chunked\r\n', 'res:start, then a second start and a send: the start\'s answer')
t.same(seen.twostarts, { nil, 'response already sent', nil, 'response already sent' },
	'... the second start and the send returned nil, \'response already sent\'')
got = exchange({ '/sendstart', '/unfinished', '/tab', '/plain' }, true)
t.is(got[1] and got[1][2], 'sent', 'res:send, then res:start: the send\'s answer')
t.same(seen.sendstart, { nil, 'response already sent' }, '... and res:start returned nil, \'response already sent\'')
t.like(got[2] and got[2][1], '^HTTP/1%.1 200 OK\r\n.*Content%-Length: 4\r\n\r\n$',
	'a started answer the handler left unfinished...')
t.is(got[2] and got[2][2], 'half', '... is finished: the connection goes on')
t.like(got[3] and got[3][1], '\r\nx%-tab: a\tb\r\n', 'a tab in a value: sent (only other control characters are refused)')
t.like(got[4] and got[4][1], plain_head('same'), '... and the next answer after them')

got = exchange({ '/plain', '/type', '/plain' }, true)
t.like(got[3][1], plain_head('same'), 'after a different answer, the first again, whole')

server:close()
t.done()
