-- server.lua: a minimal HTTP/1.1 server: GET / answers 200 with "Hello, World!\n".
--   lem examples/server.lua [port [host]]       (default 8080 on 127.0.0.1)
--   lem --loops 2 examples/server.lua           one listener per loop on the same port
--   curl http://127.0.0.1:8080/
-- GET /loop answers the number of the loop that served the connection (--loops N).
-- Keep-alive by default (HTTP/1.0 and "Connection: close" end the connection after the
-- answer); every answer is framed by Content-Length, and requests are read one after the
-- other from the stream's buffer, so pipelined requests are answered in order. Request
-- bodies, framed by Content-Length or chunked, are read and dropped.
-- The framing is checked as RFC 9112 asks, since a server that guesses where a body ends
-- can be made to read the next request out of it: a request line or field line that does
-- not parse (a control character such as a bare CR, obs-fold, white space before the
-- colon), a Content-Length that is not digits or too large, two that differ, both
-- Content-Length and Transfer-Encoding, a last coding other than chunked, or a bad chunk
-- size are answered 400, another transfer coding 501, and the connection is closed. An
-- error in a handler closes that connection only, and is logged on stderr.
-- This is the server of the HTTP benchmark (bench/http): the common request takes one
-- string comparison for its request line, one table lookup per field line and one write.
local io = require 'lem.io'
local utils = require 'lem.utils'
local signal = require 'lem.signal'

local port = tonumber(arg[1]) or 8080
local host = arg[2] or '127.0.0.1'
local ok, loops = pcall(require, 'lem.loops')
local id = ok and type(loops) == 'table' and loops.id or 1

local BODY = 'Hello, World!\n'

-- The answers, remade once a second for their Date header.
local OK, OK_CLOSE, HEAD_OK, NOT_FOUND, NOT_ALLOWED
local BAD = 'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
-- lem.io's reads stop at 64 KiB lines (stream:limit): a longer request line or field line
local URI_TOO_LONG = 'HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
local TOO_LARGE = 'HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
local NOT_IMPLEMENTED = 'HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'

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
local ticker
local function tick()
	answers()
	ticker = utils.timer(1, tick)
end
ticker = utils.timer(1, tick)
-- On SIGTERM or SIGINT lem closes the listeners and the loop ends once nothing is left
-- (docs/signals.md): the clock would be left, so it stops.
utils.spawn(function()
	signal.wait('shutdown')
	ticker:cancel()
end)

-- Bounds on what one request may make the server do.
local MAX_FIELDS = 100    -- field lines in a header or trailer section
local MAX_DIGITS = 15     -- a Content-Length below 10^15, exact in a double
local MAX_HEXDIGS = 12    -- a chunk below 2^48 bytes
local PIECE = 65536       -- bodies are read and dropped this much at a time

-- The request line: a method, a target without spaces or control characters, a version.
local REQUEST = '^(%u+) ([^%c ]+) HTTP/(1%.[01])$'
-- A field line starts with a name (a token) and a colon: no white space before the colon,
-- none before the name either (obs-fold, RFC 9112 5.2).
local FIELD = '^[%w!#$%%&\'*+.^_`|~-]+:'
-- Control characters but HTAB are refused anywhere in a line: a bare CR, a NUL.
local CTL = '[%z\1-\8\10-\31\127]'
-- No pattern here has an open-ended part followed by one that may match the same
-- characters, as '(.-)[ \t]*$' has: a long run of spaces inside a value made that one
-- quadratic, seconds of a stopped loop per request. Every check is linear in the line.

-- Field lines already found valid and of no concern to the framing (Host, User-Agent...):
-- clients send the same ones with every request, and one table lookup then stands for the
-- checks. Short lines only, and the table is emptied when full.
local seen, nseen = {}, 0
local function remember(h)
	if #h > 256 then return end
	if nseen == 256 then seen, nseen = {}, 0 end
	seen[h], nseen = true, nseen + 1
end

-- A field line is valid: a name, a colon, no control character.
local function valid(h)
	return h:find(FIELD) and not h:find(CTL)
end

-- The value of a Content-Length field line (lower case), given the length an earlier one
-- said, if any. 1*DIGIT, or a list of the same (RFC 9112 6.3 lets a recipient accept
-- identical ones). Returns the length, or nil if it is not digits, too large or differs.
local function content_length(value, length)
	local any = false
	for v in value:gmatch('[^,]+') do
		local d = v:match('^[ \t]*(%d+)[ \t]*$')
		if not d then return nil end
		local first = d:find('[^0]')    -- significant digits from here; none: zero
		if first and #d - first + 1 > MAX_DIGITS then return nil end
		local n = first and tonumber(d:sub(first)) or 0
		if length and n ~= length then return nil end
		length, any = n, true
	end
	return any and length or nil
end

-- The transfer codings of a request's Transfer-Encoding field lines, joined by commas.
-- Chunked, once and last, is the only one this server reads (RFC 9112 6.1, 6.3, 7).
-- Returns nil for that, BAD if chunked is not last or repeated (the body's end is not
-- known), NOT_IMPLEMENTED (501) if another coding comes before it.
local function codings(te)
	local chunked, other, last = 0, false, nil
	for v in te:gmatch('[^,]+') do
		if not v:find('^[ \t]*$') then       -- empty list elements are allowed
			last = v:find('^[ \t]*chunked[ \t]*$') ~= nil
			if last then chunked = chunked + 1 else other = true end
		end
	end
	if not last or chunked > 1 then return BAD end
	if other then return NOT_IMPLEMENTED end
	return nil
end

-- Reads and drops n bytes, a piece at a time, so that no body sits in memory whole.
-- Returns true, or nil if the stream ends first.
local function skip(client, n)
	while n > 0 do
		local k = n < PIECE and n or PIECE
		local data = client:read(k)
		if not data or #data < k then return nil end
		n = n - k
	end
	return true
end

-- Reads and drops a chunked body: chunks (a size line: hexadecimal digits, then nothing
-- or extensions after a ';'; the data; an empty line) up to the one of size 0, then
-- trailer field lines up to an empty line. Returns true, or nil if the stream ends or
-- breaks the framing.
local function skip_chunked(client)
	while true do
		local line = client:read()
		if not line then return nil end
		local hex, ext = line:match('^(%x+)(.*)$')
		if not hex or (ext ~= '' and not ext:find('^[ \t]*;')) or ext:find(CTL) then
			return nil
		end
		local first = hex:find('[^0]')     -- significant digits from here; none: the last
		if not first then break end
		if #hex - first + 1 > MAX_HEXDIGS then return nil end
		if not skip(client, tonumber(hex:sub(first), 16)) or client:read() ~= '' then
			return nil
		end
	end
	for _ = 1, MAX_FIELDS + 1 do
		local line = client:read()
		if not line then return nil end
		if line == '' then return true end
		if not valid(line) then return nil end
	end
	return nil                             -- too many trailer fields
end

local C, c = ('C'):byte(), ('c'):byte()
local T, t = ('T'):byte(), ('t'):byte()

-- Serves the requests of one connection until it is to be closed.
local function serve(client)
	while true do
		local line, err = client:read()
		if not line then
			if err == 'line too long' then client:write(URI_TOO_LONG) end
			return
		end
		local method, path, version
		if line == 'GET / HTTP/1.1' then    -- the common case: an interned string compare
			method, path, version = 'GET', '/', '1.1'
		else
			method, path, version = line:match(REQUEST)
			if not method then
				if line ~= '' then         -- an empty line between requests is allowed
					client:write(BAD)
					return
				end
			end
		end
		if method then
			local close, keep, length, te, n = false, false, nil, nil, 0
			while true do                  -- the header section
				local h, err = client:read()
				if not h then
					if err == 'line too long' then client:write(TOO_LARGE) end
					return
				end
				if h == '' then break end
				n = n + 1
				if n > MAX_FIELDS then client:write(BAD) return end
				if not seen[h] then
					if not valid(h) then client:write(BAD) return end
					local b = h:byte(1)
					local name, value
					if b == C or b == c or b == T or b == t then
						name, value = h:match('^([^:]*):(.*)$')
						name, value = name:lower(), value:lower()
					end
					if name == 'connection' then
						for v in value:gmatch('[^, \t]+') do
							if v == 'close' then close = true
							elseif v == 'keep-alive' then keep = true end
						end
					elseif name == 'content-length' then
						length = content_length(value, length)
						if not length then client:write(BAD) return end
					elseif name == 'transfer-encoding' then
						te = te and te .. ',' .. value or value
					else
						remember(h)
					end
				end
			end
			if version == '1.0' and not keep then close = true end
			if te then
				-- both framings, or an HTTP/1.0 one that cannot have chunked: RFC 9112 6.1
				if length or version == '1.0' then client:write(BAD) return end
				local bad = codings(te)
				if bad then client:write(bad) return end
				if not skip_chunked(client) then client:write(BAD) return end
			elseif length and length > 0 and not skip(client, length) then
				return
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
			if not client:write(answer) or close then return end
		end
	end
end

-- Each connection's coroutine: an error that slipped past the checks above ends this
-- connection, not the loop (an uncaught error would stop every loop of the process).
local function handle(client)
	local ok, err = pcall(serve, client)
	if not ok then
		_G.io.stderr:write(('server.lua: loop %d: %s\n'):format(id, tostring(err)))
		_G.io.stderr:flush()
	end
	client:close()
end

local server = assert(io.tcp.listen(host, port))
print(('loop %d: listening on http://%s:%d/'):format(id, host, server:port()))
_G.io.stdout:flush()
server:autospawn(handle)
