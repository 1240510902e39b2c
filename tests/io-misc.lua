-- lem.io: bad arguments, closed objects, garbage collection, the standard streams.
local t = require 'tap'
local utils = require 'lem.utils'
local io = require 'lem.io'
local stdio = _G.io

-- ---- bad arguments ----
local l = assert(io.tcp.listen('127.0.0.1', 0))
local port = l:port()
local s = assert(io.tcp.connect('127.0.0.1', port))
local p = assert(l:accept())

t.error(function() io.tcp.listen() end, "bad argument #1 to 'listen'", 'listen without a host')
t.error(function() io.tcp.listen('127.0.0.1') end, "bad argument #2 to 'listen'", 'listen without a port')
t.error(function() io.tcp.listen('127.0.0.1', -1) end, 'port must be', 'listen with a negative port')
t.error(function() io.tcp.listen('127.0.0.1', 65536) end, 'port must be', 'listen with a port too large')
t.error(function() io.tcp.listen('127.0.0.1', 1.5) end, 'port must be', 'listen with a fractional port')
t.error(function() io.tcp.listen('127.0.0.1', 0, 0) end, 'backlog', 'listen with a zero backlog')
t.error(function() io.tcp.listen('127.0.0.1', 0, 'x') end, "bad argument #3", 'listen with a string backlog')
t.error(function() io.tcp.connect() end, "bad argument #1 to 'connect'", 'connect without a host')
t.error(function() io.tcp.connect({}, 80) end, "bad argument #1 to 'connect'", 'connect with a table host')
t.error(function() io.tcp.connect('127.0.0.1', 'http') end, "bad argument #2 to 'connect'", 'connect with a service name')
t.error(function() io.tcp.connect('127.0.0.1', 80, 'soon') end, "bad argument #3 to 'connect'", 'connect with a string timeout')
t.error(function() io.unix.listen() end, "bad argument #1 to 'listen'", 'unix.listen without a path')
t.error(function() io.unix.listen('') end, 'empty path', 'unix.listen with an empty path')
t.error(function() io.unix.listen(('x'):rep(200)) end, 'path too long', 'unix.listen with a path too long')
t.error(function() io.unix.connect(('x'):rep(200)) end, 'path too long', 'unix.connect with a path too long')
-- a zero byte would cut the name or path the kernel sees short
t.error(function() io.unix.listen('/tmp/a\0b') end, "bad argument #1 to 'listen' %(zero byte in path%)",
	'unix.listen with a zero byte in the path')
t.error(function() io.unix.connect('/tmp/a\0b') end, "bad argument #1 to 'connect' %(zero byte in path%)",
	'unix.connect: the same')
t.error(function() io.tcp.listen('127.0.0.1\0x', 0) end, "bad argument #1 to 'listen' %(zero byte in host name%)",
	'tcp.listen with a zero byte in the host')
t.error(function() io.tcp.connect('127.0.0.1\0x', 1) end, "bad argument #1 to 'connect' %(zero byte in host name%)",
	'tcp.connect: the same')
t.error(function() io.unix.connect('/tmp/x', 'soon') end, "bad argument #2 to 'connect'", 'unix.connect with a string timeout')
t.like(select(2, io.tcp.connect('not an address', 80)), '.', 'connect to a bad name: nil, message')

t.error(function() s.read({}) end, 'stream expected', 'read on a non-stream')
t.error(function() s.read(l) end, 'stream expected', 'read on a listener')
t.error(function() s.read(newproxy()) end, 'stream expected', 'read on an empty userdata')
t.error(function() s.read(_G.io.stdout) end, 'stream expected', "read on another module's userdata")
t.error(function() s.write(io.tls.context{ verify = false }, 'x') end, 'stream expected',
	"write on a TLS context, another userdata of lem.io's")
t.error(function() l.port(_G.io.stdout) end, 'listener expected', "port on another module's userdata")
t.error(function() s:read('*x') end, 'invalid format', 'read with an unknown format')
t.error(function() s:read(-1) end, 'whole number', 'read with a negative count')
t.error(function() s:read(1.5) end, 'whole number', 'read with a fractional count')
t.error(function() s:read({}) end, "bad argument #1 to 'read'", 'read with a table format (method calls count from self)')
t.error(function() s:read('*l', 'x') end, "bad argument #2 to 'read'", 'read with a string timeout')
t.error(function() s:write({}) end, "bad argument #1 to 'write'", 'write a table')
t.error(function() s:write('a', nil) end, "bad argument #2 to 'write'", 'write nil')
t.error(function() s.write(nil, 'x') end, 'stream expected', 'write on nil')
t.error(function() s.close({}) end, 'stream expected', 'close on a non-stream')
t.error(function() s.peer(1) end, 'stream expected', 'peer on a number')
t.error(function() l.accept(s) end, 'listener expected', 'accept on a stream')
t.error(function() l:accept('x') end, "bad argument #1 to 'accept'", 'accept with a string timeout')
t.error(function() l:autospawn() end, "bad argument #1 to 'autospawn'", 'autospawn without a handler')
t.error(function() l:autospawn('f') end, "bad argument #1 to 'autospawn'", 'autospawn with a string')
t.error(function() l.port({}) end, 'listener expected', 'port on a table')
t.error(function() l.close(s) end, 'listener expected', 'listener close on a stream')
t.is(getmetatable(s), 'stream', 'the stream metatable is protected')
t.is(getmetatable(l), 'listener', 'the listener metatable is protected')

-- closed objects: misuse raises
s:close()
t.error(function() s:read() end, 'closed stream', 'read on a closed stream')
t.error(function() s:write('x') end, 'closed stream', 'write on a closed stream')
t.error(function() s:peer() end, 'closed stream', 'peer on a closed stream')
t.like(tostring(s), '^stream %(closed%)', 'tostring of a closed stream')
l:close()
t.error(function() l:accept() end, 'closed listener', 'accept on a closed listener')
t.error(function() l:autospawn(print) end, 'closed listener', 'autospawn on a closed listener')
t.error(function() l:port() end, 'closed listener', 'port on a closed listener')
p:close()

-- a suspension where lem cannot suspend raises, and leaves the stream usable
l = assert(io.tcp.listen('127.0.0.1', 0))
s = assert(io.tcp.connect('127.0.0.1', l:port()))
p = assert(l:accept())
local co = coroutine.wrap(function() return s:read() end)
t.error(co, 'cannot suspend', 'read inside coroutine.wrap raises')
p:write('still here\n')
t.is(s:read(), 'still here', '... and the stream still works')
s:close() p:close() l:close()

-- ---- garbage collection ----
local nfds = t.nfds
collectgarbage() collectgarbage()
local base = nfds()
local keep = { assert(io.tcp.listen('127.0.0.1', 0)) }
for _ = 1, 20 do
	keep[#keep + 1] = assert(io.tcp.connect('127.0.0.1', keep[1]:port()))
	keep[#keep + 1] = assert(keep[1]:accept())
end
t.is(nfds(), base + 41, '20 unclosed pairs and a listener hold their descriptors')
keep = nil
collectgarbage() collectgarbage()
t.is(nfds(), base, 'collecting them closes every descriptor')

-- a coroutine suspended in read keeps its stream alive
local ll = assert(io.tcp.listen('127.0.0.1', 0))
local writer = assert(io.tcp.connect('127.0.0.1', ll:port()))
local result
utils.spawn(function()
	local reader = assert(ll:accept())
	result = reader:read()
end)
utils.yield() utils.yield()
collectgarbage() collectgarbage()
writer:write('alive\n')
for _ = 1, 100 do if result then break end utils.sleeper():sleep(0.01) end
t.is(result, 'alive', 'a suspended reader is not collected with its stream')
-- as does a coroutine suspended in accept
local accepted
utils.spawn(function()
	local l2 = assert(io.tcp.listen('127.0.0.1', 0))
	port = l2:port()
	accepted = l2:accept()
end)
utils.yield()
collectgarbage() collectgarbage()
local c2 = io.tcp.connect('127.0.0.1', port)
for _ = 1, 100 do if accepted then break end utils.sleeper():sleep(0.01) end
t.ok(c2 and accepted, 'a suspended accept keeps its listener')
writer:close() ll:close()
if c2 then c2:close() end
if accepted then accepted:close() end

-- ---- the standard streams ----
t.is(tostring(io.stdin):match('^stream %(fd 0%)'), 'stream (fd 0)', 'io.stdin is a stream on fd 0')
local lem = t.lem
local script = os.tmpname()
local f = assert(stdio.open(script, 'w'))
f:write([[
local io = require 'lem.io'
local n = 0
while true do
	local line = io.stdin:read()
	if not line then break end
	n = n + 1
	io.stdout:write(n, ': ', line, '\n')
end
io.stderr:write('lines: ', n, '\n')
]])
f:close()
local status, out, err = t.run(lem .. ' ' .. script, 'alpha\nbeta\r\ngamma')
t.is(status, 0, 'a script that copies stdin to stdout exits 0')
t.is(out, '1: alpha\n2: beta\n3: gamma\n', 'io.stdin:read() and io.stdout:write()')
t.is(err, 'lines: 3\n', 'io.stderr:write()')
status, out = t.run('printf "x\\ny\\n" | ' .. lem .. ' ' .. script .. ' 2>/dev/null | cat')
t.is(out, '1: x\n2: y\n', 'the standard streams over pipes')
os.remove(script)
t.done()
