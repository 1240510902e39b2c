-- lem.http under a long pipeline (10,000 requests sent in one write, answered in order), and
-- the memory of idle keep-alive connections: their read buffers are released.
local t = require 'tap'
local http = require 'lem.http'
local io = require 'lem.io'
local utils = require 'lem.utils'

local server = assert(http.listen('127.0.0.1', 0, function(req, res)
	res:send(200, req.path)
end))
local port = server:port()

do   -- 10,000 requests in one write, read back by another coroutine meanwhile
	local N = 10000
	local parts = {}
	for i = 1, N do parts[i] = 'GET /' .. i .. ' HTTP/1.1\r\nHost: x\r\n\r\n' end
	local c = assert(io.tcp.connect('127.0.0.1', port, 2))
	local answered, bad, done = 0, nil, false
	utils.spawn(function()
		for i = 1, N do
			local head = c:read('*u', '\r\n\r\n', 10)
			local length = head and tonumber(head:match('\r\nContent%-Length: (%d+)\r\n'))
			local body = length and c:read(length, 10)
			if not (head and head:find('^HTTP/1%.1 200 ') and body == '/' .. i) then
				bad = ('answer %d: %q %q'):format(i, tostring(head), tostring(body))
				break
			end
			answered = i
		end
		done = true
	end)
	local ok, err = c:write(table.concat(parts))
	local t0 = utils.now()
	while not done and utils.now() - t0 < 30 do utils.sleeper():sleep(0.01) end
	c:close()
	t.ok(ok, 'the pipeline went out in one write', err)
	t.is(answered, N, '10,000 pipelined requests answered, in order', bad)
end

-- Idle connections: a server of its own, whose memory (VmRSS) is read before and after
-- n connections made one request each and stayed open. A connection keeps its coroutine
-- and its stream (about 2.5 KiB); a read buffer kept while idle would add 4 KiB more.
local function rss(pid)
	local f = _G.io.open('/proc/' .. pid .. '/status')
	local text = f and f:read('*a')
	if f then f:close() end
	return text and tonumber(text:match('VmRSS:%s*(%d+) kB'))
end

local dir = t.tmpdir()
local sport = t.free_port()
local script = t.file(dir, 'idle-server.lua', ([[
local http = require 'lem.http'
local server = assert(http.listen('127.0.0.1', %d, function(req, res) res:send(200, 'ok') end))
print('listening')
io.stdout:flush()
]]):format(sport))
local pid, output, wait = t.background(dir, script)
wait('listening', 1)
local n = 400                        -- below a descriptor limit of 1024, with room to spare
local function get(c)
	c:write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
	local head = c:read('*u', '\r\n\r\n', 5)
	return head and c:read(2, 5) == 'ok'
end
local warm = {}
for i = 1, 50 do            -- the server's own start-up allocations come before the figure
	warm[i] = io.tcp.connect('127.0.0.1', sport, 5)
	if warm[i] then get(warm[i]) end
end
for _, c in ipairs(warm) do c:close() end
utils.sleeper():sleep(0.2)
local before = rss(pid)
local conns, served = {}, 0
for i = 1, n do
	local c = io.tcp.connect('127.0.0.1', sport, 5)
	if c and get(c) then served = served + 1 end
	conns[i] = c
end
utils.sleeper():sleep(0.2)
local after = rss(pid)
if (os.getenv('LEM_SANITIZER') or '') ~= '' then
	t.is(served, n, n .. ' connections made one request each')
	t.skip('an idle keep-alive connection holds no read buffer',
		'a sanitizer keeps freed memory aside and pads every block: VmRSS says nothing of lem\'s')
elseif not (before and after) then
	t.ok(false, 'the idle server runs: VmRSS read', output())
else
	local per = (after - before) * 1024 / n
	t.is(served, n, n .. ' connections made one request each')
	t.ok(per < 4096, ('an idle keep-alive connection holds no read buffer: %.0f bytes each, below 4 KiB'):format(per),
		('VmRSS %d KiB before, %d KiB after'):format(before, after))
end
for _, c in pairs(conns) do c:close() end
os.execute('kill ' .. pid)
server:close()
t.done()
