-- server.lua: a minimal HTTP/1.1 server: GET / answers 200 with "Hello, World!\n".
--   lem examples/server.lua [port [host]]       (default 8080 on 127.0.0.1)
--   lem --loops 2 examples/server.lua           one listener per loop on the same port
--   curl http://127.0.0.1:8080/
-- GET /loop answers the number of the loop that served the connection (--loops N).
-- Keep-alive by default (HTTP/1.0 and "Connection: close" end the connection after the
-- answer); every answer is framed by Content-Length, and requests are read one after the
-- other from the stream's buffer, so pipelined requests are answered in order. Request
-- bodies, framed by Content-Length or chunked, are read and dropped.
-- This is the server of the HTTP benchmark (bench/http): the common request takes one
-- string comparison per line and one write.
local io = require 'lem.io'
local utils = require 'lem.utils'

local port = tonumber(arg[1]) or 8080
local host = arg[2] or '127.0.0.1'
local ok, loops = pcall(require, 'lem.loops')
local id = ok and type(loops) == 'table' and loops.id or 1

local BODY = 'Hello, World!\n'

-- The answers, remade once a second for their Date header.
local OK, OK_CLOSE, HEAD_OK, NOT_FOUND, NOT_ALLOWED
local BAD = 'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'

local function answers()
	local date = os.date('!%a, %d %b %Y %H:%M:%S GMT')
	local head = 'HTTP/1.1 200 OK\r\nServer: lem\r\nDate: ' .. date ..
		'\r\nContent-Type: text/plain\r\nContent-Length: ' .. #BODY .. '\r\n'
	OK = head .. '\r\n' .. BODY
	OK_CLOSE = head .. 'Connection: close\r\n\r\n' .. BODY
	HEAD_OK = head .. '\r\n'
	NOT_FOUND = 'HTTP/1.1 404 Not Found\r\nServer: lem\r\nDate: ' .. date ..
		'\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nNot Found\n'
	NOT_ALLOWED = 'HTTP/1.1 405 Method Not Allowed\r\nServer: lem\r\nDate: ' .. date ..
		'\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\n\r\n'
end
answers()
local function tick()
	answers()
	utils.timer(1, tick)
end
utils.timer(1, tick)

-- Reads and drops a chunked body: chunks (a hexadecimal size line, the data, an empty
-- line) up to the one of size 0, then trailer fields up to an empty line. Returns true,
-- or nil if the stream ends or breaks the framing.
local function skip_chunked(client)
	while true do
		local line = client:read()
		local hex = line and line:match('^%x+')
		if not hex then return nil end
		local size = tonumber(hex, 16)
		if size == 0 then break end
		if not client:read(size) or client:read() ~= '' then return nil end
	end
	repeat
		local line = client:read()
		if not line then return nil end
	until line == ''
	return true
end

local C, c = ('C'):byte(), ('c'):byte()
local T, t = ('T'):byte(), ('t'):byte()

local function handle(client)
	while true do
		local line = client:read()
		if not line then break end
		local method, path, version
		if line == 'GET / HTTP/1.1' then    -- the common case: an interned string compare
			method, path, version = 'GET', '/', '1.1'
		else
			method, path, version = line:match('^(%u+) (%S+) HTTP/(1%.[01])$')
			if not method then
				if line ~= '' then         -- an empty line between requests is allowed
					client:write(BAD)
					break
				end
			end
		end
		if method then
			local close, length, chunked = version == '1.0', 0, false
			while true do                  -- headers
				local h = client:read()
				if not h then return client:close() end
				if h == '' then break end
				local b = h:byte(1)
				if b == C or b == c or b == T or b == t then
					local name, value = h:match('^([%w-]+):[ \t]*(.-)[ \t]*$')
					name = name and name:lower()
					if name == 'connection' then
						value = value:lower()
						if value == 'close' then close = true
						elseif value == 'keep-alive' then close = false end
					elseif name == 'content-length' then
						length = tonumber(value)
						if not length or length < 0 then client:write(BAD) return client:close() end
					elseif name == 'transfer-encoding' then
						-- only a chunked last coding says where the body ends
						chunked = value:lower():match('chunked$') ~= nil
						if not chunked then client:write(BAD) return client:close() end
					end
				end
			end
			if chunked then               -- it overrides Content-Length
				if not skip_chunked(client) then client:write(BAD) break end
			elseif length > 0 and not client:read(length) then
				break
			end
			local answer
			if path == '/loop' and method == 'GET' then   -- which loop answered: the spread
				local body = id .. '\n'
				answer = 'HTTP/1.1 200 OK\r\nServer: lem\r\nContent-Type: text/plain\r\n' ..
					(close and 'Connection: close\r\n' or '') ..
					'Content-Length: ' .. #body .. '\r\n\r\n' .. body
			elseif path ~= '/' then
				answer = NOT_FOUND
			elseif method == 'GET' then
				answer = close and OK_CLOSE or OK
			elseif method == 'HEAD' then
				answer = HEAD_OK
			else
				answer = NOT_ALLOWED
			end
			if not client:write(answer) or close then break end
		end
	end
	client:close()
end

local server = assert(io.tcp.listen(host, port))
print(('loop %d: listening on http://%s:%d/'):format(id, host, server:port()))
_G.io.stdout:flush()
server:autospawn(handle)
