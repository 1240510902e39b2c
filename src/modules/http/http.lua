-- http.lua: lem.http's Lua half: the server's connections, the client, header tables and
-- bodies. http.c builds it into the binary and runs it with the C half (the parser's
-- bindings) as its argument; it returns the module.
local C = ...
local lemio = require 'lem.io'
local utils = require 'lem.utils'
local signal = require 'lem.signal'
local stdio = require 'io'   -- Lua's own io, for the log on stderr

local type, pairs, next, tostring, tonumber = type, pairs, next, tostring, tonumber
local setmetatable, rawget, rawset = setmetatable, rawget, rawset
local getmetatable, newproxy = getmetatable, newproxy
local concat, format, lower = table.concat, string.format, string.lower
-- answers held back for a pipeline are written past this (res:send's body up to it goes
-- in its head's string: http.c)
local PIPE_BYTES = C.inline
local now, timer, onerror = utils.now, utils.timer, utils.onerror
-- The methods of every lem.io stream (one class), for the request path: called as
-- functions they cost no look-up through the stream's metatable.
local sread, swrite, sbuffered = lemio.stdin.read, lemio.stdin.write, lemio.stdin.buffered

local http = {}

local PIECE = 65536          -- bodies are read this much at a time at most
local DRAIN_MAX = 262144     -- an unread request body up to this is read and dropped
local LINGER_TIME = 1        -- at most this long (seconds), this much and
local LINGER_BYTES = 1048576 -- read and dropped before an error close (linger)
local LINGER_QUIET = 0.05    -- or until the client sent nothing for this long
local CRLF2 = '\r\n\r\n'
-- A served connection waits this long (seconds) for its next head in a plain read before
-- it goes idle (stream:idle, no coroutine): a busy client's next request then costs no
-- new coroutine, and a quiet connection keeps one only this long.
local GRACE = 0.02
-- A connection whose grace went by with nothing goes idle at once after its next
-- GRACE_SKIP requests: a client slower than GRACE, or a server too busy to come back to
-- a connection within it (a deep pipelined load), pays a grace that missed (its read costs
-- more than the idle wake after it, in PUC Lua) once in GRACE_SKIP + 1 requests.
local GRACE_SKIP = 7
-- A new connection's first request has no grace after it either (it skips it once): many
-- clients send one request a connection, and a burst of new connections would each keep
-- a coroutine (two in PUC Lua) for GRACE.

local REASONS = {
	[100] = 'Continue', [101] = 'Switching Protocols',
	[200] = 'OK', [201] = 'Created', [202] = 'Accepted', [203] = 'Non-Authoritative Information',
	[204] = 'No Content', [205] = 'Reset Content', [206] = 'Partial Content',
	[300] = 'Multiple Choices', [301] = 'Moved Permanently', [302] = 'Found',
	[303] = 'See Other', [304] = 'Not Modified', [307] = 'Temporary Redirect',
	[308] = 'Permanent Redirect',
	[400] = 'Bad Request', [401] = 'Unauthorized', [403] = 'Forbidden', [404] = 'Not Found',
	[405] = 'Method Not Allowed', [406] = 'Not Acceptable', [408] = 'Request Timeout',
	[409] = 'Conflict', [410] = 'Gone', [411] = 'Length Required',
	[412] = 'Precondition Failed', [413] = 'Content Too Large', [414] = 'URI Too Long',
	[415] = 'Unsupported Media Type', [416] = 'Range Not Satisfiable',
	[417] = 'Expectation Failed', [422] = 'Unprocessable Content', [426] = 'Upgrade Required',
	[429] = 'Too Many Requests', [431] = 'Request Header Fields Too Large',
	[500] = 'Internal Server Error', [501] = 'Not Implemented', [502] = 'Bad Gateway',
	[503] = 'Service Unavailable', [504] = 'Gateway Timeout',
	[505] = 'HTTP Version Not Supported',
}
http.reasons = REASONS

-- The Date field, made again only when the second changes.
local date_t, date_s
local function date()
	local t = os.time()
	if t ~= date_t then
		date_t, date_s = t, os.date('!%a, %d %b %Y %H:%M:%S GMT', t)
	end
	return date_s
end

local function log(msg)
	stdio.stderr:write('lem.http: ', msg, '\n')
	stdio.stderr:flush()
end
http.log = log

---------------------------------------------------------------- header tables

-- A parsed head's fields: the first value of each by its lower-case name (which the
-- parser made); every value of the repeated ones (and of a field named "all", which
-- would hide the method) in `multi`, by the table.
local multi = setmetatable({}, { __mode = 'k' })

local function all(h, name)
	name = lower(name)
	local m = multi[h]
	local list = m and m[name]
	if list then
		local copy = {}
		for i = 1, #list do copy[i] = list[i] end
		return copy
	end
	return { rawget(h, name) }
end

local Headers = {
	__index = function(h, k)
		if k == 'all' then return all end
		if type(k) ~= 'string' then return nil end
		local l = lower(k)
		if l == 'all' then
			local m = multi[h]
			return m and m.all and m.all[1]
		end
		if l ~= k then return rawget(h, l) end
		return nil
	end,
}

-- A response's fields, set by any case of their names and kept in lower case.
local OutHeaders = {
	__index = function(h, k)
		if type(k) == 'string' then
			local l = lower(k)
			if l ~= k then return rawget(h, l) end
		end
		return nil
	end,
	__newindex = C.setlower,
}

local TOKEN = "^[%w!#$%%&'*+.^_`|~-]+$"
local BADVALUE = '[%z\1-\8\10-\31\127]'   -- control characters but HTAB: no CR, no LF

-- Appends name: value lines of the table h to t (from t[n + 1]) but those in skip, and
-- returns the new n. A value may be a list (one line each); false leaves the field out.
-- A name or value that would break the head raises (where level says): header injection
-- is a bug to fix.
local function add_fields(t, n, h, skip, level)
	for k, v in pairs(h) do
		if v ~= false and not skip[k] then
			if type(k) ~= 'string' or not k:find(TOKEN) then
				error('invalid header name ' .. format('%q', tostring(k)), level)
			end
			local list = type(v) == 'table' and v or { v }
			for i = 1, #list do
				local s = tostring(list[i])
				if s:find(BADVALUE) then
					error('invalid value for header ' .. k, level)
				end
				t[n + 1], t[n + 2], t[n + 3], t[n + 4] = k, ': ', s, '\r\n'
				n = n + 4
			end
		end
	end
	return n
end

---------------------------------------------------------------- bodies

-- A body being read: the stream s, its framing (kind: 'none', 'length', 'chunked',
-- 'close'), what is left of a length (left) or the chunked decoder (dec), the bytes
-- decoded (got) and read (raw) against max, and a deadline (set at the first read from
-- timeout, or given), and a bound on each read (each). before() runs before the first
-- read (100-continue); fail(status, err, b) hears a failure that the peer caused.
local function remaining(b)
	local each = b.each              -- the client's read_timeout: each read's own bound
	if not b.deadline then return each end
	local r = b.deadline - now()
	if r < 0 then r = 0 end
	return each and each < r and each or r
end

local function body_fail(b, err, status)
	b.done, b.err = true, err
	if b.fail then
		if err == 'timeout' then status = 408
		elseif err == 'line too long' then status = 400 end
		b.fail(status, err, b)
	end
	return nil, err
end

local function body_piece(b)
	if b.pending then                -- a whole body read with its head (the client's)
		local data = b.pending
		b.pending = nil
		return data
	end
	if b.done then return nil, b.err end
	if b.before then
		local f = b.before
		b.before = nil
		f()
	end
	if b.conn and b.conn._dead then return body_fail(b, 'closed') end
	if b.timeout and not b.deadline then b.deadline = now() + b.timeout end
	local s, kind = b.s, b.kind
	if kind == 'length' then
		local n = b.left < PIECE and b.left or PIECE
		if n == 0 then b.done = true return nil end
		local data, err = s:read(n, remaining(b))
		if not data or #data < n then return body_fail(b, data and 'closed' or err) end
		b.left = b.left - n
		b.got = b.got + n
		if b.left == 0 then b.done = true end
		return data
	elseif kind == 'chunked' then
		while true do
			local want = b.dec:want()
			local data, err
			if b.got + want > b.max then   -- a chunk too large: no need to wait for it
				return body_fail(b, 'body too large', 413)
			end
			if want > 0 then
				want = want < PIECE and want or PIECE
				data, err = s:read(want, remaining(b))
				if data and #data < want then data, err = nil, 'closed' end   -- cut short
			else
				data, err = s:read('*u', '\n', remaining(b))
			end
			if not data then return body_fail(b, err) end
			b.raw = b.raw + #data
			local out, done, reason = b.dec:decode(data)
			if not out then return body_fail(b, reason, done) end
			b.got = b.got + #out
			-- framing costs octets too: bound what is read, not only the data
			if b.got > b.max or b.raw > 2 * b.max + PIECE then
				return body_fail(b, 'body too large', 413)
			end
			if done then b.done = true end
			if #out > 0 then return out end
			if done then return nil end
		end
	elseif kind == 'close' then
		local data, err = s:read(PIECE, remaining(b))
		if not data then
			b.done = true
			-- Over TLS only the server's close_notify ends such a body: a connection that
			-- just ends may have been cut by anyone on the way (a truncation attack). (A
			-- stream closed meanwhile, by r:close(), raises in tls(): not an end either.)
			if err == 'closed' then
				local open, tls = pcall(s.tls, s)
				if open and (not tls or tls.close_notify) then return nil end
			end
			b.err = err
			return nil, err
		end
		b.got = b.got + #data
		if b.got > b.max then return body_fail(b, 'body too large', 413) end
		return data
	end
	b.done = true
	return nil
end

-- The whole body, up to b.whole_max when given (a client's max_body, whose pieces
-- stream unbounded), else b.max.
local function body_all(b)
	if b.whole then return b.whole end
	if b.pending then
		b.whole, b.pending = b.pending, nil
		return b.whole
	end
	local max = b.whole_max or b.max
	if b.kind == 'length' and b.left > max then
		return body_fail(b, 'body too large', 413)
	end
	local parts, n, size = {}, 0, 0
	while true do
		local data, err = body_piece(b)
		if not data then
			if err then return nil, err end
			break
		end
		size = size + #data
		if size > max then return body_fail(b, 'body too large', 413) end
		n = n + 1
		parts[n] = data
	end
	b.whole = concat(parts)
	return b.whole
end

-- The body of every request without one: shared, and never written to.
local NO_BODY = { kind = 'none', done = true, whole = '' }

local function new_body(s, kind, length, parser, max)
	local b = { s = s, kind = kind, left = length, got = 0, raw = 0, max = max,
		done = kind == 'none' }
	if kind == 'chunked' then b.dec = C.chunked(parser) end
	return b
end

-- The methods shared by requests and client responses, which keep their body in _body.
local function body_methods(class)
	function class:body() return body_all(self._body) end
	function class:read() return body_piece(self._body) end
	function class:chunks()
		local b = self._body
		return function() return (body_piece(b)) end
	end
end

---------------------------------------------------------------- the server

local Request = {}
-- req.headers is made when first asked for (many handlers never look): from the head,
-- parsed again, which costs less than the table of fields that a request would make.
Request.__index = function(req, k)
	if k ~= 'headers' then return Request[k] end
	local _, _, _, _, _, _, _, h, m = req._conn._srv.parser:request(rawget(req, '_lead') or '',
		req._data)
	setmetatable(h, Headers)
	if m then multi[h] = m end
	rawset(req, 'headers', h)
	return h
end
body_methods(Request)
function Request:peer()
	local conn = self._conn
	if conn._dead then return nil, 'closed' end
	return conn._s:peer()
end

local Response = {}
Response.__index = Response

-- The state of the request (conn) whose handler took its connection (res:upgrade), which
-- srv.conns no longer holds, by stream: for serve, should the handler fail afterwards;
-- serve_end takes it out.
local handed = setmetatable({}, { __mode = 'k' })

-- A write to the connection failed with err: it is dead, and closed if the client did
-- not take the write within write_timeout. Returns nil, err.
local function conn_write_failed(conn, err)
	conn._dead = true
	if err == 'timeout' then conn._s:close() end
	return nil, err
end

-- Writes to the connection. A write that the client has not taken within write_timeout
-- (the stream's write_timeout, set when the connection came) closes it. Returns true, or
-- nil and a message once the connection is dead.
-- Answers held back (conn._out, see Response:send) go first, in the same write.
local function conn_write(conn, ...)
	if conn._dead then return nil, 'closed' end
	local ok, err
	if conn._out then
		local out = conn._out
		conn._out = false
		ok, err = swrite(conn._s, out, ...)
	else
		ok, err = swrite(conn._s, ...)
	end
	if not ok then return conn_write_failed(conn, err) end
	return ok
end

-- Reads and drops what the client is still sending, so that closing the connection does
-- not reset it (unread input makes the kernel send RST) before the client has read the
-- answer. lem.io has no half-close: a client that waits for the end of the connection
-- would wait for us, so this stops at the first quiet LINGER_QUIET, or after
-- LINGER_TIME or LINGER_BYTES. Quiet is no byte at all: each wait is for one, then what
-- came with it is dropped (a wait for a fixed count would take a slow sender for a quiet
-- one, and close on it with its bytes arriving: a reset).
local function linger(conn)
	if conn._dead then return end
	local s, deadline, n = conn._s, now() + LINGER_TIME, 0
	while n < LINGER_BYTES do
		local r = deadline - now()
		if r <= 0 then return end
		if not s:read(1, r < LINGER_QUIET and r or LINGER_QUIET) then return end
		local more = s:buffered()
		if more > 0 and not s:read(more) then return end
		n = n + 1 + more
	end
end

-- An answer that ends the connection: a status of the server's own (400, 408, 413, ...).
local function error_answer(conn, status)
	local reason = REASONS[status] or 'Error'
	local body = reason .. '\n'
	return conn_write(conn, 'HTTP/1.1 ', status, ' ', reason, '\r\nServer: ', conn._srv.name,
		'\r\nDate: ', date(), '\r\nContent-Type: text/plain\r\nContent-Length: ', #body,
		'\r\nConnection: close\r\n\r\n', body)
end

-- The same, after which lingering drops what the client still sends: the connection's
-- state is returned, for serve_conn's end.
local function refuse(conn, status)
	error_answer(conn, status)
	linger(conn)
	return conn
end

local NOBODY = { [204] = true, [304] = true }

local function check_status(status)
	if type(status) ~= 'number' or status < 200 or status > 599 or status % 1 ~= 0 then
		error('bad status ' .. tostring(status) .. ' (200 to 599 expected)', 3)
	end
end

-- A body left unread that the client may not send (100-continue not sent) or that is too
-- long to drop: the connection cannot carry another request.
local function unread_body(conn, b)
	if b.before or (b.kind == 'length' and b.left > DRAIN_MAX) then conn._close = true end
end

-- The head of an answer is made by one C call, answer(headers, status, reason, server,
-- framing, connection, body): framing is a number (Content-Length), 'chunked', or nil (no
-- body, or one the connection's end delimits); it adds Server and Date, and body after the
-- head if given. It returns the head and whether it says close, or nil and a message.
-- With framing true it makes res:send's answer from its body (http.c says how).
local answer = C.answer

-- res:send(status [, body]) --> true | nil, message
function Response:send(status, body)
	local reason = REASONS[status]
	if not (reason and status >= 200) then check_status(status) end
	if self._state then return nil, 'response already sent' end
	local conn, req = self._conn, self._req
	if not req._body.done then unread_body(conn, req._body) end
	-- the body's checks and framing are answer's (true); a small one comes in h
	local h, close, big = answer(self.headers, status, reason or 'Unknown', conn._srv.name,
		true, conn._close and 'close' or req.version == '1.0' and 'keep-alive' or nil, body,
		req.method == 'HEAD')
	if not h then error(close, 2) end
	if close then conn._close = true end
	self._state = 'done'                  -- not before: a refused head leaves it unsent (500)
	if big then return conn_write(conn, h, big) end
	-- The client's next request is here already (a pipeline): a small answer waits to go
	-- out with the next ones, in one write (serve_conn sends them when the pipeline ends).
	if conn._pipelined and not conn._dead then
		local out = conn._out
		conn._out = out and out .. h or h
		return true
	end
	if conn._out or conn._dead then return conn_write(conn, h) end
	local ok, err = swrite(conn._s, h)    -- conn_write's common case, without its call
	if not ok then return conn_write_failed(conn, err) end
	return true
end

-- res:start(status) --> true | nil, message: the head; the body follows with write.
function Response:start(status)
	check_status(status)
	if self._state then return nil, 'response already sent' end
	local req, h = self._req, self.headers
	local framing, mode
	local cl = rawget(h, 'content-length')
	if NOBODY[status] then
		mode = 'none'
	elseif cl ~= nil then
		framing = tostring(cl)
		if not framing:find('^%d+$') or #framing > 15 then
			error('bad content-length ' .. framing, 2)
		end
		framing = tonumber(framing)
		mode, self._left = 'length', framing
	elseif req.version == '1.1' then
		framing, mode = 'chunked', 'chunked'
	else
		self._conn._close = true          -- HTTP/1.0: the end of the connection ends the body
		mode = 'close'
	end
	if req.method == 'HEAD' then mode = 'none' end
	local conn = self._conn
	if not req._body.done then unread_body(conn, req._body) end
	local head, close = answer(h, status, REASONS[status] or 'Unknown', conn._srv.name,
		framing, conn._close and 'close' or req.version == '1.0' and 'keep-alive' or nil)
	if not head then error(close, 2) end
	if close then conn._close = true end
	self._state, self._mode = 'head', mode
	return conn_write(conn, head)
end

-- res:write(...) --> true | nil, message
function Response:write(...)
	if self._state ~= 'head' then error('write without start, or after finish', 2) end
	local data = select('#', ...) == 1 and tostring((...)) or concat({ ... })
	local mode = self._mode
	if #data == 0 or mode == 'none' then return true end
	if mode == 'chunked' then
		return conn_write(self._conn, format('%x\r\n', #data), data, '\r\n')
	elseif mode == 'length' then
		if #data > self._left then error('more than content-length', 2) end
		self._left = self._left - #data
	end
	return conn_write(self._conn, data)
end

-- res:flush() --> true | nil, message: answers held back for a pipeline go out now.
function Response:flush()
	local conn = self._conn
	if conn._dead then return nil, 'closed' end
	if conn._out then return conn_write(conn) end
	return true
end

-- res:finish([data]) --> true | nil, message
function Response:finish(...)
	if self._state ~= 'head' then
		if self._state == nil then error('finish without start', 2) end
		return nil, 'response already sent'
	end
	local ok, err = true, nil
	if select('#', ...) > 0 then ok, err = self:write(...) end
	self._state = 'done'
	if not ok then return nil, err end
	if self._mode == 'chunked' then return conn_write(self._conn, '0\r\n\r\n') end
	if self._mode == 'length' and self._left > 0 then
		self._conn._close = true          -- shorter than announced: the client must see the end
	end
	return true
end

---------------------------------------------------------------- upgrade

-- Whether the request asks for a protocol change (RFC 9110 7.8): HTTP/1.1, an Upgrade
-- field, and upgrade among the Connection options. Checked here, not by the parser, as
-- only an upgrading handler asks.
local function wants_upgrade(req)
	if req.version ~= '1.1' or not req.headers.upgrade then return false end
	for _, v in pairs(req.headers:all('connection')) do
		for opt in v:gmatch('[^,%s]+') do
			if lower(opt) == 'upgrade' then return true end
		end
	end
	return false
end

-- res:upgrade(protocol [, headers]) --> stream | nil, message: answers 101 Switching
-- Protocols with Upgrade: protocol (and the fields of headers), and hands the connection
-- over: lem.http neither reads, writes, times out, drains nor closes it afterwards.
function Response:upgrade(protocol, headers)
	if type(protocol) ~= 'string' or not protocol:find('^[%w!#$%%&\'*+.^_`|~/-]+$') then
		error("bad argument #1 to 'upgrade' (protocol token expected)", 2)
	end
	if headers ~= nil and type(headers) ~= 'table' then
		error("bad argument #2 to 'upgrade' (table expected)", 2)
	end
	if self._state then return nil, 'response already sent' end
	local req, conn = self._req, self._conn
	if not wants_upgrade(req) then return nil, 'not an upgrade request' end
	if not req._body.done then return nil, 'request body not read' end
	local t = { 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ',
		protocol, '\r\n' }
	local h = setmetatable({}, OutHeaders)   -- names in lower case, as the skip list's
	for k, v in pairs(headers or {}) do h[k] = v end
	local n = add_fields(t, 3, h, { connection = true, upgrade = true,
		['content-length'] = true, ['transfer-encoding'] = true }, 3)
	t[n + 1] = '\r\n'
	self._state = 'upgraded'
	local ok, err = conn_write(conn, concat(t))
	if not ok then return nil, err end
	conn._upgraded = true
	conn._srv.conns[conn._s] = nil         -- a drain no longer sees it
	handed[conn._s] = conn
	conn._s:limit(65536, 16777216)        -- the stream's defaults (lem.io)
	conn._s:write_timeout(false)
	return conn._s
end

-- A shared server function for a body's failure (new_body's fail): the connection ends,
-- and the client hears status if the handler has not answered yet.
local function body_failed(status, _, b)
	local conn, res = b.conn, b.res
	conn._close = true
	if status and not res._state then
		res._state = 'done'
		error_answer(conn, status)
	end
end

-- serve_req(P, lead, data, conn) --> req, res, body, length, keep_alive, expect, upgrade
-- | false | nil, status: a request's req and res from the head lead .. data (false: not
-- one whole head).
-- Under PUC Lua one C call (C.server) parses it and makes them with their tables; under
-- LuaJIT they are made here from the values it gives: LuaJIT's table constructors copy a
-- template, 2,000 instructions a request fewer than the C API's sets, where PUC Lua's
-- setmetatable calls cost more.
local serve_req
if C.luajit then
	local parse = C.server()
	serve_req = function(P, lead, data, conn)
		local method, target, path, query, version, kind, length, keep, expect, upgrade =
			parse(P, lead, data)
		if not method then return method, target end
		local req = setmetatable({ method = method, target = target, path = path,
			query = query, version = version, _conn = conn,
			_body = kind == 'none' and NO_BODY or nil, _lead = lead, _data = data }, Request)
		-- _state: a key of its own, so that looking it up finds it without the metatable
		return req, setmetatable({ headers = setmetatable({}, OutHeaders), _conn = conn,
			_req = req, _state = false }, Response), kind, length, keep, expect, upgrade
	end
else
	serve_req = C.server(Request, Headers, Response, OutHeaders, NO_BODY)
end

-- What a failed request leaves to do: err came from the handler (then the client gets
-- 500 if nothing was sent yet) or from lem.http itself. The connection ends.
local function failed(srv, conn, err)
	local o, res = srv.o, conn and conn._res
	if not res then return o.log('connection error: ' .. tostring(err)) end
	o.log('handler error: ' .. tostring(err))
	if conn._upgraded then return end     -- the stream is the handler's
	conn._close = true
	if not res._state then
		res._state = 'done'
		pcall(error_answer, conn, 500)
	end
	local b = res._req._body
	if not b.done or b.err then pcall(linger, conn) end
end

-- A connection is gone: its entry and count go, and with the last one the timers.
local function gone(srv, s)
	srv.conns[s], srv.nconns = nil, srv.nconns - 1
	if srv.nconns == 0 then
		if srv.drain_timer then srv.drain_timer:cancel() end
	end
end

-- The end of a connection whose coroutine ends (serve) or failed (serve_failed).
local function serve_end(srv, s, conn)
	if conn and conn._out then pcall(conn_write, conn) end   -- a pipeline cut short
	if not (conn and conn._upgraded) then s:close() end
	-- (weak keys are no ephemerons in Lua 5.1: conn holds s, so the entry would stay)
	handed[s] = nil
	gone(srv, s)
end

-- A connection's coroutine failed (an error in its handler, or in lem.http): msg has the
-- traceback (utils.onerror). Its state is found where serve_conn keeps it.
local function serve_failed(srv, s, msg)
	local conn = srv.conns[s]
	if type(conn) ~= 'table' then conn = handed[s] end
	failed(srv, conn, msg)
	serve_end(srv, s, conn)
end

-- serve's loop, for every request the coroutine serves. Returns the connection's state
-- (conn), or 'idle' when the connection went idle.
local function serve_conn(srv, s, first, skip)
	local conns, o, P, handler = srv.conns, srv.o, srv.parser, srv.handler
	local conn, lead, data, err = nil, '', nil, nil
	while not srv.draining do
		-- A new connection's first byte may take header_timeout, and until it comes the
		-- connection is idle: a drain closes it at once (Server:shutdown). Once something
		-- came, the head may take header_timeout.
		if first then
			conns[s] = true
			lead, err = s:read(1, o.header_timeout)
		elseif not lead then
			-- After a request, the next one's head gets GRACE in a read; a drain meanwhile
			-- closes the connection as an idle one. When nothing came (or the grace is
			-- skipped), the connection waits in s:idle, up to idle_timeout, unless
			-- something is buffered already (false: a head begun goes on below,
			-- for header_timeout).
			lead = ''
			if skip == 0 then
				conn._wait = true              -- for a drain, as an idle one
				data, err = sread(s, '*u', CRLF2, GRACE)
				conn._wait = false
				-- (a drain that came as the grace ran out has not closed it)
				if not data and srv.draining then return conn end
				if not data and err == 'timeout' then err, skip = nil, GRACE_SKIP + 1 end
			end
			if skip > 0 then
				skip = skip - 1
				if s:idle(srv.wake, o.idle_timeout) then
					conns[s] = skip
					return 'idle'
				end
			end
		end
		-- The connection's state, made when its first byte comes, for all the requests
		-- the coroutine serves (out: answers held back; res: the request's, while its
		-- handler runs; wait: its next request is awaited in the grace): its fields are
		-- there from the start, so that the table is made once at its size.
		if not conn then
			conn = { _s = s, _srv = srv, _dead = false, _close = false, _res = false,
				_out = false, _pipelined = false, _wait = false }
			conns[s] = conn
		end
		if not lead then
			if err == 'timeout' then pcall(error_answer, conn, 408) end
			return conn
		end
		first = false
		-- One request, whose first byte (lead), or whole head (data), came; or nil and err.
		-- The handler runs while conn._res is set.
		if data == nil and err == nil then
			data, err = s:read('*u', CRLF2, conn._out and 0 or o.header_timeout)
			if not data and conn._out and err == 'timeout' then
				conn_write(conn)  -- answers held back wait for no head that is not whole here
				data, err = s:read('*u', CRLF2, o.header_timeout)
			end
		end
		if srv.draining then conn._close = true end
		if not data then
			if err == 'line too long' then
				-- it stays buffered: the parser tells a long target (414) from a long head
				local _, status = P:request(lead .. (s:read(o.max_header_bytes + 4, 0) or ''))
				return refuse(conn, status or 431)
			elseif err == 'timeout' then
				error_answer(conn, 408)
			end
			return conn
		end
		local req, res, kind, length, keep, expect, upgrade = serve_req(P, lead, data, conn)
		if not req then
			local text = lead .. data
			-- a head of empty lines only: those may precede a request line
			while req == false and #text <= o.max_header_bytes and text:find('^[\r\n]*$') do
				data = s:read('*u', CRLF2, o.header_timeout)
				if not data then return conn end
				text = text .. data
				req, res, kind, length, keep, expect, upgrade = serve_req(P, text, '', conn)
			end
			if not req then
				return refuse(conn, req == nil and res or 400)   -- res: the status
			end
		end
		if kind == 'length' and length > o.max_body then
			return refuse(conn, 413)
		end
		local b = NO_BODY
		if kind ~= 'none' then
			b = new_body(s, kind, length, P, o.max_body)
			req._body = b
			b.conn, b.timeout, b.res, b.fail = conn, o.body_timeout, res, body_failed
			if expect then
				b.before = function()
					if not res._state then conn_write(conn, 'HTTP/1.1 100 Continue\r\n\r\n') end
				end
			end
		end
		conn._close = not keep or conn._close
		-- more is buffered after a request without a body: the next one, pipelined (but an
		-- Upgrade, whose handler may take the stream: what was held back goes out first)
		conn._pipelined = kind == 'none' and sbuffered(s) > 0 and not upgrade
		if conn._out and not conn._pipelined then conn_write(conn) end
		conn._res = res
		handler(req, res)                    -- an error ends the connection (serve)
		conn._res = false
		local state = res._state
		if state ~= 'done' then
			if conn._upgraded then return conn end   -- the handler has the stream now
			if not state then
				res:send(200)                -- as Go does for a handler that sent nothing
			elseif state == 'head' then
				res:finish()
			end
		end
		if conn._dead then return conn end
		if not b.done and not conn._close then
			-- drop the unread body: a little of it, or the connection goes
			b.before, b.fail = nil, nil
			if b.kind == 'chunked' then b.max = math.min(b.max, b.got + DRAIN_MAX) end
			while body_piece(b) do end
			if b.err then conn._close = true end
		end
		if conn._close then
			if conn._out then conn_write(conn) end
			if not b.done or b.err then linger(conn) end
			return conn
		end
		if conn._out then
			-- held back for the next request's answers
			if not (conn._pipelined and #conn._out < PIPE_BYTES) then conn_write(conn) end
		end
		-- answers held back for a pipeline: its next head is buffered already
		lead, data, err = conn._out and '', nil, nil
	end
	return conn
end

-- Serves the requests of one connection, in order, until it is to be closed or idle:
-- started by the listener for a new connection (idle nil), and again each time the
-- connection was idle (idle true: something came; 'timeout': idle_timeout passed). An idle kept-alive
-- connection has no coroutine: it waits in s:idle, its entry in srv.conns a number (the
-- requests it is to skip the grace for: GRACE_SKIP), and costs its stream, whose buffer
-- is released while it is empty (lem.io). While its first byte is awaited the entry is
-- true; then it is the connection's state (conn), made when that byte comes, whose _wait
-- is true while the next request is awaited in the grace.
local function serve(srv, s, idle)
	local skip = 1
	if idle == nil then
		srv.nconns = srv.nconns + 1
		s:limit(srv.o.max_header_bytes)
		if srv.o.write_timeout then s:write_timeout(srv.o.write_timeout) end
	else
		skip = srv.conns[s]
		if type(skip) ~= 'number' then return end   -- closed while its start was queued
		if idle == 'timeout' then
			s:close()
			return gone(srv, s)
		end
	end
	-- Not a protected call: under PUC Lua a read that waits inside one costs a second
	-- coroutine's switches. An error ends the coroutine; srv.failed then runs.
	onerror(srv.failed, s)
	local conn = serve_conn(srv, s, idle == nil, skip)   -- the connection's state
	if conn ~= 'idle' then serve_end(srv, s, conn) end
end

local DEFAULTS = {
	max_header_bytes = 16384, max_headers = 100, max_target = 8192,
	max_body = 8 * 1048576, header_timeout = 10, body_timeout = 30, idle_timeout = 60,
	write_timeout = 30, server = 'lem', log = log,
}

local function options(opts)
	local o = {}
	for k, v in pairs(DEFAULTS) do o[k] = v end
	if opts ~= nil then
		if type(opts) ~= 'table' then error('bad options (table expected)', 3) end
		for k, v in pairs(opts) do
			-- tls: a context of lem.io's, whose type no default shows
			if DEFAULTS[k] == nil and k ~= 'tls' then error('unknown option ' .. tostring(k), 3) end
			if k == 'tls' and getmetatable(v) ~= 'tls context' then
				error('bad option tls (a context of io.tls.context expected)', 3)
			end
			if type(v) ~= type(DEFAULTS[k]) and v ~= false and k ~= 'tls' then
				error('bad option ' .. k .. ' (' .. type(DEFAULTS[k]) .. ' expected)', 3)
			end
			if type(v) == 'number' and not (v >= 0) then   -- NaN too
				error('bad option ' .. k .. ' (non-negative number expected)', 3)
			end
			o[k] = v or nil               -- false: no timeout
		end
	end
	return o
end

local Server = {}
Server.__index = Server
function Server:close() self.closed = true return self.listener:close() end
function Server:port() return self.listener:port() end

-- server:shutdown([timeout]) --> true: stops accepting, closes the idle connections at
-- once (a request whose first byte was read is served), answers the requests in flight
-- with Connection: close, and after timeout seconds (if given) closes what is left.
-- The process's shutdown (SIGTERM, utils.shutdown) calls it for every server.
function Server:shutdown(timeout)
	if timeout ~= nil and type(timeout) ~= 'number' then
		error("bad argument #1 to 'shutdown' (number expected, got " .. type(timeout) .. ')', 2)
	end
	self.draining, self.closed = true, true
	self.listener:close()
	for s, conn in pairs(self.conns) do
		if type(conn) == 'number' then -- idle, no coroutine: closed and counted here
			s:close()
			gone(self, s)
		elseif conn == true or conn._wait then   -- waits for a request: its coroutine ends,
			-- unless the head has begun (GRACE), or its read has returned and the coroutine
			-- is yet to resume with what came (the stream reads then, 'busy' no more)
			if s:buffered() == 0 and select(2, s:read(0, 0)) == 'busy' then s:close() end
		else
			conn._close = true
		end
	end
	if timeout and next(self.conns) then
		self.drain_timer = timer(timeout, function()
			for s, conn in pairs(self.conns) do
				-- a handler still running gets nil, 'closed' from then on
				if type(conn) == 'table' then conn._dead = true end
				s:close()
				if type(conn) == 'number' then gone(self, s) end
			end
		end)
	end
	return true
end

local function start(listener, handler, opts)
	local o = opts
	local srv = setmetatable({ listener = listener, handler = handler, o = o,
		name = o.server or 'lem',
		parser = C.parser{ max_head = o.max_header_bytes, max_fields = o.max_headers,
			max_target = o.max_target } }, Server)
	srv.conns, srv.nconns = setmetatable({}, { __mode = 'k' }), 0
	srv.wake = function(s, timedout) return serve(srv, s, timedout or true) end
	srv.failed = function(msg, s) return serve_failed(srv, s, msg) end
	-- (closed before this coroutine ran: a listen then a close in one go)
	utils.spawn(function()
		if not srv.closed then listener:autospawn(function(s) return serve(srv, s) end) end
	end)
	-- the process's shutdown drains the server (a wait that keeps no loop running)
	utils.spawn(function()
		if signal.wait('shutdown') and not srv.draining then srv:shutdown() end
	end)
	return srv
end

-- lem.io's listen f(...), whose bad argument is raised where http's name was called,
-- with the same words (the host, the port and the path are the same arguments there).
local function listen(name, f, ...)
	local fine, l, err = pcall(f, ...)
	if not fine then
		error((tostring(l):gsub('^%[lem%.http%]:%d+: ', ''):gsub("to '%?'", "to '" .. name .. "'")), 3)
	end
	return l, err
end

-- http.listen(host, port, handler [, options]) --> server | nil, message
function http.listen(host, port, handler, opts)
	if type(handler) ~= 'function' then error('bad argument #3 to \'listen\' (function expected)', 2) end
	local o = options(opts)
	local l, err
	if o.tls then
		l, err = listen('listen', lemio.tls.listen, host, port, o.tls)
	else
		l, err = listen('listen', lemio.tcp.listen, host, port)
	end
	if not l then return nil, err end
	return start(l, handler, o)
end

-- http.listen_unix(path, handler [, options]) --> server | nil, message
function http.listen_unix(path, handler, opts)
	if type(handler) ~= 'function' then error('bad argument #2 to \'listen_unix\' (function expected)', 2) end
	local o = options(opts)
	local l, err = listen('listen_unix', lemio.unix.listen, path)
	if not l then return nil, err end
	return start(l, handler, o)
end

---------------------------------------------------------------- the client

local ClientResponse = {}
local client_parser = C.parser{ max_head = 65536, max_fields = 1000, max_target = 8192 }
-- r.headers is made when first asked for, from the head (kept in r._head), parsed again:
-- a caller that never looks saves the table of fields.
ClientResponse.__index = function(r, k)
	if k ~= 'headers' then return ClientResponse[k] end
	local _, _, _, _, _, _, _, h, m = client_parser:response(r._head)
	setmetatable(h, Headers)
	if m then multi[h] = m end
	rawset(r, 'headers', h)
	return h
end
body_methods(ClientResponse)

-- Connections by 'host:port', in this loop's state (so per loop): the idle ones, how
-- many are open (idle, in use or connecting) against max_per_host, and the callers
-- waiting for one (a queue of sleepers). An idle one waits in s:idle, weak (it keeps no
-- loop running), so that a server's close, or idle_timeout, closes it at once; pooled
-- maps it to its pool then (to false when it could not wait so: a TLS stream that may
-- hold bytes inside OpenSSL).
http.max_idle_per_host = 8
http.max_per_host = 32
http.idle_timeout = 30
local pools = {}
local pooled = setmetatable({}, { __mode = 'k' })

local function pool_of(key)
	local p = pools[key]
	if not p then
		p = { idle = {}, open = 0, waiting = {} }
		pools[key] = p
	end
	return p
end

local function pool_wake(p)
	local waiting = p.waiting
	if waiting[1] then table.remove(waiting, 1):wakeup(true) end   -- no call when none waits
end

-- The most recently idle connection of p, taken from its list (nil: none).
local function pool_pop(p)
	local idle = p.idle
	local n = #idle
	local s = idle[n]
	idle[n] = nil
	return s
end

-- An idle connection heard from (the server closed it, or sent what nobody asked for)
-- or idle for idle_timeout: it leaves its pool.
local function pool_drop(s)
	local p = pooled[s]
	s:close()
	if not p then return end                 -- taken from the pool meanwhile
	pooled[s] = nil
	for i = 1, #p.idle do
		if p.idle[i] == s then table.remove(p.idle, i) break end
	end
	p.open = p.open - 1
	pool_wake(p)
end

-- Ends a use of s: kept idle when it can carry another request, else closed; either way
-- a waiting caller may go on.
local function pool_release(p, s, keep)
	local watched   -- nil: not kept; false: s:idle found something buffered
	if keep and #p.idle < http.max_idle_per_host then
		watched = s:idle(pool_drop, http.idle_timeout or nil, 'weak')
	end
	if watched or (watched == false and s:tls() and s:buffered() == 0) then
		p.idle[#p.idle + 1] = s
		pooled[s] = watched and p
	else
		s:close()
		p.open = p.open - 1
	end
	pool_wake(p)
end

local function left(deadline)
	if not deadline then return nil end
	local r = deadline - now()
	return r > 0 and r or 0
end

local function shorter(a, b)
	if a and b then return a < b and a or b end
	return a or b
end

local function connect(host, port, secs, tls, o)
	if tls then   -- verified against o.tls's CAs, or the system's
		return lemio.tls.connect(host, port, { timeout = secs, context = o.tls })
	end
	return lemio.tcp.connect(host, port, secs)
end

-- A connection: an idle one (unless fresh), a new one while fewer than max are open,
-- or the first of those to come while the caller waits (until the deadline).
-- --> stream, reused | nil, message
local function pool_acquire(p, host, port, max, o, deadline, fresh, tls)
	if fresh and p.open >= max and #p.idle > 0 then
		local s = table.remove(p.idle, 1)
		pooled[s] = nil
		s:close()
		p.open = p.open - 1
	end
	while true do
		local s = not fresh and pool_pop(p)
		-- one whose wait ended (its pool_drop is on its way) is closed, not lent
		while s and pooled[s] and not s:idle(false) do
			pooled[s] = nil
			s:close()
			p.open = p.open - 1
			s = pool_pop(p)
		end
		if s then
			pooled[s] = nil
			return s, true
		end
		if p.open < max then
			p.open = p.open + 1
			-- protected: a connect that raises (called where lem cannot suspend, say) gives
			-- its place back before the error goes on
			local fine, err
			fine, s, err = pcall(connect, host, port, shorter(o.connect_timeout, left(deadline)),
				tls, o)
			if not (fine and s) then
				p.open = p.open - 1
				pool_wake(p)
				if not fine then error(s, 0) end
				return nil, err
			end
			return s, false
		end
		local w = utils.sleeper()
		p.waiting[#p.waiting + 1] = w
		if not w:sleep(shorter(1, left(deadline))) then
			for i = 1, #p.waiting do
				if p.waiting[i] == w then table.remove(p.waiting, i) break end
			end
			if deadline and now() >= deadline then return nil, 'timeout' end
		end
	end
end

-- http.close_idle(): closes this loop's idle client connections.
function http.close_idle()
	for _, p in pairs(pools) do
		for i = 1, #p.idle do
			pooled[p.idle[i]] = nil
			p.idle[i]:close()
		end
		p.open = p.open - #p.idle
		p.idle = {}
	end
end

-- A write that the server does not take within secs closes s: nil, 'timeout'.
local function timed_write(s, secs, ...)
	s:write_timeout(secs)
	local ok, err = s:write(...)
	if err == 'timeout' then s:close() end
	return ok, err
end

-- A response holds its connection in a claim, { s = stream, p = pool }, until its body
-- has been read whole: then the connection goes back to the pool (closed when it cannot
-- carry another request). A claim collected with its response while it still holds a
-- connection (a body neither read to the end nor closed) gives that connection's place
-- under max_per_host back: the finalizer only counts (waiting callers look again at
-- least once a second), and the stream's own finalizer closes it.
local RELEASED = {}      -- the claim of a response whose connection went back at once
local function claim(s, p)
	local c = { s = s, p = p }
	local u = newproxy(true)
	getmetatable(u).__gc = function()
		if c.s then c.p.open = c.p.open - 1 end
	end
	c.gc = u
	return c
end

local function give_back(r)
	local c, b = r._c, r._body
	if c.s and b.done then
		pool_release(c.p, c.s, not b.err and r._keep)
		c.s = nil
	end
end

local function drop(r)
	local c = r._c
	if c.s then
		pool_release(c.p, c.s, false)
		c.s = nil
	end
end

function ClientResponse:body()
	local data, err = body_all(self._body)
	if data then give_back(self) else drop(self) end
	return data, err
end

function ClientResponse:read()
	local data, err = body_piece(self._body)
	if not data then
		if err then drop(self) else give_back(self) end
	end
	return data, err
end

function ClientResponse:chunks()
	return function() return (self:read()) end
end

-- r:close(): drops the connection (a body left unread cannot be skipped cheaply); reads
-- after it return nil, 'closed'.
function ClientResponse:close()
	local b = self._body
	if not b.done then b.done, b.err = true, 'closed' end
	drop(self)
	return true
end

-- r:upgrade() --> stream | nil, message: after 101 Switching Protocols, the connection,
-- which is the caller's from then on (it leaves the pool and its count).
function ClientResponse:upgrade()
	if self.status ~= 101 then return nil, 'not switching protocols' end
	local c = self._c
	local s = c.s
	if not s then return nil, 'closed' end
	s:write_timeout(false)                -- the caller's, as a new stream's
	c.s = nil
	c.p.open = c.p.open - 1
	pool_wake(c.p)
	return s
end

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true,
	TRACE = true }
local REQ_FRAMING = { ['content-length'] = true, ['transfer-encoding'] = true,
	host = true }

local function parse_url(url)
	if url:find('[%z\1-\32\127]') then return nil end   -- would break the request line
	local scheme, host, port, path = url:match('^(https?)://%[([%x:.]+)%]:?(%d*)(.*)$')
	if not host then scheme, host, port, path = url:match('^(https?)://([^/:?#]+):?(%d*)(.*)$') end
	if not host then return nil end
	if path == '' then path = '/' end
	if not path:find('^/') then return nil end
	path = path:gsub('#.*$', '')
	local default = scheme == 'https' and 443 or 80
	port = tonumber(port) or default
	if port < 1 or port > 65535 then return nil end
	local authority = (host:find(':') and '[' .. host .. ']' or host) ..
		(port ~= default and ':' .. port or '')
	return host, port, path, authority, scheme == 'https'
end

-- parse_url's answers for the URLs asked for last, with the pool key of a plain one and
-- the whole head of a GET without fields: a client that asks the same URLs again does not
-- parse them again, nor make that head.
local URLS_MAX = 256
local urls, nurls = {}, 0
local function parse_url_cached(url)
	local u = urls[url]
	if not u then
		local host, port, path, authority, tls = parse_url(url)
		if not host then return nil end
		if nurls >= URLS_MAX then urls, nurls = {}, 0 end
		u = { host, port, path, authority, tls, host .. ':' .. port,
			'GET ' .. path .. ' HTTP/1.1\r\nHost: ' .. authority .. '\r\n\r\n' }
		urls[url], nurls = u, nurls + 1
	end
	return u[1], u[2], u[3], u[4], u[5], u[6], u[7]
end

-- The head of a request (get: that of a GET without fields, made once per URL). A bad
-- field raises where http.request was called, before a connection is taken.
local function request_head(o, method, path, authority, get)
	local body = o.body
	if not (body or o.headers or method == 'POST' or method == 'PUT' or method == 'PATCH') then
		return method == 'GET' and get
			or method .. ' ' .. path .. ' HTTP/1.1\r\nHost: ' .. authority .. '\r\n\r\n'
	end
	local h = { method, ' ', path, ' HTTP/1.1\r\nHost: ', authority, '\r\n' }
	local n = o.headers and add_fields(h, 6, o.headers, REQ_FRAMING, 4) or 6
	if type(body) == 'function' then
		h[n + 1] = 'Transfer-Encoding: chunked\r\n'
		n = n + 1
	elseif body ~= nil or method == 'POST' or method == 'PUT' or method == 'PATCH' then
		h[n + 1], h[n + 2], h[n + 3] = 'Content-Length: ', #(body or ''), '\r\n'
		n = n + 3
	end
	h[n + 1] = '\r\n'
	return concat(h)
end

-- Writes the request, its head and o.body, on s. --> true | nil, message [, true: an
-- error the body function raised, to raise again once the connection is closed]
local function send_request(s, o, head, deadline)
	local body = o.body
	if body == nil then return timed_write(s, shorter(o.read_timeout, left(deadline)), head) end
	if type(body) ~= 'function' then
		return timed_write(s, shorter(o.read_timeout, left(deadline)), head, body)
	end
	local wt = function() return shorter(o.read_timeout, left(deadline)) end
	local ok, err = timed_write(s, wt(), head)
	while ok do
		local fine, piece = pcall(body)
		if not fine then return nil, piece, true end
		if piece == nil then return timed_write(s, wt(), '0\r\n\r\n') end
		piece = tostring(piece)
		if #piece > 0 then ok, err = timed_write(s, wt(), format('%x\r\n', #piece), piece, '\r\n') end
	end
	return nil, err
end

-- One exchange. --> response | nil, message, reused (the connection came from the pool)
local function attempt(o, method, host, port, head, deadline, fresh, tls, key)
	-- a TLS connection is reused only for requests that verify as it was verified
	if tls then key = 'https:' .. tostring(o.tls or '') .. ':' .. key end
	local p = pool_of(key)
	local s, reused = pool_acquire(p, host, port, o.max_per_host or http.max_per_host, o,
		deadline, fresh, tls)
	if not s then return nil, reused end
	if not reused then s:limit(65536) end  -- a pooled one has it already
	local ok, err, raised = send_request(s, o, head, deadline)
	local cut                             -- the write's error, when the answer came first
	if not ok then
		if raised or err == 'timeout' then
			pool_release(p, s, false)
			if raised then error(err, 0) end
			return nil, err, reused
		end
		-- the server may have answered before it stopped reading (a 413 to a body too
		-- large, then a reset): that answer is the response, if it came
		cut = err
	end
	local status, reason, minor, kind, length, keep, text
	repeat
		text, err = s:read('*u', CRLF2, shorter(o.read_timeout, left(deadline)))
		if not text then
			pool_release(p, s, false)
			if err == 'line too long' then err = 'bad response: head too long' end
			return nil, cut or err, reused
		end
		status, reason, minor, kind, length, keep = client_parser:response_head(text)
		if not status then
			pool_release(p, s, false)
			return nil, 'bad response: ' .. (status == false and 'incomplete head' or minor)
		end
	until status >= 200 or status == 101
	if method == 'HEAD' or NOBODY[status] or status < 200 then kind = 'none' end
	local max, b = o.max_body or 8 * 1048576, nil
	if kind == 'length' and length <= PIECE and length <= max and s:buffered() >= length then
		-- the whole body came with the head: taken now, the connection goes back at once
		b = { kind = 'length', left = 0, got = length, max = max, done = true,
			pending = length > 0 and s:read(length) or nil }
	else
		-- max_body bounds r:body(); r:read() streams a body of any length
		b = new_body(s, kind, length, client_parser, math.huge)
		b.deadline, b.each, b.whole_max = deadline, o.read_timeout, max
	end
	local r = setmetatable({ status = status, reason = reason,
		version = minor == 1 and '1.1' or '1.0', _head = text,
		_body = b, _c = RELEASED, _keep = keep and kind ~= 'close' and status ~= 101 and not cut },
		ClientResponse)   -- after 101 the connection speaks another protocol: never pooled
	if status == 101 or not b.done then
		r._c = claim(s, p)
	else
		pool_release(p, s, r._keep)
	end
	return r
end

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local CREDENTIALS = { authorization = true, cookie = true, ['proxy-authorization'] = true }

-- The URL that Location names, from the URL of the request.
-- A path (from '/') without its '.' and '..' segments (RFC 3986 5.2.4).
local function remove_dots(path)
	local out, dir = {}, false
	for seg in path:gmatch('/([^/]*)') do
		if seg == '..' then out[#out], dir = nil, true
		elseif seg == '.' then dir = true
		else out[#out + 1], dir = seg, false end
	end
	return '/' .. concat(out, '/') .. (dir and #out > 0 and '/' or '')
end

local function resolve(base, loc)
	if loc:find('^%a[%w+.-]*:') then return loc end
	local origin, path = base:match('^(%a[%w+.-]*://[^/?#]*)([^?#]*)')
	if loc:find('^//') then return base:match('^%a[%w+.-]*:') .. loc end
	if loc:find('^[?#]') then return origin .. path .. loc end
	local p, rest = loc:match('^([^?#]*)(.*)$')
	if not p:find('^/') then p = (path ~= '' and path or '/'):gsub('[^/]*$', '') .. p end
	return origin .. remove_dots(p) .. rest
end

-- The request that follows a redirect r, or nil when it cannot or must not be followed.
local function follow(r, o, method, url, host, port)
	local loc = r.headers.location
	if not loc then return nil end
	local to = resolve(url, loc)
	local h2, p2 = parse_url(to)
	if not h2 then return nil end
	local n = {}
	for k, v in pairs(o) do n[k] = v end
	n.url = to
	local st = r.status
	if st == 301 or st == 302 or st == 303 then
		-- what browsers do, and RFC 9110 allows for 301 and 302: a GET (HEAD stays HEAD),
		-- and the body is not sent again
		if method ~= 'HEAD' then n.method = 'GET' end
		n.body = nil
	elseif type(o.body) == 'function' then
		return nil                        -- 307, 308: the body would be sent again
	end
	if n.headers then
		local hs = {}
		for k, v in pairs(n.headers) do
			local l = lower(k)
			-- credentials go to the host they were meant for only; a body's fields with it
			if not ((CREDENTIALS[l] and (h2 ~= host or p2 ~= port)) or
					(n.body == nil and o.body ~= nil and l:find('^content%-'))) then
				hs[k] = v
			end
		end
		n.headers = hs
	end
	return n
end

local OPTIONS = { method = 'string', url = 'string', headers = 'table', timeout = 'number',
	connect_timeout = 'number', read_timeout = 'number', max_body = 'number',
	redirects = 'number', max_per_host = 'number', tls = 'userdata' }
local CLIENT_DEFAULTS = { connect_timeout = 10, read_timeout = 30, redirects = 0 }

-- The options of a request's table, checked (errors for request's caller), with the
-- defaults where none is given.
local function request_options(t)
	local o = {}
	for k, v in pairs(CLIENT_DEFAULTS) do o[k] = v end
	for k, v in pairs(t) do
		local want = OPTIONS[k]
		if k == 'body' then
			if type(v) ~= 'string' and type(v) ~= 'function' then
				error('bad option body (string or function expected)', 3)
			end
		elseif not want then error('unknown option ' .. tostring(k), 3)
		elseif type(v) ~= want and v ~= false then
			error('bad option ' .. k .. ' (' .. want .. ' expected)', 3)
		elseif want == 'number' and v and not (v >= (k == 'max_per_host' and 1 or 0)) then
			error('bad option ' .. k .. ' (' .. (k == 'max_per_host' and 'number >= 1'
				or 'non-negative number') .. ' expected)', 3)   -- NaN too
		end
		o[k] = v or nil                       -- false: no timeout
	end
	return o
end

-- http.request{ method, url, headers, body, timeout, connect_timeout, read_timeout,
--   max_body, redirects, max_per_host, tls } | http.request(url) --> response | nil, message
-- An https:// url is fetched over TLS, verified against the CAs of tls (a context of
-- lem.io's) or, without one, the system's.
function http.request(t)
	local it, mh, mi = http.idle_timeout, http.max_per_host, http.max_idle_per_host
	if not ((it == false or (type(it) == 'number' and it >= 0)) and type(mh) == 'number'
			and mh >= 1 and type(mi) == 'number' and mi >= 0) then
		error('bad http.idle_timeout, http.max_per_host or http.max_idle_per_host', 2)
	end
	local o, url = CLIENT_DEFAULTS, t          -- a URL alone: the defaults as they are
	if type(t) ~= 'string' then
		if type(t) ~= 'table' then error('bad argument #1 to \'request\' (table expected)', 2) end
		o = request_options(t)
		url = tostring(o.url)
	end
	local deadline = o.timeout and now() + o.timeout
	local redirects = o.redirects or 0
	while true do
		local method = o.method or 'GET'
		if not (IDEMPOTENT[method] or method:find(TOKEN)) then error('bad method', 2) end
		local host, port, path, authority, tls, key, get = parse_url_cached(url)
		if not host then error('bad url ' .. url .. ' (http[s]://host[:port]/path expected)', 2) end
		local head = request_head(o, method, path, authority, get)
		local r, err, reused = attempt(o, method, host, port, head, deadline, false, tls, key)
		-- a pooled connection the server closed meanwhile: once more on a new one, when
		-- the request may be repeated
		if not r and reused and (err == 'closed' or err == 'connection reset by peer')
				and IDEMPOTENT[method] and type(o.body) ~= 'function' then
			r, err = attempt(o, method, host, port, head, deadline, true, tls, key)
		end
		if not r then return nil, err end
		r.url = url
		local n = redirects > 0 and REDIRECT[r.status] and follow(r, o, method, url, host, port)
		if not n then return r end
		-- the redirect's own body: read when short, else its connection is dropped
		local b = r._body
		if b.kind == 'length' and b.left <= 65536 then r:body() else r:close() end
		redirects, o, url = redirects - 1, n, n.url
	end
end

return http
