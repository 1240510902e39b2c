-- lem.http's server against an outside client: Python 3's http.client (keep-alive, a
-- chunked answer, POST bodies with a length and chunked, HEAD).
local t = require 'tap'
local http = require 'lem.http'
local utils = require 'lem.utils'

local server = assert(http.listen('127.0.0.1', 0, function(req, res)
	local p = req.path
	if p == '/peer' then
		local _, port = req:peer()
		res:send(200, tostring(port))
	elseif p == '/chunked' then
		res.headers['content-type'] = 'text/plain'
		res:start(200)
		for i = 1, 3 do res:write('piece', i, ';') end
		res:finish()
	elseif p == '/echo' then
		local body = req:body()
		if not body then return end
		res:send(200, req.method .. ' ' .. #body .. ' ' .. tostring(req.headers['transfer-encoding']) ..
			' ' .. body:sub(1, 8))
	else
		res:send(200, 'sixteen bytes...')
	end
end))

local script = [[
import http.client, sys
c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=5)
def ask(method, path, **kw):
    c.request(method, path, **kw)
    r = c.getresponse()
    return r, r.read().decode()
for i in range(3):
    r, body = ask('GET', '/peer')
    print('peer', body)
r, body = ask('GET', '/chunked')
print('chunked', r.status, r.getheader('Transfer-Encoding'), body)
r, body = ask('POST', '/echo', body=b'0123456789' * 10000)
print('post', r.status, body)
r, body = ask('POST', '/echo', body=iter([b'abc', b'defgh']), encode_chunked=True)
print('chunked post', r.status, body)
r, body = ask('HEAD', '/len')
print('head', r.status, r.getheader('Content-Length'), repr(body))
r, body = ask('GET', '/len')
print('after head', r.status, body)
r, body = ask('GET', '/peer')
print('peer', body)
]]
local dir = t.tmpdir()
local py = t.file(dir, 'client.py', script)
local out = dir .. '/out'
os.execute('(python3 ' .. py .. ' ' .. server:port() .. ' > ' .. out .. ' 2>&1; echo $? > ' .. out .. '.done) &')
local status
for _ = 1, 500 do   -- the loop must go on serving while Python runs: poll
	local f = io.open(out .. '.done')
	if f then status = tonumber(f:read('*a')) f:close() break end
	utils.sleeper():sleep(0.02)
end
local text = t.slurp(out)
t.is(status, 0, 'python3 ran its requests: exit 0', text)

local peers = {}
for port in text:gmatch('peer (%d+)') do peers[#peers + 1] = port end
t.is(#peers, 4, 'four answers from /peer')
t.ok(#peers == 4 and peers[1] == peers[2] and peers[2] == peers[3] and peers[3] == peers[4],
	'keep-alive: every request on one connection', table.concat(peers, ' '))
t.like(text, '\nchunked 200 chunked piece1;piece2;piece3;\n', 'a chunked answer')
t.like(text, '\npost 200 POST 100000 nil 01234567\n', 'a POST body with Content-Length')
t.like(text, '\nchunked post 200 POST 8 chunked abcdefgh\n', 'a chunked POST body')
t.like(text, "\nhead 200 16 ''\n", 'HEAD: the length, no body')
t.like(text, '\nafter head 200 sixteen bytes...\n', 'the connection goes on after HEAD')

server:close()
t.done()
