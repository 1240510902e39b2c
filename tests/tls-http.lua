-- lem.http over TLS: http.listen(..., { tls = context }) serves https, http.request
-- fetches https:// URLs, verifying them; curl fetches from lem's https server.
local t = require 'tap'
local open = io.open
local lemio = require 'lem.io'
local http = require 'lem.http'
local utils = require 'lem.utils'
local certs = require 'certs'

local dir, c = certs.for_test(t)
if not dir then return t.done() end

local sctx = assert(lemio.tls.context{ cert = c.server, key = c.key })
local peers = {}
local server = assert(http.listen('127.0.0.1', 0, function(req, res)
	local port = select(2, req:peer())
	peers[port] = true
	if req.method == 'POST' then
		res:send(200, 'got ' .. #req:body())
	else
		res:send(200, 'hello over https ' .. req.path)
	end
end, { tls = sctx, log = function() end }))
local port = server:port()
local cctx = assert(lemio.tls.context{ ca = c.ca })

local base = 'https://localhost:' .. port
local r, err = http.request{ url = base .. '/a', tls = cctx, timeout = 20 }
t.ok(r, 'http.request fetches an https:// URL', err)
t.is(r and r.status, 200, '... 200')
t.is(r and r:body(), 'hello over https /a', '... and its body')
r = http.request{ url = base .. '/b', tls = cctx, timeout = 20 }
t.is(r and r:body(), 'hello over https /b', 'a second request')
local n = 0
for _ in pairs(peers) do n = n + 1 end
t.is(n, 1, '... on the same kept-alive TLS connection')
r = http.request{ method = 'POST', url = base .. '/p', body = string.rep('x', 200000), tls = cctx, timeout = 20 }
t.is(r and r:body(), 'got 200000', 'a POST body of 200 kB')

r, err = http.request{ url = base .. '/', timeout = 20 }
t.is(r, nil, 'without the test CA: verification fails')
t.like(err, 'certificate verify failed: unable to get local issuer certificate', '... and says why')
r, err = http.request{ url = 'https://127.0.0.1:' .. port .. '/ip', tls = cctx, timeout = 20 }
t.is(r and r:body(), 'hello over https /ip', 'an address URL, checked against the IP names')
r, err = http.request{ url = 'http://127.0.0.1:' .. port .. '/', timeout = 20 }
t.is(r, nil, 'plain http to the https server: nil, ' .. tostring(err))

-- An answer whose body ends with the connection counts only with the server's close_notify:
-- a proxy that passes the records but that last one, then closes, cuts the body short.
local raw = assert(lemio.tls.listen('127.0.0.1', 0, sctx))
utils.spawn(function() raw:autospawn(function(s)
	s:read('*u', '\r\n\r\n', 5)
	s:write('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe whole body')
	s:close()                                  -- with close_notify
end) end)
local proxy = assert(lemio.tcp.listen('127.0.0.1', 0))
utils.spawn(function() proxy:autospawn(function(a)
	local b, closed = assert(lemio.tcp.connect('127.0.0.1', raw:port(), 5)), false
	utils.spawn(function()
		-- each record waits for the next, or for 0.05 s: the last before the server's close
		-- (its close_notify) is dropped
		local held
		while true do
			local head, herr = b:read(5, held and 0.05)
			if herr == 'timeout' then
				if not a:write(held) then break end
				held = nil
			else
				local body = head and #head == 5 and b:read(head:byte(4) * 256 + head:byte(5))
				if not body or held and not a:write(held) then break end
				held = head .. body
			end
		end
		closed = true
		b:close()
		a:close()
	end)
	while not closed do                       -- the client's records pass as they come
		local head = a:read(5)
		if not head or #head < 5 or closed then break end
		local body = a:read(head:byte(4) * 256 + head:byte(5))
		if not body or closed or not b:write(head, body) then break end
	end
end) end)
r, err = http.request{ url = 'https://localhost:' .. raw:port() .. '/', tls = cctx, timeout = 20 }
t.is(r and r:body(), 'the whole body', 'a body that ends with the connection, closed with close_notify')
r, err = http.request{ url = 'https://localhost:' .. proxy:port() .. '/', tls = cctx, timeout = 20 }
t.ok(r, '... through a proxy that drops the close_notify: the head comes', err)
local body, berr = nil, nil
if r then body, berr = r:body() end
t.is(body, nil, '... but the body is an error, not what came')
t.is(berr, 'closed', '... nil, \'closed\'')
proxy:close()
raw:close()

-- curl against lem's https server
local out = dir .. '/curl.out'
os.execute(('{ curl -sS --cacert %s %s/curl > %s 2>&1; touch %s.done; } &'):format(c.ca, base, out, out))
local sl = utils.sleeper()
local t0 = utils.now()
while not open(out .. '.done') and utils.now() - t0 < 10 do sl:sleep(0.02) end
local f = open(out)
t.is(f and f:read('*a'), 'hello over https /curl', 'curl --cacert fetches from lem\'s https server')
if f then f:close() end

t.error(function() http.listen('127.0.0.1', 0, function() end, { tls = 'x' }) end, 'bad option tls',
	'tls must be a context')
http.close_idle()
server:close()
t.done()
