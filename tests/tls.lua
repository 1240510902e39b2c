-- lem.io's TLS: contexts, io.tls.listen and io.tls.connect, the stream's read formats and
-- writes over TLS, stream:tls(), verification failures, broken peers, and interop with
-- curl and the openssl command (both as client and as server). Certificates are made
-- here with the openssl command.
local t = require 'tap'
local open = io.open
local io = require 'lem.io'
local utils = require 'lem.utils'
local certs = require 'certs'

local sleeper = utils.sleeper()
local function sleep(s) sleeper:sleep(s) end

local dir, c = certs.for_test(t)
if not dir then return t.done() end

local base = t.nfds()

-- ---- contexts ----
local nilctx, err = io.tls.context{ cert = dir .. '/nothing.pem' }
t.is(nilctx, nil, 'a missing certificate file: nil')
t.like(err, 'nothing%.pem: .*no such file', '... and a message naming the file and why')
nilctx, err = io.tls.context{ cert = c.server, key = c.expired_key }
t.is(nilctx, nil, 'a key that is not the certificate\'s: nil')
t.like(err, 'expired%.key: .*key values mismatch', '... and OpenSSL\'s reason')
nilctx, err = io.tls.context{ ca = dir .. '/nothing' }
t.like(err, 'nothing: no such file', 'a missing CA file: nil, message')
t.error(function() io.tls.context{ min_version = '1.0' } end, "min_version must be '1%.2' or '1%.3'",
	'min_version is checked')
t.error(function() io.tls.context{ alpn = 'h2' } end, 'alpn must be a list', 'alpn is checked')
t.error(function() io.tls.context() end, 'bad argument #1', 'context wants a table')
-- options of the wrong type or name are errors: verify = 'no' would verify, a misspelt
-- option would leave its default, 'a.pem\0x' would read a.pem
for _, bad in ipairs({ { { verify = 'no' }, 'verify must be a boolean' },
		{ { verify = 0 }, 'verify must be a boolean' },
		{ { resumption = 'off' }, 'resumption must be a boolean' },
		{ { alpn = { 1 } }, 'alpn must be a list of strings' },
		{ { alpn = { '' } }, 'alpn must list names of 1 byte or more' },
		{ { verfiy = false }, 'unknown option verfiy' },
		{ { [1] = 'x' }, 'unknown option %(a number%)' },
		{ { cert = c.server .. '\0x', key = c.key }, 'zero byte in cert' } }) do
	t.error(function() io.tls.context(bad[1]) end, "bad argument #1 to 'context' %(" .. bad[2],
		'context: ' .. bad[2]:gsub('%%', ''))
end
-- io.tls.connect's bad arguments: errors at the caller's line, naming connect
for _, bad in ipairs({ { { 1, 1 }, "#1 to 'connect' %(string expected, got number%)" },
		{ { '127.0.0.1\0x', 1 }, "#1 to 'connect' %(zero byte in host name%)" },
		{ { 'h', 'x' }, "#2 to 'connect' %(number expected, got string%)" },
		{ { 'h', 70000 }, "#2 to 'connect' %(port must be a whole number" },
		{ { 'h', 1, 'x' }, "#3 to 'connect' %(table or number expected%)" },
		{ { 'h', 1, { tmeout = 1 } }, "#3 to 'connect' %(unknown option tmeout%)" },
		{ { 'h', 1, { timeout = 'x' } }, "#3 to 'connect' %(timeout: number expected%)" },
		{ { 'h', 1, { context = {} } }, "#3 to 'connect' %(context: a context of io.tls.context expected%)" },
		{ { 'h', 1, { name = 5 } }, "#3 to 'connect' %(name: string or false expected%)" },
		{ { 'h', 1, { name = 'a\0b' } }, "#3 to 'connect' %(zero byte in name%)" },
		{ { 'h', 1, { name = '' } }, "#3 to 'connect' %(name: 1 to 255 bytes expected%)" },
		{ { 'h', 1, { name = ('a'):rep(256) } }, "#3 to 'connect' %(name: 1 to 255 bytes expected%)" } }) do
	t.error(function() local s = io.tls.connect(unpack(bad[1])) return s end,
		'tls%.lua:%d+: bad argument ' .. bad[2], 'io.tls.connect: ' .. bad[2]:gsub('%%', ''))
end
t.error(function() io.tls.listen('127.0.0.1', 0, io.tls.context{ verify = false }) end,
	'without a certificate', 'a listener wants a context with a certificate')
local cadir = dir .. '/cas'
os.execute('mkdir ' .. cadir .. ' && cp ' .. c.ca .. ' ' .. cadir .. '/ && cp ' .. c.server .. ' ' .. cadir .. '/')
t.ok(io.tls.context{ ca = cadir }, 'a CA directory is read at once')

local sctx = assert(io.tls.context{ cert = c.server, key = c.key, alpn = { 'x-lem', 'http/1.1' } })
local cctx = assert(io.tls.context{ ca = c.ca, alpn = { 'h2', 'http/1.1' } })
local cadirctx = assert(io.tls.context{ ca = cadir })

-- ---- an echo server ----
local server_errors, info_at = {}, {}   -- info_at[error]: tls() of the stream that had it
local function echo(s)
	while true do
		local line, rerr = s:read('*l')
		if not line then server_errors[#server_errors + 1], info_at[rerr] = rerr, s:tls() break end
		if line == 'all' then
			s:write(('%d bytes\n'):format(#assert(s:read(1048576))))
		elseif line == 'big' then
			s:write(string.rep('0123456789abcdef', 65536))
		elseif line == 'close' then
			s:write('bye\n', 'and all the rest')
			break
		else
			s:write('echo ', line, '\n')
		end
	end
	s:close()
end
local l = assert(io.tls.listen('127.0.0.1', 0, sctx))
local port = l:port()
utils.spawn(function() l:autospawn(echo) end)

local s
s, err = io.tls.connect('localhost', port, { context = cctx, timeout = 20 })
t.ok(s, 'connect to localhost, verified against the CA', err)
local info = s:tls()
t.is(info.version, 'TLSv1.3', 'tls(): the protocol version')
t.like(info.cipher, '^TLS_', 'tls(): the cipher')
t.is(info.alpn, 'http/1.1', 'tls(): the protocol ALPN chose (the server\'s first the client offers)')
t.like(info.subject, 'CN=localhost', 'tls(): the peer certificate\'s subject')
t.is(info.verified, true, 'tls(): verified')
t.is(info.close_notify, nil, 'tls(): no close_notify while the peer has not closed')
t.is(s:write('hello', ' ', 'world\n'), true, 'write several pieces')
t.is(s:read('*l', 5), 'echo hello world', 'read a line')
s:write('one\ntwo\n')
t.is(s:read('*u', '\n', 5), 'echo one\n', "read '*u'")
t.is(s:read(4, 5), 'echo', 'read a count')
t.is(s:read('*l', 5), ' two', '... and the rest of the line')
s:write('all\n', string.rep('z', 1048576))
t.is(s:read('*l', 5), '1048576 bytes', 'a 1 MiB write arrives whole')
s:write('big\n')
local big = s:read(1048576, 5)
t.is(big and #big, 1048576, 'a 1 MiB answer arrives whole')
t.is(big, string.rep('0123456789abcdef', 65536), '... intact')
t.is(select(2, s:read('*l', 0.05)), 'timeout', 'a read times out as on a plain stream')
local first
utils.spawn(function() first = select(2, s:read('*l', 0.2)) end)   -- nothing comes: it waits
utils.yield()
t.is(select(2, s:read('*l', 5)), 'busy', 'a second reader: busy')
sleep(0.3)
t.is(first, 'timeout', '... while the first waits, until its timeout')
-- a writer and a reader at once on one stream: 4 MB each way, more than the sockets hold
local line1k = string.rep('y', 999)
local wrote
utils.spawn(function()
	local okw = true
	for i = 1, 4000 do okw = okw and s:write(i, line1k, '\n') end
	wrote = okw
end)
local got = 0
for i = 1, 4000 do
	local l1 = s:read('*l', 5)
	if l1 ~= 'echo ' .. i .. line1k then break end
	got = got + 1
end
t.is(got, 4000, 'a coroutine reads 4000 echoed lines while another writes them')
t.is(wrote, true, '... and the writer finished')
t.ok(s:peer() == '127.0.0.1', 'peer() answers')
s:write('close\n')
t.is(s:read('*l', 5), 'bye', 'the line before the close')
t.is(s:read('*a', 5), 'and all the rest', "'*a' reads until the peer's close")
t.is(s:tls().close_notify, true, '... which came with its close_notify')
t.is(select(2, s:read('*l', 5)), 'closed', 'then closed')
t.is(s:close(), true, 'close')
t.is(select(2, s:close()), 'closed', 'close twice: closed')

-- the default context: the system's CAs know nothing of the test CA
s, err = io.tls.connect('localhost', port, { timeout = 20 })
t.is(s, nil, 'default context: an unknown CA fails')
t.like(err, '^certificate verify failed: unable to get local issuer certificate', '... naming the reason')
s, err = io.tls.connect('127.0.0.1', port, { context = cctx, timeout = 20 })
t.ok(s, 'an address is checked against the IP names of the certificate', err)
if s then s:close() end
s, err = io.tls.connect('127.0.0.1', port, { context = cctx, name = 'other.example', timeout = 20 })
t.like(err, 'certificate verify failed: hostname mismatch', 'another name: hostname mismatch')
s, err = io.tls.connect('127.0.0.1', port, { context = cctx, name = 'localhost.', timeout = 20 })
t.ok(s, 'a fully qualified name\'s final dot is left out of the check (and of SNI)', err)
if s then s:close() end
s, err = io.tls.connect('127.0.0.1', port, { context = cadirctx, timeout = 20 })
t.ok(s, 'a context whose CAs came from a directory verifies', err)
if s then s:close() end
s, err = io.tls.connect('127.0.0.1', port, { context = io.tls.context{ verify = false }, timeout = 20 })
t.ok(s and s:tls().verified == false, 'verify = false: connects, tls().verified is false', err)
if s then s:close() end
local plain = assert(io.tcp.connect('127.0.0.1', port, 5))
t.is(plain:tls(), nil, 'a plain stream\'s tls() is nil')
plain:close()

-- accept hands out TLS streams too
local al = assert(io.tls.listen('127.0.0.1', 0, sctx))
local accepted
utils.spawn(function()
	local x = al:accept(20)
	accepted = x and x:read('*l', 20)
	if x then x:write('accepted\n') x:close() end
end)
s, err = io.tls.connect('localhost', al:port(), { context = cctx, timeout = 20 })
if s then s:write('via accept\n') end
t.is(s and s:read('*l', 20), 'accepted', 'listener:accept() returns a TLS stream')
t.is(accepted, 'via accept', '... which reads what the client sent')
if s then s:close() end
al:close()

-- certificates that fail
local function wait_errors(n)
	for _ = 1, 200 do
		if #server_errors >= n then break end
		sleep(0.01)
	end
end
local function serve(cert, key, extra)
	local opts = { cert = cert, key = key }
	for k, v in pairs(extra or {}) do opts[k] = v end
	local lis = assert(io.tls.listen('127.0.0.1', 0, assert(io.tls.context(opts))))
	utils.spawn(function() lis:autospawn(echo) end)
	return lis, lis:port()
end
local bad = {
	{ c.expired, c.expired_key, 'certificate has expired', 'an expired certificate' },
	{ c.wronghost, c.wronghost_key, 'hostname mismatch', 'a certificate for another host' },
	{ c.strange, c.strange_key, 'unable to get local issuer certificate', 'a certificate of an unknown CA' },
	{ c.otherca, c.otherca:gsub('%.pem$', '.key'), 'self%-signed certificate', 'a self-signed certificate' },
}
for _, b in ipairs(bad) do
	local lis, p = serve(b[1], b[2])
	s, err = io.tls.connect('localhost', p, { context = cctx, timeout = 20 })
	t.is(s, nil, b[4] .. ': nil')
	t.like(err, 'certificate verify failed: ' .. b[3], b[4] .. ': ' .. b[3])
	lis:close()
end
-- a subject of more than 256 bytes comes whole in tls()
do
	local ou, subject = ('u'):rep(60), '/CN=localhost'
	for i = 1, 5 do subject = subject .. '/OU=' .. ou .. i end
	os.execute(('openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes '
		.. '-keyout %s/long.key -out %s/long.pem -days 2 -subj "%s" 2>/dev/null'):format(dir, dir, subject))
	local lis, p = serve(dir .. '/long.pem', dir .. '/long.key')
	s = io.tls.connect('localhost', p, { context = io.tls.context{ verify = false }, timeout = 20 })
	t.is(s and s:tls().subject, subject, 'tls(): a subject of ' .. #subject .. ' bytes, whole')
	if s then s:close() end
	lis:close()
end

-- client certificates: verify = true on the server's context asks for them
local vl, vp = serve(c.server, c.key, { verify = true, ca = c.ca })
local withcert = assert(io.tls.context{ ca = c.ca, cert = c.client, key = c.client_key })
s, err = io.tls.connect('localhost', vp, { context = withcert, timeout = 20 })
t.ok(s, 'a client certificate the server verifies', err)
if s then
	s:write('hi\n')
	t.is(s:read('*l', 5), 'echo hi', '... and the connection works')
	s:close()
end
server_errors = {}
s = io.tls.connect('localhost', vp, { context = cctx, timeout = 20 })
local r = s and s:write('hi\n') and s:read('*l', 5)
t.is(r, nil, 'no client certificate: the server refuses (TLS 1.3 tells at the first read)')
wait_errors(2)
t.like(table.concat(server_errors, '|'), 'peer did not return a certificate', "... its read says 'peer did not return a certificate'")
if s then s:close() end
vl:close()

-- min_version: a 1.3-only client and a server that stops at 1.2 (the openssl command
-- is the server below); here: a 1.3 context still talks to lem's server
s, err = io.tls.connect('localhost', port, { context = io.tls.context{ ca = c.ca, min_version = '1.3' }, timeout = 20 })
t.ok(s and s:tls().version == 'TLSv1.3', "min_version '1.3' connects to a 1.3 server", err)
if s then s:close() end

-- ---- broken peers ----

-- plaintext to a TLS port
server_errors = {}
plain = assert(io.tcp.connect('127.0.0.1', port, 5))
plain:write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
local answer = plain:read('*a', 5)
plain:close()
wait_errors(1)
t.like(server_errors[1], 'http request', 'plaintext HTTP to a TLS port: the server\'s read says so')
t.ok(info_at['http request'] and info_at['http request'].version == nil,
	'... and its tls() names no version: none was spoken')
t.ok(not answer or not answer:find('HTTP/1'), '... and the client gets no HTTP answer')
-- bytes that are no TLS record, either way: 'wrong version number'
server_errors = {}
plain = assert(io.tcp.connect('127.0.0.1', port, 5))
plain:write('hello there, this is no TLS\n')
plain:read('*a', 5)
plain:close()
local said = t.eventually(function() return table.concat(server_errors, '|'):find('wrong version number') end)
t.ok(said, "a client that speaks no TLS: the server's read says 'wrong version number'", table.concat(server_errors, '|'))
local plainsrv = assert(io.tcp.listen('127.0.0.1', 0))
utils.spawn(function() plainsrv:autospawn(function(x) x:write('HTTP/1.1 400 Bad Request\r\n\r\n') x:close() end) end)
s, err = io.tls.connect('127.0.0.1', plainsrv:port(), { context = cctx, timeout = 20 })
t.ok(s == nil and err == 'wrong version number', "a server that speaks no TLS: connect says 'wrong version number'", err)
plainsrv:close()

-- a peer that stalls in the handshake: the server's handshake_timeout
local hl, hp = serve(c.server, c.key, { handshake_timeout = 0.2 })
server_errors = {}
plain = assert(io.tcp.connect('127.0.0.1', hp, 5))
local t0 = t.now()
wait_errors(1)
t.is(server_errors[1], 'timeout', 'a client silent in the handshake: the server\'s read times out')
t.near(utils.now() - t0, 0.2, 0.15, '... after handshake_timeout')
plain:close()
-- the server's writer too
local wl = assert(io.tls.listen('127.0.0.1', 0, assert(io.tls.context{ cert = c.server, key = c.key, handshake_timeout = 0.2 })))
local wrote
utils.spawn(function() wl:autospawn(function(x) wrote = { x:write('hi\n') } x:close() end) end)
plain = assert(io.tcp.connect('127.0.0.1', wl:port(), 5))
t.eventually(function() return wrote end)
t.same(wrote, { nil, 'timeout' }, "... and its writer's: nil, 'timeout'")
plain:close()
wl:close()
-- ... which does not end a connection idle after its handshake
s, err = io.tls.connect('localhost', hp, { context = cctx, timeout = 20 })
t.ok(s, 'a client of the server with handshake_timeout 0.2', err)
if s then
	sleep(0.4)
	s:write('late\n')
	t.is(s:read('*l', 5), 'echo late', '... that writes 0.4 s after its handshake is answered')
	s:close()
end
hl:close()

-- ... and a server that stalls: the connect's timeout
local stall = assert(io.tcp.listen('127.0.0.1', 0))
local held = {}
utils.spawn(function() stall:autospawn(function(x) held[#held + 1] = x end) end)
t0 = t.now()
s, err = io.tls.connect('127.0.0.1', stall:port(), { context = cctx, timeout = 0.2 })
t.is(err, 'timeout', 'a server silent in the handshake: connect returns nil, timeout')
t.near(utils.now() - t0, 0.2, 0.15, '... after its timeout')

-- a reset during the handshake: a server that closes with the client hello unread
local resetter = assert(io.tcp.listen('127.0.0.1', 0))
utils.spawn(function() resetter:autospawn(function(x) sleep(0.05) x:close() end) end)
s, err = io.tls.connect('127.0.0.1', resetter:port(), { context = cctx, timeout = 20 })
t.is(s, nil, 'a reset in the handshake: nil')
t.ok(err == 'connection reset by peer' or err == 'closed', '... and a message: ' .. tostring(err))
resetter:close()

-- a client that resets mid-handshake: the server's read says so, nothing is left behind
server_errors = {}
plain = assert(io.tcp.connect('127.0.0.1', port, 5))
plain:write('\22\3\1\2\0\1\0\1\252\3\3')      -- the start of a client hello
sleep(0.05)
plain:close()
wait_errors(1)
t.ok(server_errors[1] ~= nil, 'a client gone mid-handshake: the server\'s read ends: '
	.. tostring(server_errors[1]))

-- garbage mid-stream: a proxy between a lem client and a lem server, passing TLS records
-- (a 5-byte header, its length in bytes 4 and 5), replaces one by bytes that are none
local proxy = assert(io.tcp.listen('127.0.0.1', 0))
local inject, cut = false, false
local function record(x)
	local head = x:read(5)
	if not head or #head < 5 then return nil end
	local body = x:read(head:byte(4) * 256 + head:byte(5))
	return body and head .. body
end
utils.spawn(function()
	proxy:autospawn(function(a)
		local b = assert(io.tcp.connect('127.0.0.1', port, 5))
		utils.spawn(function()
			local held           -- cut: each record waits for the next; the last is dropped
			while true do
				local d = record(b)
				if d and cut then held, d = d, held or '' end
				if not d or not a:write(d) then break end
			end
			a:close()
		end)
		while true do
			local d = record(a)
			if not d then break end
			if inject then d = d:sub(1, 5) .. ('x'):rep(#d - 5) end
			if not b:write(d) then break end
		end
		b:close()
	end)
end)
server_errors = {}
s, err = io.tls.connect('localhost', proxy:port(), { context = cctx, timeout = 20 })
t.ok(s, 'a connection through the proxy', err)
if s then
	s:write('first\n')
	t.is(s:read('*l', 5), 'echo first', 'the proxy passes records through')
	inject = true
	s:write('second\n')
	wait_errors(1)
	t.is(server_errors[1], 'decryption failed or bad record mac', 'garbage mid-stream: the server\'s read fails with OpenSSL\'s reason')
	r, err = s:read('*l', 5)
	t.is(r, nil, '... and the client\'s read ends: ' .. tostring(err))
	s:close()
end
-- a truncation: the proxy passes the server's last records but not its close_notify, and
-- closes. '*a' takes what came, and tls() tells the connection just ended.
inject = false
s, err = io.tls.connect('localhost', proxy:port(), { context = cctx, timeout = 20 })
t.ok(s, 'a connection through the proxy, which then holds back the last record', err)
if s then
	s:write('first\n')
	s:read('*l', 5)                           -- the handshake's records all passed
	cut = true
	s:write('close\n')
	t.is(s:read('*l', 5), 'bye', '... passes the records before it')
	t.is(s:read('*a', 5), 'and all the rest', "... and '*a' reads until the connection ends")
	t.is(s:tls().close_notify, false, '... without the peer\'s close_notify: tls().close_notify is false')
	s:close()
end
proxy:close()
stall:close()
for _, x in ipairs(held) do x:close() end

-- ---- interop with the openssl command and curl ----
-- Runs cmd in the background; returns its pid and wait(secs), which polls until it ended
-- (a file it leaves then: a zombie may outlive it) and returns its output.
local function shell_bg(cmd)
	local out, pidf, donef = dir .. '/cmd.out', dir .. '/cmd.pid', dir .. '/cmd.done'
	os.remove(donef)
	os.execute('{ (' .. cmd .. ') > ' .. out .. ' 2>&1; touch ' .. donef .. '; } & echo $! > ' .. pidf)
	local f = assert(open(pidf))
	local pid = f:read('*l')
	f:close()
	local function wait(secs)
		local t1 = utils.now()
		while not open(donef) and utils.now() - t1 < secs do
			sleep(0.02)
		end
		return t.slurp(out)
	end
	return pid, wait
end

-- a tiny HTTPS answer for curl
local hsl = assert(io.tls.listen('127.0.0.1', 0, sctx))
utils.spawn(function()
	hsl:autospawn(function(x)
		repeat local line = x:read('*l', 5) until not line or line == ''
		x:write('HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nhello tls')
		x:close()
	end)
end)
local _, wait = shell_bg(('curl -sS --cacert %s https://localhost:%d/'):format(c.ca, hsl:port()))
t.is(wait(10), 'hello tls', 'curl --cacert fetches from lem\'s TLS server, verifying it')
_, wait = shell_bg(('curl -sS https://localhost:%d/'):format(hsl:port()))
t.like(wait(10), 'certificate', 'curl without the CA refuses lem\'s server')
hsl:close()

_, wait = shell_bg(('printf "hi s_client\\nclose\\n" | openssl s_client -connect 127.0.0.1:%d -CAfile %s '
	.. '-verify_return_error -verify_hostname localhost -quiet -ign_eof'):format(port, c.ca))
r = wait(10)
t.like(r, 'echo hi s_client\nbye\n', 'openssl s_client talks to lem\'s server, verifying it')
-- a TLS 1.3 KeyUpdate that asks for one back (s_client's "K" command): lem's server
-- answers it with its next write (OpenSSL 3 never writes in a read after the handshake)
_, wait = shell_bg(('(printf "one\\n"; sleep 0.3; printf "K\\n"; sleep 0.3; printf "two\\n"; sleep 0.3; '
	.. 'printf "close\\n"; sleep 0.5) | openssl s_client -connect 127.0.0.1:%d -CAfile %s -msg'):format(port, c.ca))
r = wait(10)
t.like(r, 'echo one\n.*>>> [^\n]*KeyUpdate.*<<< [^\n]*KeyUpdate.*echo two\n.*bye\n',
	'a KeyUpdate asked for mid-session: lem\'s server updates its keys too and talks on')

-- openssl s_server as the server of lem's client
local sport = t.free_port()
local spid
spid, wait = shell_bg(('openssl s_server -accept 127.0.0.1:%d -cert %s -key %s -www -tls1_2 & echo $! > %s/s_server.pid; wait')
	:format(sport, c.server, c.key, dir))
for _ = 1, 250 do                            -- until it listens
	local probe = io.tcp.connect('127.0.0.1', sport, 1)
	if probe then probe:close() break end
	sleep(0.02)
end
s, err = io.tls.connect('localhost', sport, { context = cctx, timeout = 20 })
t.ok(s, 'lem\'s client connects to openssl s_server', err)
if s then
	t.is(s:tls().version, 'TLSv1.2', '... over TLS 1.2, as the server wants')
	s:write('GET / HTTP/1.0\r\n\r\n')
	r, err = s:read('*a', 5)
	t.like(r, '^HTTP/1%.0 200 ok', '... and reads its answer', err)
	s:close()
end
s, err = io.tls.connect('localhost', sport, { context = io.tls.context{ ca = c.ca, min_version = '1.3' }, timeout = 20 })
t.is(s, nil, "min_version '1.3' refuses a server that stops at 1.2")
t.like(err, 'protocol version', '... saying so: ' .. tostring(err))
os.execute('kill $(cat ' .. dir .. '/s_server.pid)')
wait(5)

-- ---- a reader and a writer during the handshake ----
-- OpenSSL reads and writes for the handshake in whichever call comes: the call that ends
-- it takes from the socket what the other side waited for there, and that side must not
-- wait on for a poll that will not come.
local go = utils.sleeper()
local hl = assert(io.tls.listen('127.0.0.1', 0, sctx))
local mode
utils.spawn(function()
	hl:autospawn(function(x)
		if mode == 'read ends it' then
			-- the server speaks first: its write starts the handshake and waits for the
			-- client's Finished, which the read, starting late, takes
			utils.spawn(function() x:write('banner\n') end)
			go:sleep(5)
			x:read('*l', 5)
		else
			-- the read waits from the start; the write, starting late, takes the
			-- client's Finished and, read ahead with it, its first line
			utils.spawn(function()
				go:sleep(5)
				x:write('banner\n')
			end)
			local line = x:read('*l', 5)
			if line then x:write('echo ', line, '\n') end
		end
		x:close()
	end)
end)
for _, m in ipairs { 'read ends it', 'write ends it' } do
	mode = m
	s = assert(io.tls.connect('localhost', hl:port(), { context = cctx, timeout = 5 }))
	if m == 'write ends it' then s:write('hello\n') end
	go:wakeup()                      -- the server's late side runs in this same turn
	t.is(s:read('*l', 2), 'banner', 'the server\'s write goes out when its read ends the handshake: ' .. m)
	if m == 'write ends it' then
		t.is(s:read('*l', 2), 'echo hello', '... and its read gets the line the write read ahead')
	else
		s:write('bye\n')
	end
	s:close()
end
hl:close()

-- ---- a write the peer does not take: write_timeout ----
local deafl = assert(io.tls.listen('127.0.0.1', 0, sctx))
local deaf, hears, heard = nil, utils.sleeper(), nil
utils.spawn(function()
	deaf = deafl:accept(5)
	if not deaf then return end
	deaf:read(1, 5)                      -- the handshake, one byte, then nothing more
	hears:sleep(20)
	deaf:limit(1e9, 1e9)
	heard = deaf:read('*u', 'END', 20) or ''   -- until the later write's end, or the close
end)
s = assert(io.tls.connect('localhost', deafl:port(), { context = cctx, timeout = 5 }))
s:write('x')
s:read(1, 0.1)       -- takes the server's session tickets: unread, they would make close() a reset
s:write_timeout(0.2)
local werr, waited = t.write_until_fails(s)
t.is(werr, 'timeout', 'a TLS write the peer does not take: nil, \'timeout\'')
t.ok(waited >= 0.15 and waited < 5, '... after about write_timeout', tostring(waited))
-- OpenSSL still holds the record of that write, partly sent, which must go out first: a
-- later write cannot follow it, and must not pass for written (its first bytes would be lost)
hears:wakeup()                           -- the peer reads now
t.is(select(2, s:write(('B'):rep(20000), '\nEND\n')), 'timeout', '... a later write: nil, \'timeout\' at once')
s:close()
for _ = 1, 200 do if heard then break end sleep(0.02) end
t.ok(heard and not heard:find('B'), '... of which the peer gets nothing (not its end without its start)',
	tostring(heard and select(2, heard:gsub('B', ''))) .. ' bytes of it')
if deaf then deaf:close() end
deafl:close()

-- ---- record buffers ----
-- The first 64 TLS streams of a loop keep OpenSSL's buffers between records, the others
-- give them back after each, and all do after a second or two without I/O: 70 clients and
-- their 70 server streams talk, wait past that, and talk again.
local many, talked = {}, 0
for i = 1, 70 do
	many[i] = io.tls.connect('localhost', port, { context = cctx, timeout = 20 })
	if many[i] then
		many[i]:write('first ', i, '\n')
		if many[i]:read('*l', 5) == 'echo first ' .. i then talked = talked + 1 end
	end
end
t.is(talked, 70, '70 TLS connections talk, more than keep their buffers')
sleep(2.2)
talked = 0
for i, x in ipairs(many) do
	x:write('again ', i, '\n')
	if x:read('*l', 5) == 'echo again ' .. i then talked = talked + 1 end
	x:close()
end
t.is(talked, 70, '... and again once idle long enough to give them back')
-- Kept buffers keep no loop alive: a program that leaves its TLS streams open ends at
-- once (not when their buffers would be given back, two seconds later).
local linger = t.file(dir, 'linger.lua', [[
local io = require 'lem.io'
local utils = require 'lem.utils'
local d = arg[1]
local l = assert(io.tls.listen('127.0.0.1', 0, assert(io.tls.context{ cert = d .. '/server.pem', key = d .. '/server.key' })))
utils.spawn(function()
	l:autospawn(function(s) s:write(s:read('*l', 5), '\n') end)   -- and leaves s open
end)
local s = assert(io.tls.connect('localhost', l:port(), { context = assert(io.tls.context{ ca = d .. '/ca.pem' }) }))
s:write('hi\n')
print(s:read('*l', 5))
l:close()                                        -- and leaves s open
]])
local st, out = t.run('s=$(date +%s%N); ' .. t.lem .. ' ' .. linger .. ' ' .. dir
	.. '; echo $?; echo $(( ($(date +%s%N) - s) / 1000000 ))')
local ms = tonumber(out:match('(%d+)\n$'))
t.like(out, '^hi\n0\n', 'a TLS client and server that leave their streams open: lem exits 0')
t.ok(st == 0 and ms and ms < 1500, '... at once, in less than 1.5 s (2 s if the buffers held it): '
	.. tostring(ms) .. ' ms')

-- ---- out of memory ----
-- failalloc (tests/lib/failalloc.c), preloaded into a child lem, makes allocations above
-- a size fail: OpenSSL's among them. Connects and writes then fail with nil, message (or a
-- memory error pcall catches); nothing aborts, and TLS works again once memory is back.
local shim = (os.getenv('LEM') or ''):match('^(.*)/[^/]*$')
shim = shim and shim .. '/modules/failalloc.so'
local oom = t.file(dir, 'oom.lua', [[
local fa = require 'failalloc'
local io = require 'lem.io'
local utils = require 'lem.utils'
fa.above(65536)
local vm_uses_malloc = not pcall(string.rep, 'y', 1048576)
fa.above(nil)
if not vm_uses_malloc then print('skip') return end   -- LuaJIT's own allocator
local d = arg[1]
local sctx = assert(io.tls.context{ cert = d .. '/server.pem', key = d .. '/server.key' })
local cctx = assert(io.tls.context{ ca = d .. '/ca.pem' })
local l = assert(io.tls.listen('127.0.0.1', 0, sctx))
local port = l:port()
utils.spawn(function()
	l:autospawn(function(s)
		pcall(function()
			while true do
				local x = s:read('*l', 5)
				if not x then break end
				s:write(x, '\n')
			end
		end)
		pcall(s.close, s)
	end)
end)
local answered, failed = 0, 0
for _, limit in ipairs { 2048, 4096, 8192, 20000, 1e6 } do
	for _ = 1, 4 do
		fa.above(limit)
		local ok, line = pcall(function()
			local s, e = io.tls.connect('localhost', port, { context = cctx, timeout = 2 })
			if not s then return nil, e end
			s:write(('x'):rep(30000), '\n')
			local r = s:read('*l', 2)
			s:close()
			return r
		end)
		fa.above(nil)
		if ok and line then answered = answered + 1 else failed = failed + 1 end
	end
end
local s = assert(io.tls.connect('localhost', port, { context = cctx, timeout = 2 }))
s:write('after\n')
local after = s:read('*l', 2)
s:close()
l:close()
print(answered > 0, failed > 0, fa.failures() > 0, after)
]])
if (os.getenv('LEM_SANITIZER') or '') ~= '' or not shim then
	t.skip('out of memory in OpenSSL: nil, message, no abort', 'sanitizers replace the allocator')
else
	local st, out, e = t.run('LD_PRELOAD=' .. shim .. ' ' .. t.lem .. ' ' .. oom .. ' ' .. dir)
	if out:match('^skip\n') then
		t.skip('out of memory in OpenSSL: nil, message, no abort', 'the VM does not allocate through malloc')
	else
		t.is(out, 'true\ttrue\ttrue\tafter\n', 'out of memory in OpenSSL and lem: some connections fail, '
			.. 'none aborts, and TLS works once memory is back' .. (e ~= '' and ': ' .. e or ''))
		t.is(st, 0, '... and lem exits 0')
	end
end

-- ---- nothing left behind ----
l:close()
-- handlers of peers that went (and finalizers) close theirs soon: slowly on a loaded machine
t.eventually(function() collectgarbage() return t.nfds() == base end, 10)
t.is(t.nfds(), base, 'every descriptor is closed again')
t.done()
