-- examples/cluster/chat.lua: two lem processes (the second with two loops) share a chat
-- through one redis-server, started here on a Unix socket: a line from a client of one
-- reaches the clients of the other and the other clients of its own, not itself.
local t = require 'tap'
local utils = require 'lem.utils'
local lio = require 'lem.io'
local redisserver = require 'redisserver'

local dir = t.tmpdir()
local rpid, sock = redisserver.start(dir)
if not t.ok(rpid, 'redis-server started on a Unix socket', sock) then
	t.done()
	return
end

local example = (os.getenv('LEM_SOURCE') or '.') .. '/examples/cluster/chat.lua'
local pids = {}

-- Starts a member (loops: its --loops); returns its port once each loop listens.
local function member(loops)
	local port = t.free_port()
	local pid, _, wait = t.background(t.tmpdir(), ('--loops %d %s %d %s'):format(loops, example, port, sock))
	pids[#pids + 1] = pid
	local out = wait('listening', loops)
	local _, n = out:gsub('listening', '')
	t.is(n, loops, ('a member of %d loop(s) listens on port %d'):format(loops, port), out)
	return port
end

-- Reads lines from s until one matches pattern (5 s at most); returns it and the lines
-- read before it.
local function expect(s, pattern)
	local before = {}
	while true do
		local line, err = s:read('*l', 5)
		if not line then before[#before + 1] = '(' .. tostring(err) .. ')' end
		if not line or line:find(pattern) then return line, before end
		before[#before + 1] = line
	end
end

local function says(lines, pattern)
	for _, l in ipairs(lines) do if l:find(pattern) then return true end end
	return false
end

local ok, failure = pcall(function()
	local a, b = member(1), member(2)
	-- one client after the other: each join heard tells that its member knows the
	-- clients before it (a line published before a member has a client misses it)
	local a1 = assert(lio.tcp.connect('127.0.0.1', a))
	local a2 = assert(lio.tcp.connect('127.0.0.1', a))
	local got, before = expect(a1, ' joined$')
	t.ok(got, 'a client of member A hears another client of A join', table.concat(before, '\n'))
	local b1 = assert(lio.tcp.connect('127.0.0.1', b))
	got, before = expect(a1, ' joined$')
	t.ok(got, 'and a client of member B join', table.concat(before, '\n'))
	t.ok(expect(a2, ' joined$'), 'so does the other client of A')

	a1:write('hello from a1\n')
	t.ok(expect(b1, ': hello from a1$'), 'a line from a client of A reaches a client of B')
	t.ok(expect(a2, ': hello from a1$'), 'and the other client of A')

	b1:write('hi from b1\n')
	got, before = expect(a1, ': hi from b1$')
	t.ok(got, 'a line from a client of B reaches a client of A')
	t.ok(not says(before, 'hello from a1'), 'the sender does not get its own line back')
	got, before = expect(a2, ': hi from b1$')
	t.ok(got, 'and the other client of A')

	-- a client that leaves is announced everywhere
	a2:close()
	t.ok(expect(b1, ' left$'), 'a client of A leaves: B hears it')
	t.ok(expect(a1, ' left$'), 'and so does A')

	-- many lines keep their order across the members
	for i = 1, 100 do b1:write(('n%d\n'):format(i)) end
	local inorder = true
	for i = 1, 100 do
		if not expect(a1, (': n%d$'):format(i)) then inorder = false break end
	end
	t.ok(inorder, '100 lines of B reach A in order')
	a1:close(); b1:close()
end)
t.ok(ok, 'the tests ran to their end', tostring(failure))

for _, pid in ipairs(pids) do os.execute('kill ' .. pid) end
os.execute('kill ' .. rpid)
t.done()
