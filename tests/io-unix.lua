-- lem.io over Unix sockets: listen, connect, accept, echo, the socket file's life.
local t = require 'tap'
local utils = require 'lem.utils'
local io = require 'lem.io'

local path = os.tmpname()
os.remove(path)     -- tmpname made a file; the socket goes in its place

local l, err = io.unix.listen(path)
t.ok(l, 'unix.listen', err)
t.like(tostring(l), '^listener %(fd %d+%)', 'tostring(listener)')
t.ok(os.rename(path, path), 'the socket file exists')
t.same({ io.unix.listen(path) }, { nil, 'address already in use' },
	'listening on the same path again: nil, address already in use')
t.error(function() l:port() end, 'not a TCP listener', 'port() on a Unix listener raises')

local served = 0
utils.spawn(function()
	l:autospawn(function(c)
		served = served + 1
		t.is(c:peer(), '', 'peer() of an unnamed Unix client is ""')
		while true do     -- not a for loop: 5.1 cannot suspend inside its iterator
			local line = c:read()
			if not line then break end
			c:write('<', line, '>\n')
		end
		c:close()
	end)
end)
local c = assert(io.unix.connect(path))
t.is(c:peer(), path, 'peer() of a Unix stream is the path')
c:write('one\ntwo\n')
t.is(c:read(), '<one>', 'echo over a Unix socket')
t.is(c:read(), '<two>', 'twice')
local c2 = assert(io.unix.connect(path, 1))
c2:write('three\n')
t.is(c2:read('*l', 2), '<three>', 'a second client')
c:close() c2:close()
utils.yield()
t.is(served, 2, 'one handler per client')

l:close()
t.ok(not os.rename(path, path), 'close removes the socket file')
local r = { io.unix.connect(path) }
t.is(r[1], nil, 'connecting to a removed socket fails')
t.is(r[2], 'no such file or directory', '... with nil, no such file or directory')

-- accept on a Unix listener
l = assert(io.unix.listen(path, 4))
c = assert(io.unix.connect(path))
local p = assert(l:accept(1))
p:write('hi\n')
t.is(c:read(), 'hi', 'accept on a Unix listener')
c:close() p:close() l:close()

-- a Unix connect never waits: past the listener's backlog it fails at once
l = assert(io.unix.listen(path, 1))
local queued, r = {}, nil
for _ = 1, 20 do
	r = { io.unix.connect(path, 5) }
	if not r[1] then break end
	queued[#queued + 1] = r[1]
end
t.same(r, { nil, 'resource temporarily unavailable' }, "a full backlog: nil, 'resource temporarily unavailable'")
t.ok(#queued >= 1 and #queued < 20, '... after the connects the backlog holds (' .. #queued .. ')')
for _, q in ipairs(queued) do q:close() end
l:close()
t.done()
