-- server.lua: a minimal HTTP/1.1 server on lem.http: GET / answers 200 with "Hello, World!\n".
--   lem examples/server.lua [port [host]]       (default 8080 on 127.0.0.1)
--   lem --loops 2 examples/server.lua           one listener per loop on the same port
--   curl http://127.0.0.1:8080/
-- GET /loop answers the number of the loop that served the connection (--loops N); any
-- other path is 404, another method on / is 405.
-- lem.http does the rest (docs/http.md): keep-alive (HTTP/1.0 and "Connection: close" end
-- the connection after the answer), pipelined requests answered in order, every head
-- parsed strictly as RFC 9112 asks (a framing two parsers could read differently is
-- answered 400 or 501 and the connection closed), Server and a Date that changes every
-- second, limits and timeouts, the drain on SIGTERM, and an error in a handler logged on
-- stderr and closing that connection only.
-- This is the server of the HTTP benchmark (bench/http), and it answers as TechEmpower's
-- plaintext test asks: every request parsed, Server, Date and Content-Type in every answer.
local http = require 'lem.http'

local port = tonumber(arg[1]) or 8080
local host = arg[2] or '127.0.0.1'
local ok, loops = pcall(require, 'lem.loops')
local id = ok and type(loops) == 'table' and loops.id or 1

local BODY = 'Hello, World!\n'

local function handle(req, res)
	local method, path = req.method, req.path
	if method ~= 'GET' and method ~= 'HEAD' then
		-- a body is read (and dropped) first: lem.http answers 400 to a broken framing
		while req:read() do end
	end
	res.headers['content-type'] = 'text/plain'
	if path == '/' then
		if method == 'GET' or method == 'HEAD' then return res:send(200, BODY) end
		res.headers.allow = 'GET, HEAD'
		return res:send(405, 'Method Not Allowed\n')
	elseif path == '/loop' and method == 'GET' then   -- which loop answered: the spread
		return res:send(200, id .. '\n')
	end
	res:send(404, 'Not Found\n')
end

local server = assert(http.listen(host, port, handle))
print(('loop %d: listening on http://%s:%d/'):format(id, host, server:port()))
io.stdout:flush()
