-- examples/api.lua (a JSON API on lua-cjson) and examples/proxy.lua (a proxy in front
-- of it), each run as its own lem process, queried by lem's client and by curl.
local t = require 'tap'
local http = require 'lem.http'
local cjson = t.require 'cjson'
if not cjson then return t.done() end
local src = os.getenv('LEM_SOURCE') or '.'

local pids = {}
local function start(args, name)
	local pid, output, wait = t.background(t.tmpdir(), args)
	pids[#pids + 1] = pid
	local out = wait('listening', 1)
	t.like(out, 'listening', name .. ' starts', out)
	return output
end

local api_port, proxy_port, dead_port, nowhere_port = t.free_port(), t.free_port(),
	t.free_port(), t.free_port()
start(src .. '/examples/api.lua ' .. api_port, 'examples/api.lua')
local proxy_output = start(src .. '/examples/proxy.lua http://127.0.0.1:' .. api_port .. ' ' ..
	proxy_port, 'examples/proxy.lua')
start(src .. '/examples/proxy.lua http://127.0.0.1:' .. dead_port .. ' ' .. nowhere_port, 'a proxy to nowhere')
local api = 'http://127.0.0.1:' .. api_port
local proxy = 'http://127.0.0.1:' .. proxy_port
local nowhere = 'http://127.0.0.1:' .. nowhere_port

local function json(method, url, body)
	local r, err = http.request{ method = method, url = url, body = body,
		headers = body and { ['content-type'] = 'application/json' } or nil, timeout = 5 }
	if not r then return nil, err end
	local text = r:body()
	local ok, value = pcall(cjson.decode, text ~= '' and text or 'null')
	return r, ok and value or text
end

---------------------------------------------------------------- the API
local r, v = json('GET', api .. '/items')
t.is(r and r.status, 200, 'GET /items: 200')
t.is(r and r.headers['content-type'], 'application/json', '... JSON')
t.same(v, {}, '... an empty list at first')
r, v = json('POST', api .. '/items', '{"name":"tea"}')
t.is(r and r.status, 201, 'POST /items: 201')
t.same(v, { id = 1, name = 'tea' }, '... the new item')
t.is(r and r.headers.location, '/items/1', '... and its Location')
r, v = json('POST', api .. '/items', cjson.encode{ name = 'coffee' })
r, v = json('GET', api .. '/items/2')
t.same(v, { id = 2, name = 'coffee' }, 'GET /items/2')
r, v = json('PUT', api .. '/items/2', '{"name":"espresso"}')
t.same(v, { id = 2, name = 'espresso' }, 'PUT /items/2')
r, v = json('DELETE', api .. '/items/1')
t.is(r and r.status, 204, 'DELETE /items/1: 204')
r, v = json('GET', api .. '/items/1')
t.is(r and r.status, 404, '... then GET /items/1: 404')
r, v = json('GET', api .. '/items')
t.same(v, { { id = 2, name = 'espresso' } }, 'GET /items: what is left')
r, v = json('POST', api .. '/items', '{"name":')
t.is(r and r.status, 400, 'bad JSON: 400')
r, v = json('PATCH', api .. '/items/2')
t.is(r and r.status, 405, 'a method without a route: 405')
t.is(r and r.headers.allow, 'GET, PUT, DELETE', '... with Allow')
r, v = json('GET', api .. '/nothing')
t.is(r and r.status, 404, 'an unknown path: 404')

---------------------------------------------------------------- the proxy
r, v = json('GET', proxy .. '/items')
t.same(v, { { id = 2, name = 'espresso' } }, 'GET through the proxy')
r, v = json('POST', proxy .. '/items', '{"name":"mate"}')
t.is(r and r.status, 201, 'POST through the proxy: 201')
t.same(v, { id = 3, name = 'mate' }, '... the body went on and the answer came back')
t.is(r and r.headers.location, '/items/3', '... with the upstream\'s fields')
local n = 0
r = assert(http.request{ method = 'PUT', url = proxy .. '/items/3', timeout = 5,
	body = function() n = n + 1 return ({ '{"name":', '"yerba mate"}' })[n] end })
local body, berr = r:body()
t.same(body and cjson.decode(body), { id = 3, name = 'yerba mate' }, 'a chunked request body through the proxy')
if not body then print('# ' .. r.status .. ' ' .. tostring(berr)) end
r, v = json('DELETE', proxy .. '/items/9')
t.is(r and r.status, 404, 'an upstream 404 comes through')
r, v = json('HEAD', proxy .. '/items/3')
t.is(r and r.status, 200, 'HEAD through the proxy')
t.is(r and r.headers['content-length'], '28', '... with the length a GET would have')
for _ = 1, 20 do json('GET', proxy .. '/items/3') end
r, v = json('GET', proxy .. '/items/3')
t.same(v, { id = 3, name = 'yerba mate' }, 'twenty requests more on kept-alive connections')

r, v = json('GET', nowhere .. '/items')
t.is(r and r.status, 502, 'an upstream nobody listens on: 502')
t.like(v, 'connection refused', '... saying why')

-- targets that are not a path: absolute-form is proxied by its path, '*' (OPTIONS) is 400
local lemio = require 'lem.io'
local function raw(text)
	local c = assert(lemio.tcp.connect('127.0.0.1', proxy_port, 2))
	c:write(text)
	local answer = c:read('*a', 5)
	c:close()
	return answer or ''
end
t.like(raw('GET http://127.0.0.1:' .. proxy_port .. '/items/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
	'^HTTP/1%.1 200 .*"yerba mate"', 'an absolute-form target: proxied by its path')
t.like(raw('OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), '^HTTP/1%.1 400 ',
	'OPTIONS *: 400, not proxied')
t.ok(not proxy_output():find('handler error'), 'no handler error logged by the proxy', proxy_output())

---------------------------------------------------------------- curl
local st, text = t.run('curl -s -S --max-time 10 -i ' .. proxy .. '/items/3')
t.is(st, 0, 'curl through the proxy: exit 0')
local function decoded(s)
	local ok, v = pcall(cjson.decode, s or '')
	return ok and v or s
end
t.like(text, '^HTTP/1%.1 200 OK\r\n.*content%-type: application/json\r\n', 'curl GET through the proxy')
t.same(decoded(text:match('\r\n\r\n(.*)$')), { id = 3, name = 'yerba mate' }, '... its body')
st, text = t.run('curl -s -S --max-time 10 -X POST -d \'{"name":"rooibos"}\' ' .. api .. '/items')
t.same(decoded(text), { id = 4, name = 'rooibos' }, 'curl POST to the API')
st, text = t.run('curl -s -S --max-time 10 -X POST -H "Transfer-Encoding: chunked" ' ..
	'-d \'{"name":"chai"}\' ' .. proxy .. '/items')
t.same(decoded(text), { id = 5, name = 'chai' }, 'curl POST with a chunked body through the proxy')
st, text = t.run('curl -s -S --max-time 10 -o /dev/null -w "%{http_code}" -X DELETE ' .. proxy .. '/items/4')
t.is(text, '204', 'curl DELETE through the proxy: 204')

for _, pid in ipairs(pids) do os.execute('kill ' .. pid) end
http.close_idle()
t.done()
