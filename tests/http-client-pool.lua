-- lem.http's client against lem.http's server: the pool under max_per_host, the
-- timeouts, redirects, and bodies read whole or piece by piece.
local t = require 'tap'
local http = require 'lem.http'
local utils = require 'lem.utils'

local function sleep(s) utils.sleeper():sleep(s) end

local seen = {}
local redirected_from                        -- the client's port of the last /rbody
local function handler(req, res)
	local p = req.path
	seen[#seen + 1] = req.method .. ' ' .. p
	if p == '/slow' then
		sleep(0.2)
		local _, port = req:peer()
		res:send(200, tostring(port))
	elseif p == '/drip' then                  -- five pieces, 0.1 s apart
		res:start(200)
		for i = 1, 5 do
			sleep(0.1)
			res:write(i)
		end
		res:finish()
	elseif p == '/big' then                   -- 8 MiB and the query's count of bytes more
		res:send(200, string.rep('B', 8 * 1048576 + tonumber(req.query)))
	elseif p == '/ftp' then                   -- a Location the client does not follow
		res.headers.location = 'ftp://127.0.0.1/file'
		res:send(301, 'elsewhere')
	elseif p == '/to' then                    -- a redirect to the query
		res.headers.location = req.query
		res:send(302)
	elseif p == '/jar' then
		res:send(200, tostring(req.headers.cookie) .. ' ' .. tostring(req.headers['proxy-authorization']))
	elseif p == '/port' then
		res:send(200, select(2, req:peer()))
	elseif p == '/rbody' then                 -- a redirect to /port with a body of the query's length
		redirected_from = select(2, req:peer())
		res.headers.location = '/port'
		res:send(302, string.rep('z', tonumber(req.query)))
	elseif p == '/cl' then
		res:send(200, req.method .. ' ' .. tostring(req.headers['content-length']))
	elseif p == '/s204' or p == '/s304' then
		res:send(tonumber(p:sub(3)))
	elseif p == '/length' then
		res:send(200, string.rep('L', 100000))
	elseif p == '/chunked' then
		res:start(200)
		for i = 1, 3 do res:write(string.rep(tostring(i), 1000)) end
		res:finish()
	elseif p:find('^/r%d%d%d') then           -- /r30x[/to]: a redirect to /to, or /target
		local to = p:match('^/r%d%d%d(/.*)$') or '/target'
		res.headers.location = to
		res:send(tonumber(p:sub(3, 5)), 'moved')
	elseif p == '/rel/a' then
		res.headers.location = 'b?x=1'
		res:send(302)
	elseif p == '/rel/dots/x' then
		res.headers.location = '../y/./z?q=1'
		res:send(301)
	elseif p == '/loop' then
		res.headers.location = '/loop'
		res:send(302)
	else
		res:send(200, req.method .. ' ' .. req.target .. ' ' .. (req:body() or '') .. ' ' ..
			tostring(req.headers.authorization) .. ' ' .. tostring(req.headers['content-type']))
	end
end
local server = assert(http.listen('127.0.0.1', 0, handler))
local base = 'http://127.0.0.1:' .. server:port()

---------------------------------------------------------------- the pool
local function parallel(n, make)
	local results, left = {}, n
	local main = utils.sleeper()
	for i = 1, n do
		utils.spawn(function()
			results[i] = { make(i) }
			left = left - 1
			if left == 0 then main:wakeup() end
		end)
	end
	main:sleep(10)
	return results
end

-- at the defaults: 32 connections to a host at most, 8 of them kept idle
do
	http.close_idle()
	local function round()
		local rs = parallel(40, function()
			local r, err = http.request{ url = base .. '/slow', timeout = 10 }
			if not r then return nil, err end
			return r:body()
		end)
		local ps, n = {}, 0
		for i = 1, 40 do
			local port = rs[i][1]
			if port and not ps[port] then ps[port], n = true, n + 1 end
		end
		return ps, n
	end
	local first, n = round()
	t.is(n, 32, '40 callers at once, http.max_per_host\'s default: 32 connections')
	local second, n2 = round()
	local kept = 0
	for port in pairs(second) do if first[port] then kept = kept + 1 end end
	t.ok(n2 == 32 and kept == 8, 'then 8 of them idle in the pool (http.max_idle_per_host\'s default), ' ..
		'lent again; the rest new', ('%d connections, %d kept'):format(n2, kept))
	http.close_idle()
end

local t0 = t.now()
local results = parallel(5, function()
	local r, err = http.request{ url = base .. '/slow', max_per_host = 2 }
	if not r then return nil, err end
	return r:body()
end)
local dt = utils.now() - t0
local ports, nports, good = {}, 0, 0
for i = 1, 5 do
	local port = results[i][1]
	if port then
		good = good + 1
		if not ports[port] then ports[port], nports = true, nports + 1 end
	end
end
t.is(good, 5, 'max_per_host = 2: five callers all answered')
t.ok(nports <= 2, '... on at most two connections', nports)
t.ok(dt > 0.55 and dt < 2, '... in three rounds of 0.2 s (the others waited)', dt)

-- a caller that cannot have a connection before its timeout
results = parallel(2, function(i)
	if i == 2 then sleep(0.02) end
	local t1 = t.now()
	local r, err = http.request{ url = base .. '/slow', max_per_host = 1, timeout = i == 2 and 0.1 or nil }
	if not r then return nil, err, utils.now() - t1 end
	return r:body()
end)
t.ok(results[1][1], 'max_per_host = 1: the first caller is answered')
t.is(results[2][2], 'timeout', '... the second times out waiting for the connection')
t.ok(results[2][3] and results[2][3] < 0.18, '... at its timeout', results[2][3])

-- a response not read: it keeps its connection until closed
local r1 = assert(http.request{ url = base .. '/length', max_per_host = 1 })
local got
utils.spawn(function()
	local r = http.request{ url = base .. '/x', max_per_host = 1, timeout = 2 }
	got = r and r:body()
end)
sleep(0.1)
t.is(got, nil, 'a body left unread holds the only connection')
r1:close()
t.eventually(function() return got end)
t.is(got, 'GET /x  nil nil', '... and r:close() lets the waiting caller go on')

-- a response dropped unread: once collected, its place under max_per_host is free
r1 = assert(http.request{ url = base .. '/length', max_per_host = 1 })
r1 = nil
collectgarbage()
collectgarbage()
local r2 = http.request{ url = base .. '/x', max_per_host = 1, timeout = 3 }
t.is(r2 and r2:body(), 'GET /x  nil nil', 'a response collected unread gives its connection\'s place back')

-- a body function that raises: the error goes to the caller, the connection is closed
local okc, e = pcall(http.request, { method = 'POST', url = base .. '/x', max_per_host = 1,
	body = function() error('no more', 0) end })
t.ok(not okc and e == 'no more', 'an error in the body function reaches the caller', e)
r1 = http.request{ url = base .. '/x', max_per_host = 1, timeout = 1 }
t.is(r1 and r1:body(), 'GET /x  nil nil', '... and its connection\'s place is free again')

---------------------------------------------------------------- timeouts
local r = assert(http.request{ url = base .. '/drip', read_timeout = 0.3 })
t.is(r:body(), '12345', 'read_timeout bounds each read: a slow body within it is read')
r = assert(http.request{ url = base .. '/drip', timeout = 0.25 })
local body, err = r:body()
t.is(err, 'timeout', 'timeout bounds the whole request: the same body fails')
r = assert(http.request{ url = base .. '/drip', read_timeout = 0.05 })
body, err = r:body()
t.is(err, 'timeout', 'a read_timeout shorter than the pauses: timeout')
do   -- a server that never reads: the request's write is bounded too
	local deaf = assert(require('lem.io').tcp.listen('127.0.0.1', 0))
	local held = {}
	utils.spawn(function()
		while true do
			local c = deaf:accept()
			if not c then break end
			held[#held + 1] = c
		end
	end)
	local url = 'http://127.0.0.1:' .. deaf:port() .. '/'
	local t0 = utils.now()
	local r2, err2 = http.request{ method = 'POST', url = url, read_timeout = 0.3,
		body = string.rep('b', 16 * 1048576) }
	local took = utils.now() - t0
	t.ok(r2 == nil and err2 == 'timeout', 'a body the server does not take: nil, \'timeout\'',
		tostring(err2))
	t.ok(took >= 0.25 and took < 5, '... after read_timeout', tostring(took))
	local piece = string.rep('c', 1048576)
	r2, err2 = http.request{ method = 'POST', url = url, timeout = 0.3,
		body = function() return piece end }
	t.ok(r2 == nil and err2 == 'timeout', 'a chunked body the same, under timeout',
		tostring(err2))
	deaf:close()
	for _, c in ipairs(held) do c:close() end
end

---------------------------------------------------------------- bodies
r = assert(http.request(base .. '/length'))
t.is(r.headers['content-length'], '100000', 'a Content-Length response')
body = r:body()
t.is(#body, 100000, '... read whole with r:body()')
r = assert(http.request(base .. '/length'))
local total, largest = 0, 0
while true do
	local piece = r:read()
	if not piece then break end
	total, largest = total + #piece, math.max(largest, #piece)
end
t.ok(total == 100000 and largest <= 65536, 'r:read(): pieces of at most 64 KiB', largest)
r = assert(http.request(base .. '/chunked'))
t.is(r.headers['transfer-encoding'], 'chunked', 'a chunked response')
local nextpiece, pieces = r:chunks(), {}
while true do
	local piece = nextpiece()
	if not piece then break end
	pieces[#pieces + 1] = piece
end
t.is(table.concat(pieces), string.rep('1', 1000) .. string.rep('2', 1000) .. string.rep('3', 1000),
	'... read piece by piece with r:chunks()')
r = assert(http.request{ url = base .. '/length', max_body = 1000 })
t.same({ r:body() }, { nil, 'body too large' }, 'max_body bounds r:body()')
r = assert(http.request(base .. '/big?0'))
local whole = r:body()
t.is(whole and #whole, 8 * 1048576, 'a body of 8 MiB (max_body\'s default): r:body() returns it')
r = assert(http.request(base .. '/big?1'))
t.same({ r:body() }, { nil, 'body too large' }, '... one byte more: nil, \'body too large\'')

---------------------------------------------------------------- redirects
r = assert(http.request(base .. '/r302'))
t.is(r.status, 302, 'redirects are not followed by default')
t.is(r:body(), 'moved', '... the 302 is the answer')
r = assert(http.request{ url = base .. '/r301', redirects = 1 })
t.is(r:body(), 'GET /target  nil nil', 'redirects = 1: a 301 is followed')
t.is(r.url, base .. '/target', '... r.url is where the answer came from')
r = assert(http.request{ method = 'POST', url = base .. '/r303', body = 'data', redirects = 1,
	headers = { ['Content-Type'] = 'text/plain' } })
t.is(r:body(), 'GET /target  nil nil', '303 after POST: GET, without the body and its fields')
r = assert(http.request{ method = 'POST', url = base .. '/r302', body = 'data', redirects = 1 })
t.is(r:body(), 'GET /target  nil nil', '302 after POST: GET too')
r = assert(http.request{ method = 'HEAD', url = base .. '/r303', redirects = 1 })
t.is(r.status, 200, '303 after HEAD: HEAD again')
t.is(seen[#seen], 'HEAD /target', '... to the new target')
r = assert(http.request{ method = 'POST', url = base .. '/r307', body = 'data', redirects = 1,
	headers = { ['Content-Type'] = 'text/plain' } })
t.is(r:body(), 'POST /target data nil text/plain', '307: the same method and body')
r = assert(http.request{ method = 'PUT', url = base .. '/r308', body = 'data', redirects = 1 })
t.is(r:body(), 'PUT /target data nil nil', '308: the same method and body')
local n = 0
r = assert(http.request{ method = 'POST', url = base .. '/r307', redirects = 1,
	body = function() n = n + 1 return n == 1 and 'once' or nil end })
t.is(r.status, 307, '307 with a body from a function: not followed (it cannot be sent again)')
r:close()
r = assert(http.request{ url = base .. '/rel/a', redirects = 1 })
t.is(r:body(), 'GET /rel/b?x=1  nil nil', 'a relative Location')
r = assert(http.request{ url = base .. '/rel/dots/x', redirects = 1 })
t.is(r:body(), 'GET /rel/y/z?q=1  nil nil', 'a relative Location with . and .. segments: removed')
r = assert(http.request{ url = base .. '/r303', body = 'data', redirects = 1,
	headers = { ['Content-Type'] = 'text/plain' } })
t.is(r:body(), 'GET /target  nil nil', '303 after a GET with a body: without the body and its fields')
n = 0
r = assert(http.request{ method = 'POST', url = base .. '/r303', redirects = 1,
	body = function() n = n + 1 return n == 1 and 'once' or nil end })
t.is(r:body(), 'GET /target  nil nil', '303 with a body from a function: followed, the body not sent again')
r = assert(http.request{ url = base .. '/loop', redirects = 3 })
t.is(r.status, 302, 'redirects = 3 on a loop: the fourth 302 is the answer')
local loops = 0
for i = #seen - 3, #seen do if seen[i] == 'GET /loop' then loops = loops + 1 end end
t.is(loops, 4, '... after four requests')
r:close()

local other = assert(http.listen('127.0.0.1', 0, handler))
local obase = 'http://127.0.0.1:' .. other:port()
r = assert(http.request{ url = base .. '/r302' .. '/x', redirects = 1,
	headers = { Authorization = 'Bearer s' } })
t.is(r:body(), 'GET /x  Bearer s nil', 'Authorization follows a redirect to the same host')
-- Location: an absolute URL to another port
local abs = assert(http.listen('127.0.0.1', 0, function(req, res)
	res.headers.location = obase .. '/there'
	res:send(301)
end))
r = assert(http.request{ url = 'http://127.0.0.1:' .. abs:port() .. '/', redirects = 2,
	headers = { Authorization = 'Bearer s' } })
t.is(r:body(), 'GET /there  nil nil', 'an absolute Location elsewhere: followed, without Authorization')

r = assert(http.request{ url = base .. '/to?' .. obase .. '/jar', redirects = 1,
	headers = { Cookie = 'a=1', ['Proxy-Authorization'] = 'p' } })
t.is(r:body(), 'nil nil', '... nor Cookie and Proxy-Authorization')
r = assert(http.request{ url = base .. '/to?/jar', redirects = 1,
	headers = { Cookie = 'a=1', ['Proxy-Authorization'] = 'p' } })
t.is(r:body(), 'a=1 p', 'both go to the same host and port')
r = assert(http.request{ url = base .. '/ftp', redirects = 3 })
t.ok(r.status == 301 and r.url == base .. '/ftp', 'a Location that is not http://: the 301 is the answer', r.url)
t.is(r:body(), 'elsewhere', '... with its body')
http.close_idle()
for _, case in ipairs({ { 65536, true }, { 65537, false } }) do
	r = assert(http.request{ url = base .. '/rbody?' .. case[1], redirects = 1 })
	local port = r:body()
	t.is(port == tostring(redirected_from), case[2], ('a followed redirect\'s body of %d bytes: %s'):format(case[1],
		case[2] and 'read and dropped, the connection goes on' or 'its connection closed'))
end
for _, m in ipairs({ 'POST', 'PUT', 'PATCH' }) do
	r = assert(http.request{ method = m, url = base .. '/cl' })
	t.is(r:body(), m .. ' 0', m .. ' without a body: Content-Length: 0')
end
r = assert(http.request{ method = 'DELETE', url = base .. '/cl' })
t.is(r:body(), 'DELETE nil', '... DELETE: none')
for _, p in ipairs({ '/s204', '/s304' }) do
	r = assert(http.request{ url = base .. p, timeout = 2 })
	t.same({ r.status, r:body() }, { tonumber(p:sub(3)), '' }, p:sub(3) .. ': no body')
end

t.error(function() http.request{ url = base, tmeout = 1 } end, 'unknown option tmeout', 'an unknown option raises')
t.error(function() http.request{ url = base, timeout = '1' } end, 'bad option timeout', 'a bad option raises')

---------------------------------------------------------------- idle pooled connections
-- (counted in descriptors of this process: the client's end of each and the server's)
http.close_idle()
-- the servers close their ends, and the /drip handlers of the requests that timed out end
-- (their connections close up to 0.6 s from now)
sleep(0.8)
local fd0 = t.nfds()
-- a server that closes its idle connections after 0.2 s
local quick = assert(http.listen('127.0.0.1', 0, handler, { idle_timeout = 0.2 }))
local qbase = 'http://127.0.0.1:' .. quick:port()
r = assert(http.request(qbase .. '/x'))
t.is(r:body(), 'GET /x  nil nil', 'a request to a server that closes idle connections')
t.is(t.nfds(), fd0 + 3, '... its connection stays open in the pool (a listener, two ends)')
t.eventually(function() return t.nfds() == fd0 + 1 end, 3)
t.is(t.nfds(), fd0 + 1, '... until the server closes it: the pool closes it at once')
r = assert(http.request(qbase .. '/x'))
t.is(r:body(), 'GET /x  nil nil', '... and the next request takes a new one')
quick:close()
http.close_idle()
-- the client's own idle_timeout
http.idle_timeout = 0.2
sleep(0.05)
fd0 = t.nfds()
r = assert(http.request(base .. '/x'))
t.is(r:body(), 'GET /x  nil nil', 'http.idle_timeout = 0.2: a request')
local t1 = t.now()
t.is(t.nfds(), fd0 + 2, '... leaves a connection in the pool')
t.eventually(function() return t.nfds() == fd0 end, 3)
t.is(t.nfds(), fd0, '... closed once idle that long')
t.ok(t.now() - t1 > 0.1, '... not before', t.now() - t1)
http.idle_timeout = false
fd0 = t.nfds()
r = assert(http.request(base .. '/x'))
r:body()
sleep(0.3)
t.is(t.nfds(), fd0 + 2, 'http.idle_timeout = false: the idle connection stays')
http.close_idle()
t.eventually(function() return t.nfds() == fd0 end, 3)
http.idle_timeout = 30
-- connections taken from the pool again are not closed under their new users
local idle0 = utils.stats().idle_streams
fd0 = t.nfds()
results = parallel(3, function() local x = http.request(base .. '/slow') return x and x:body() end)
results = parallel(3, function() local x = http.request(base .. '/slow') return x and x:body() end)
t.ok(results[1][1] and results[2][1] and results[3][1], 'pooled connections lent again serve their requests')
t.is(t.nfds(), fd0 + 6, '... on the same three connections')
t.ok(t.eventually(function() return utils.stats().idle_streams - idle0 == 6 end, 2),
	'... which wait idle at both ends (the server\'s once their grace for a next request passed)')
http.close_idle()
t.eventually(function() return t.nfds() == fd0 end, 3)
t.is(t.nfds(), fd0, 'close_idle: no pooled connection left')
-- the pool's waits keep no loop running: a script whose last request left a connection
-- in the pool ends at once (a server in another process that keeps the connection open)
local dir = t.tmpdir()
t.file(dir, 'server.lua', [[
local lemio = require 'lem.io'
local l = assert(lemio.tcp.listen('127.0.0.1', 0))
print(l:port()) io.stdout:flush()
local keep = {}
while true do
	local c = l:accept()
	if not c then break end
	keep[#keep + 1] = c
	c:read('*u', '\r\n\r\n')
	c:write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
end
]])
local pid, output = t.background(dir, dir .. '/server.lua')
local sport
t.eventually(function() sport = tonumber(output():match('^(%d+)\n')); return sport end, 30)
local t2 = t.now()
local st, text, errs = t.run(t.lem .. " -e \"local r = assert(require('lem.http').request('http://127.0.0.1:" ..
	tostring(sport) .. "/')) print((r:body()))\"")
t.ok(st == 0 and text == 'ok\n' and t.now() - t2 < 10, 'a script whose connection waits in the pool ends at once', text .. errs)
os.execute('kill ' .. tostring(pid) .. ' 2>/dev/null')

server:close()
other:close()
abs:close()
t.done()
