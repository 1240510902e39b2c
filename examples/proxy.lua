-- proxy.lua: a reverse proxy on lem.http: every request goes on to one upstream server
-- with lem.http's client (pooled keep-alive connections), and its answer comes back.
--   lem examples/proxy.lua upstream-url [port [host]]
--   lem examples/api.lua 8081 &  lem examples/proxy.lua http://127.0.0.1:8081 8080
--   curl http://127.0.0.1:8080/items
-- Bodies stream both ways, piece by piece: neither is held whole in memory.
local http = require 'lem.http'

local upstream = assert(arg[1], 'usage: lem examples/proxy.lua upstream-url [port [host]]')
upstream = upstream:gsub('/$', '')
local port = tonumber(arg[2]) or 8080
local host = arg[3] or '127.0.0.1'

-- Fields that belong to one connection (RFC 9110 7.6.1), not passed on. lem.http frames
-- each side itself: the client sends its own Host and Content-Length, the server keeps
-- the upstream's Content-Length (else it sends the body chunked).
local HOP = { connection = true, ['keep-alive'] = true, ['proxy-connection'] = true,
	te = true, trailer = true, ['transfer-encoding'] = true, upgrade = true, host = true }

local function copy_fields(from, to)
	-- headers:all gives every value of a repeated field
	local names = {}
	for name in pairs(from) do names[name] = true end
	for name in pairs(names) do
		if not HOP[name] then
			local values = from:all(name)
			to[name] = #values == 1 and values[1] or values
		end
	end
end

local server = assert(http.listen(host, port, function(req, res)
	local headers = {}
	copy_fields(req.headers, headers)
	local peer = req:peer()
	local xff = req.headers['x-forwarded-for']
	headers['x-forwarded-for'] = xff and xff .. ', ' .. peer or peer
	local body
	if req.headers['content-length'] or req.headers['transfer-encoding'] then
		body = function()
			-- a body that fails (too large, too slow: lem.http answered the client) must
			-- not reach the upstream as if it had ended: the error stops the request
			local piece, err = req:read()
			if err then error('request body: ' .. err, 0) end
			return piece
		end
	end
	-- an absolute-form target goes on by its path; '*' (OPTIONS) and an authority
	-- (CONNECT) are not proxied
	local target = req.target
	if target:sub(1, 1) ~= '/' then
		if req.path:sub(1, 1) ~= '/' then
			res.headers['content-type'] = 'text/plain'
			return res:send(400, 'only a path or an absolute URL is proxied\n')
		end
		target = req.query and req.path .. '?' .. req.query or req.path
	end
	local r, err = http.request{ method = req.method, url = upstream .. target,
		headers = headers, body = body, timeout = 30 }
	if not r then
		res.headers['content-type'] = 'text/plain'
		return res:send(err == 'timeout' and 504 or 502, 'upstream: ' .. err .. '\n')
	end
	if r.status < 200 then                         -- 101: upgrades are not proxied
		r:close()
		return res:send(502, 'upstream: status ' .. r.status .. '\n')
	end
	copy_fields(r.headers, res.headers)
	res:start(r.status)
	while true do
		local piece, rerr = r:read()
		-- an upstream body cut short: the error closes the client's connection without
		-- ending its body, so the client sees the cut too
		if rerr then error('upstream body: ' .. rerr) end
		if not piece then break end
		if not res:write(piece) then return r:close() end
	end
	res:finish()
end))
print(('proxy: listening on http://%s:%d/ for %s'):format(host, server:port(), upstream))
io.stdout:flush()
