-- http.lua: lem.http's Lua half: the server's connections, the client, header tables and
-- bodies. http.c builds it into the binary and runs it with the C half (the parser's
-- bindings) as its argument; it returns the module.
local C = ...
local lemio = require 'lem.io'
local utils = require 'lem.utils'
local signal = require 'lem.signal'
local stdio = require 'io'   -- Lua's own io, for the log on stderr

local type, pairs, next, tostring, tonumber = type, pairs, next, tostring, tonumber
local setmetatable, rawget, rawset, xpcall = setmetatable, rawget, rawset, xpcall
local concat, format, lower = table.concat, string.format, string.lower
local now, timer, traceback = utils.now, utils.timer, debug.traceback

local http = {}

local PIECE = 65536          -- bodies are read this much at a time at most
local DRAIN_MAX = 262144     -- an unread request body up to this is read and dropped
local LINGER_TIME = 1        -- at most this long (seconds), this much and
local LINGER_BYTES = 1048576 -- read and dropped before an error close (linger)
local LINGER_QUIET = 0.05    -- or until the client sent nothing for this long
local CRLF2 = '\r\n\r\n'

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
	__newindex = function(h, k, v)
		rawset(h, type(k) == 'string' and lower(k) or k, v)
	end,
}

local TOKEN = "^[%w!#$%%&'*+.^_`|~-]+$"
local BADVALUE = '[%z\1-\8\10-\31\127]'   -- control characters but HTAB: no CR, no LF

-- Appends name: value lines of the table h to t (from t[n + 1]) but those in skip, and
-- returns the new n. A value may be a list (one line each); false leaves the field out.
-- A name or value that would break the head raises: header injection is a bug to fix.
local function add_fields(t, n, h, skip)
	for k, v in pairs(h) do
		if v ~= false and not skip[k] then
			if type(k) ~= 'string' or not k:find(TOKEN) then
				error('invalid header name ' .. format('%q', tostring(k)), 3)
			end
			local list = type(v) == 'table' and v or { v }
			for i = 1, #list do
				local s = tostring(list[i])
				if s:find(BADVALUE) then
					error('invalid value for header ' .. k, 3)
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
-- timeout, or given). before() runs before the first read (100-continue); fail(status,
-- err) hears a failure that the peer caused.
local function remaining(b)
	if not b.deadline then return nil end
	local r = b.deadline - now()
	return r > 0 and r or 0
end

local function body_fail(b, err, status)
	b.done, b.err = true, err
	if b.fail then
		if err == 'timeout' then status = 408
		elseif err == 'line too long' then status = 400 end
		b.fail(status, err)
	end
	return nil, err
end

local function body_piece(b)
	if b.done then return nil, b.err end
	if b.before then
		local f = b.before
		b.before = nil
		f()
	end
	if b.conn and b.conn.dead then return body_fail(b, 'closed') end
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
			if want > 0 then
				data, err = s:read(want < PIECE and want or PIECE, remaining(b))
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
			if err == 'closed' then return nil end
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

local function body_all(b)
	if b.whole then return b.whole end
	if b.kind == 'length' and b.left > b.max then
		return body_fail(b, 'body too large', 413)
	end
	local parts, n = {}, 0
	while true do
		local data, err = body_piece(b)
		if not data then
			if err then return nil, err end
			break
		end
		n = n + 1
		parts[n] = data
	end
	b.whole = concat(parts)
	return b.whole
end

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
Request.__index = Request
body_methods(Request)
function Request:peer() return self._conn.s:peer() end

local Response = {}
Response.__index = Response

-- Writes to the connection, closing it when the peer has not taken everything within
-- write_timeout. Returns true, or nil and a message once the connection is dead.
local function conn_write(conn, ...)
	if conn.dead then return nil, 'closed' end
	local tm
	if conn.wt then
		tm = timer(conn.wt, function()
			if not conn.dead then
				conn.dead = true
				conn.s:close()
			end
		end)
	end
	local ok, err = conn.s:write(...)
	if tm then tm:cancel() end
	if not ok then conn.dead = true end
	return ok, err
end

-- Reads and drops what the client is still sending, so that closing the connection does
-- not reset it (unread input makes the kernel send RST) before the client has read the
-- answer. lem.io has no half-close: a client that waits for the end of the connection
-- would wait for us, so this stops at the first quiet LINGER_QUIET, or after
-- LINGER_TIME or LINGER_BYTES.
local function linger(conn)
	if conn.dead then return end
	local s, deadline, n = conn.s, now() + LINGER_TIME, 0
	while n < LINGER_BYTES do
		local r = deadline - now()
		if r <= 0 then return end
		local data = s:read(4096, r < LINGER_QUIET and r or LINGER_QUIET)
		if not data then return end
		n = n + #data
	end
end

-- An answer that ends the connection: a status of the server's own (400, 408, 413, ...).
local function error_answer(conn, status)
	local reason = REASONS[status] or 'Error'
	local body = reason .. '\n'
	return conn_write(conn, 'HTTP/1.1 ', status, ' ', reason, '\r\nServer: ', conn.srv.name,
		'\r\nDate: ', date(), '\r\nContent-Type: text/plain\r\nContent-Length: ', #body,
		'\r\nConnection: close\r\n\r\n', body)
end

local NOBODY = { [204] = true, [304] = true }
local FRAMING = { ['content-length'] = true, ['transfer-encoding'] = true,
	connection = true }

local function check_status(status)
	if type(status) ~= 'number' or status < 200 or status > 599 or status % 1 ~= 0 then
		error('bad status ' .. tostring(status) .. ' (200 to 599 expected)', 3)
	end
end

-- The head of an answer framed by `framing`: a number (Content-Length), 'chunked', or
-- nil (no body, or one the connection's end delimits).
local function head(res, status, framing)
	local conn, req, h = res._conn, res._req, res.headers
	local b = req._body
	-- A body left unread that the client may not send (100-continue not sent) or that is
	-- too long to drop: the connection cannot carry another request.
	if not b.done and (b.before or (b.kind == 'length' and b.left > DRAIN_MAX)) then
		conn.close = true
	end
	local c = rawget(h, 'connection')
	if c and lower(tostring(c)):find('close', 1, true) then conn.close = true end
	local t = { 'HTTP/1.1 ', status, ' ', REASONS[status] or 'Unknown', '\r\n' }
	local n = 5
	if rawget(h, 'server') == nil then
		t[6], t[7], t[8] = 'Server: ', conn.srv.name, '\r\n'
		n = 8
	end
	if rawget(h, 'date') == nil then
		t[n + 1], t[n + 2], t[n + 3] = 'Date: ', date(), '\r\n'
		n = n + 3
	end
	n = add_fields(t, n, h, FRAMING)
	if type(framing) == 'number' then
		t[n + 1], t[n + 2], t[n + 3] = 'Content-Length: ', framing, '\r\n'
		n = n + 3
	elseif framing == 'chunked' then
		t[n + 1] = 'Transfer-Encoding: chunked\r\n'
		n = n + 1
	end
	if conn.close then
		t[n + 1] = 'Connection: close\r\n'
		n = n + 1
	elseif req.version == '1.0' then
		t[n + 1] = 'Connection: keep-alive\r\n'
		n = n + 1
	end
	t[n + 1] = '\r\n'
	return concat(t)
end

-- res:send(status [, body]) --> true | nil, message
function Response:send(status, body)
	check_status(status)
	if body == nil then body = '' end
	if type(body) ~= 'string' and type(body) ~= 'number' then
		error('bad body (string expected, got ' .. type(body) .. ')', 2)
	end
	body = tostring(body)
	if self._state then return nil, 'response already sent' end
	self._state = 'done'
	local nobody = NOBODY[status]
	local h = head(self, status, not nobody and #body or nil)
	if nobody or self._req.method == 'HEAD' then return conn_write(self._conn, h) end
	return conn_write(self._conn, h, body)
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
		self._conn.close = true          -- HTTP/1.0: the end of the connection ends the body
		mode = 'close'
	end
	if req.method == 'HEAD' then mode = 'none' end
	self._state, self._mode = 'head', mode
	return conn_write(self._conn, head(self, status, framing))
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

-- res:flush() --> true: every write goes to the kernel already.
function Response:flush()
	if self._conn.dead then return nil, 'closed' end
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
		self._conn.close = true          -- shorter than announced: the client must see the end
	end
	return true
end

local function split_target(target)
	local path = target
	if target:find('^%a[%w+.-]*://') then            -- absolute-form
		path = target:match('^%a[%w+.-]*://[^/?]*(.*)$')
		if path == '' then path = '/' end
	end
	local q = path:find('?', 1, true)
	if q then return path:sub(1, q - 1), path:sub(q + 1) end
	return path, nil
end

-- Serves the requests of one connection, in order, until it is to be closed.
local function serve(srv, s)
	local o, P, handler = srv.o, srv.parser, srv.handler
	local conn = { s = s, srv = srv, wt = o.write_timeout }
	s:limit(o.max_header_bytes)
	local first = true
	srv.conns[s] = conn
	while not conn.dead do
		-- The head, whole: its first byte may take header_timeout on a new connection,
		-- idle_timeout on a kept-alive one; the rest, header_timeout. Until that byte
		-- is read the connection is idle: a drain closes it at once (Server:shutdown).
		local data, err, lead
		if srv.draining then return end
		conn.idle = true
		lead, err = s:read(1, first and o.header_timeout or o.idle_timeout)
		conn.idle = false
		if not lead then
			if err == 'timeout' and first then error_answer(conn, 408) end
			return
		end
		if srv.draining then conn.close = true end
		first = false
		data, err = s:read('*u', CRLF2, o.header_timeout)
		if not data then
			if err == 'line too long' then
				-- it stays buffered: the parser tells a long target (414) from a long head
				local _, status = P:request(lead .. (s:read(o.max_header_bytes + 4, 0) or ''))
				error_answer(conn, status or 431)
				return linger(conn)
			elseif err == 'timeout' then
				error_answer(conn, 408)
			end
			return
		end
		local text = lead .. data
		local method, target, minor, kind, length, keep, expect, h, m, len = P:request(text)
		-- a head of empty lines only: those may precede a request line
		while method == false and #text <= o.max_header_bytes and text:find('^[\r\n]*$') do
			data = s:read('*u', CRLF2, o.header_timeout)
			if not data then return end
			text = text .. data
			method, target, minor, kind, length, keep, expect, h, m, len = P:request(text)
		end
		if not method or len ~= #text then
			error_answer(conn, method == nil and target or 400)   -- target: the status
			return linger(conn)
		end
		if kind == 'length' and length > o.max_body then
			error_answer(conn, 413)
			return linger(conn)
		end
		if m then multi[h] = m end
		local path, query = split_target(target)
		local b = new_body(s, kind, length, P, o.max_body)
		local req = setmetatable({ method = method, target = target, path = path,
			query = query, version = minor == 1 and '1.1' or '1.0',
			headers = setmetatable(h, Headers), _conn = conn, _body = b }, Request)
		local res = setmetatable({ headers = setmetatable({}, OutHeaders), _conn = conn,
			_req = req }, Response)
		b.conn, b.timeout = conn, o.body_timeout
		b.fail = function(status)
			conn.close = true
			if status and not res._state then
				res._state = 'done'
				error_answer(conn, status)
			end
		end
		if expect then
			b.before = function()
				if not res._state then conn_write(conn, 'HTTP/1.1 100 Continue\r\n\r\n') end
			end
		end
		conn.close = not keep
		local ok, e = xpcall(function() return handler(req, res) end, traceback)
		if not ok then
			o.log('handler error: ' .. tostring(e))
			conn.close = true
			if not res._state then
				res._state = 'done'
				error_answer(conn, 500)
			end
		elseif not res._state then
			res:send(200)                    -- as Go does for a handler that sent nothing
		elseif res._state == 'head' then
			res:finish()
		end
		if conn.dead then return end
		if not b.done and not conn.close then
			-- drop the unread body: a little of it, or the connection goes
			b.before, b.fail = nil, nil
			if b.kind == 'chunked' then b.max = math.min(b.max, b.got + DRAIN_MAX) end
			while body_piece(b) do end
			if b.err then conn.close = true end
		end
		if conn.close then
			if not b.done or b.err then linger(conn) end
			return
		end
	end
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
			if type(v) ~= type(DEFAULTS[k]) and v ~= false and k ~= 'tls' then
				error('bad option ' .. k .. ' (' .. type(DEFAULTS[k]) .. ' expected)', 3)
			end
			o[k] = v or nil               -- false: no timeout
		end
	end
	return o
end

local Server = {}
Server.__index = Server
function Server:close() return self.listener:close() end
function Server:port() return self.listener:port() end

-- server:shutdown([timeout]) --> true: stops accepting, closes the idle connections at
-- once (a request whose first byte was read is served), answers the requests in flight
-- with Connection: close, and after timeout seconds (if given) closes what is left.
-- The process's shutdown (SIGTERM, utils.shutdown) calls it for every server.
function Server:shutdown(timeout)
	if timeout ~= nil and type(timeout) ~= 'number' then
		error("bad argument #1 to 'shutdown' (number expected, got " .. type(timeout) .. ')', 2)
	end
	self.draining = true
	self.listener:close()
	for s, conn in pairs(self.conns) do
		if conn.idle then s:close() else conn.close = true end
	end
	if timeout and next(self.conns) then
		self.drain_timer = timer(timeout, function()
			for s in pairs(self.conns) do s:close() end
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
	srv.conns = setmetatable({}, { __mode = 'k' })
	local function connection(s)
		local ok, err = xpcall(function() return serve(srv, s) end, traceback)
		if not ok then o.log('connection error: ' .. tostring(err)) end
		srv.conns[s] = nil
		s:close()
		if srv.drain_timer and next(srv.conns) == nil then srv.drain_timer:cancel() end
	end
	utils.spawn(function() listener:autospawn(connection) end)
	-- the process's shutdown drains the server (a wait that keeps no loop running)
	utils.spawn(function()
		if signal.wait('shutdown') and not srv.draining then srv:shutdown() end
	end)
	return srv
end

-- http.listen(host, port, handler [, options]) --> server | nil, message
function http.listen(host, port, handler, opts)
	if type(handler) ~= 'function' then error('bad argument #3 to \'listen\' (function expected)', 2) end
	local o = options(opts)
	local l, err
	if o.tls then l, err = lemio.tls.listen(host, port, o.tls) else l, err = lemio.tcp.listen(host, port) end
	if not l then return nil, err end
	return start(l, handler, o)
end

-- http.listen_unix(path, handler [, options]) --> server | nil, message
function http.listen_unix(path, handler, opts)
	if type(handler) ~= 'function' then error('bad argument #2 to \'listen_unix\' (function expected)', 2) end
	local o = options(opts)
	local l, err = lemio.unix.listen(path)
	if not l then return nil, err end
	return start(l, handler, o)
end

---------------------------------------------------------------- the client

local ClientResponse = {}
ClientResponse.__index = ClientResponse
body_methods(ClientResponse)

-- Idle keep-alive connections by 'host:port', in this loop's state (so per loop).
http.max_idle_per_host = 8
local pool = {}

local function pool_put(key, s)
	local list = pool[key]
	if not list then list = {} pool[key] = list end
	if #list >= http.max_idle_per_host then s:close() return end
	list[#list + 1] = s
end

-- http.close_idle(): closes this loop's idle client connections.
function http.close_idle()
	for key, list in pairs(pool) do
		for i = 1, #list do list[i]:close() end
		pool[key] = nil
	end
end

local function pool_take(key)
	local list = pool[key]
	local s = list and list[#list]
	if s then list[#list] = nil end
	return s
end

-- A response whose body has been read whole gives its connection back to the pool.
-- One that cannot carry another request is closed.
local function give_back(r)
	local b = r._body
	if r._s and b.done then
		if not b.err and r._keep then pool_put(r._key, r._s) else r._s:close() end
		r._s = nil
	end
end

function ClientResponse:body()
	local data, err = body_all(self._body)
	if data then give_back(self) elseif self._s then self._s:close() self._s = nil end
	return data, err
end

function ClientResponse:read()
	local data, err = body_piece(self._body)
	if not data then
		give_back(self)
		if self._s and err then self._s:close() self._s = nil end
	end
	return data, err
end

function ClientResponse:chunks()
	return function() return (self:read()) end
end

-- r:close(): drops the connection (a body left unread cannot be skipped cheaply).
function ClientResponse:close()
	if self._s then self._s:close() self._s = nil end
	return true
end

local client_parser = C.parser{ max_head = 65536, max_fields = 1000, max_target = 8192 }
local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true,
	TRACE = true }
local REQ_FRAMING = { ['content-length'] = true, ['transfer-encoding'] = true,
	host = true }

local function parse_url(url)
	local scheme, host, port, path = url:match('^(https?)://%[([%x:.]+)%]:?(%d*)(.*)$')
	if not host then scheme, host, port, path = url:match('^(https?)://([^/:?#]+):?(%d*)(.*)$') end
	if not host then return nil end
	if path == '' then path = '/' end
	if not path:find('^/') then return nil end
	path = path:gsub('#.*$', '')
	local default = scheme == 'https' and 443 or 80
	port = tonumber(port) or default
	local authority = (host:find(':') and '[' .. host .. ']' or host) ..
		(port ~= default and ':' .. port or '')
	return host, port, path, authority, scheme == 'https'
end

local function attempt(t, method, host, port, path, authority, deadline, fresh, tls)
	-- a TLS connection is reused only for requests that verify as it was verified
	local key = (tls and 'https:' .. tostring(t.tls or '') .. ':' or '') .. host .. ':' .. port
	local left = function()
		if not deadline then return nil end
		local r = deadline - now()
		return r > 0 and r or 0
	end
	local s = not fresh and pool_take(key)
	local reused = s and true
	if not s then
		local err
		if tls then   -- verified against t.tls's CAs, or the system's
			s, err = lemio.tls.connect(host, port, { timeout = left(), context = t.tls })
		else
			s, err = lemio.tcp.connect(host, port, left())
		end
		if not s then return nil, err end
	end
	s:limit(65536)
	local body = t.body
	local h = { method, ' ', path, ' HTTP/1.1\r\nHost: ', authority, '\r\n' }
	local n = add_fields(h, 6, t.headers or {}, REQ_FRAMING)
	if type(body) == 'function' then
		h[n + 1] = 'Transfer-Encoding: chunked\r\n'
		n = n + 1
	elseif body ~= nil or method == 'POST' or method == 'PUT' or method == 'PATCH' then
		h[n + 1], h[n + 2], h[n + 3] = 'Content-Length: ', #(body or ''), '\r\n'
		n = n + 3
	end
	h[n + 1] = '\r\n'
	local ok, err
	if type(body) == 'function' then
		ok, err = s:write(concat(h))
		while ok do
			local piece = body()
			if piece == nil then ok, err = s:write('0\r\n\r\n') break end
			piece = tostring(piece)
			if #piece > 0 then ok, err = s:write(format('%x\r\n', #piece), piece, '\r\n') end
		end
	else
		ok, err = s:write(concat(h), body or '')
	end
	if not ok then
		s:close()
		return nil, err, reused
	end
	local status, reason, minor, kind, length, keep, _, headers, m
	repeat
		local text
		text, err = s:read('*u', CRLF2, left())
		if not text then
			s:close()
			return nil, err, reused
		end
		status, reason, minor, kind, length, keep, _, headers, m = client_parser:response(text)
		if not status then
			s:close()
			return nil, 'bad response: ' .. (status == false and 'incomplete head' or minor)
		end
	until status >= 200 or status == 101
	if method == 'HEAD' or NOBODY[status] or status < 200 then kind = 'none' end
	if m then multi[headers] = m end
	local b = new_body(s, kind, length, client_parser, t.max_body or 8 * 1048576)
	b.deadline = deadline
	local r = setmetatable({ status = status, reason = reason,
		version = minor == 1 and '1.1' or '1.0', headers = setmetatable(headers, Headers),
		_body = b, _s = s, _key = key, _keep = keep and kind ~= 'close' }, ClientResponse)
	give_back(r)
	return r
end

-- http.request{ method, url, headers, body, timeout, max_body, tls } | http.request(url)
--   --> response | nil, message
-- An https:// url is fetched over TLS, verified against the CAs of tls (a context of
-- lem.io's) or, without one, the system's.
function http.request(t)
	if type(t) == 'string' then t = { url = t } end
	if type(t) ~= 'table' then error('bad argument #1 to \'request\' (table expected)', 2) end
	local method = t.method or 'GET'
	if not tostring(method):find(TOKEN) then error('bad method', 2) end
	local host, port, path, authority, tls = parse_url(tostring(t.url))
	if not host then error('bad url ' .. tostring(t.url) .. ' (http[s]://host[:port]/path expected)', 2) end
	local deadline = t.timeout and now() + t.timeout
	local r, err, reused = attempt(t, method, host, port, path, authority, deadline, false, tls)
	-- a pooled connection the server closed meanwhile: once more on a new one, when the
	-- request may be repeated
	if not r and reused and err == 'closed' and IDEMPOTENT[method]
			and type(t.body) ~= 'function' then
		r, err = attempt(t, method, host, port, path, authority, deadline, true, tls)
	end
	return r, err
end

return http
