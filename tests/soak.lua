-- A bounded soak: for SOAK_SECONDS (default 20) every kind of trouble at once, then a
-- check that descriptors and memory came back near where they started.
--   * clients that reset their connection mid-request, and clients that send a line
--     past the line limit, at an echo server in this loop;
--   * messages to this loop itself, big and nested;
--   * child `lem --loops 3` processes whose loops stop in every way (exit, error,
--     SIGTERM, SIGINT with no grace period) while the others receive, sleep, compute
--     or send;
--   * a child under a memory limit whose receives fail to decode (caught by pcall).
local t = require 'tap'
local utils = require 'lem.utils'
local io = require 'lem.io'
local loops = require 'lem.loops'
local lem = t.lem
local SECONDS = tonumber(os.getenv('SOAK_SECONDS')) or 20
local sanitized = (os.getenv('LEM_SANITIZER') or '') ~= ''

local function rss_kb()
	local f = assert(_G.io.open("/proc/self/statm"))
	local pages = f:read('*n') and f:read('*n')
	f:close()
	return pages * 4
end

collectgarbage()
local fds0, rss0 = t.nfds(), rss_kb()
local deadline = utils.now() + SECONDS
local counts = { echo = 0, reset = 0, long = 0, msg = 0, child = 0, decode = 0 }
local failures = {}
local function fail(what) if #failures < 20 then failures[#failures + 1] = what end end

-- ---- an echo server, and clients that behave, reset, or send too long a line ----
local server = assert(io.tcp.listen('127.0.0.1', 0))
local port = server:port()
utils.spawn(server.autospawn, server, function(c)
	c:limit(4096)
	while true do
		local line, err = c:read()
		if not line then
			if err ~= 'closed' and err ~= 'line too long' and err ~= 'connection reset by peer' then
				fail('server read: ' .. tostring(err))
			end
			break
		end
		if not c:write(line, '\n') then break end
	end
	c:close()
end)

local function client(kind)
	local c, err = io.tcp.connect('127.0.0.1', port, 2)
	if not c then return fail('connect: ' .. tostring(err)) end
	if kind == 'echo' then
		for i = 1, 10 do
			c:write('line ', i, '\n')
			local got = c:read('*l', 5)
			if got ~= 'line ' .. i then fail('echo got ' .. tostring(got)) break end
		end
		counts.echo = counts.echo + 1
	elseif kind == 'reset' then
		c:write('half a line that the server waits for')
		c:write('x\n')
		utils.yield()
		c:close()                 -- the echo is unread: a reset
		counts.reset = counts.reset + 1
	else
		c:write(('y'):rep(5000))  -- past the server's 4096
		local got, err = c:read('*l', 5)
		if got ~= nil then fail('a long line was echoed') end
		counts.long = counts.long + 1
	end
	c:close()
end

local kinds = { 'echo', 'reset', 'long' }
local clients_done = false
utils.spawn(function()
	local i = 0
	while utils.now() < deadline do
		local batch = {}
		for k = 1, 30 do
			i = i + 1
			utils.spawn(client, kinds[i % 3 + 1])
		end
		utils.sleeper():sleep(0.02)
	end
	utils.sleeper():sleep(0.5)      -- the last ones finish
	clients_done = true
end)

-- ---- messages to this loop: big, nested, many ----
local msgs_done = false
utils.spawn(function()
	local big = ('m'):rep(20000)
	local nested = {}
	local n = nested
	for _ = 1, 900 do n.next = { v = "x" } n = n.next end
	while utils.now() < deadline do
		for _ = 1, 20 do
			assert(loops.send(1, big, nested, 42))
			local from, b, nst, x = loops.receive(1)
			if from ~= 1 or b ~= big or x ~= 42 or nst.next.next.v ~= 'x' then
				fail('a message changed on its way')
			end
			counts.msg = counts.msg + 1
		end
		utils.sleeper():sleep(0.001)
	end
	msgs_done = true
end)

-- ---- child processes whose loops stop in every way ----
local dir = t.tmpdir()
local childf = dir .. '/child.lua'
local f = assert(_G.io.open(childf, 'w'))
f:write([=[
local utils = require 'lem.utils'
local loops = require 'lem.loops'
local how, state, ready = ...
if loops.id == 1 then
	-- lem catches TERM and INT from before any loop starts: the signals may come now
	local f = io.open(ready, 'w')
	f:write(io.open('/proc/self/stat'):read('*l'):match('^%d+'), '\n')
	f:close()
	utils.timer(0.02, function()
		if how == 'exit' then utils.exit(5) elseif how == 'error' then error('soak') end
	end)
	if how == 'exit' or how == 'error' then return end
	return utils.sleeper():sleep(10)
end
if state == 'receive' then loops.receive()
elseif state == 'sleep' then utils.sleeper():sleep(10)
elseif state == 'busy' then while true do os.clock() end
else while true do if not loops.send(1, 'x') then utils.yield() end end end
]=])
f:close()
-- A child whose receives fail to decode: failalloc (tests/lib/failalloc.c), preloaded,
-- makes large allocations of the armed thread fail; loop 2 sends 1 MB messages to loop 1.
local decodef = dir .. '/decode.lua'
f = assert(_G.io.open(decodef, 'w'))
f:write([=[
local fa, l, u = require 'failalloc', require 'lem.loops', require 'lem.utils'
if l.id == 2 then
	while true do
		local _, what = l.receive()
		if what ~= 'go' then return end
		assert(l.send(1, ('x'):rep(2^20) .. math.random()))
	end
end
local fails, s = 0, u.sleeper()
for _ = 1, 20 do
	local got
	u.spawn(function() got = { pcall(l.receive) } end)
	u.yield()
	collectgarbage()
	fa.above(2^19)
	assert(l.send(2, 'go'))
	while not got do s:sleep(0.001) end
	fa.above(nil)
	if not got[1] and tostring(got[2]):find('not enough memory') then fails = fails + 1 end
end
l.send(2, 'stop')
print(fails)
]=])
f:close()
local shim = (os.getenv('LEM') or ''):match('^(.*)/[^/]*$')
shim = shim and shim .. '/modules/failalloc.so'
local decoding = not sanitized and shim

-- A shell runs the children one after another in the background (a blocking popen here
-- would stall this loop's clients), writing "how state status" per child. The signals
-- go to a child that wrote its pid: before lem catches SIGINT, a shell's background
-- child ignores it, and one that computes or sends would never end. A child that has not
-- ended after 60 s is killed (status 137).
local driver = dir .. '/children.sh'
f = assert(_G.io.open(driver, 'w'))
f:write(([=[
end=$(( $(date +%%s) + %d ))
i=0
while [ $(date +%%s) -lt $end ]; do
	for how in exit error TERM INT; do
		state=$(echo receive sleep busy send | cut -d' ' -f$(( i %% 4 + 1 )))
		rm -f %s/ready
		timeout -s KILL 60 %s --loops 3 --shutdown-timeout 0 %s $how $state %s/ready 2>/dev/null &
		p=$!
		case $how in TERM|INT)
			k=0; while [ ! -s %s/ready ] && [ $k -lt 1000 ]; do sleep 0.01; k=$((k+1)); done
			sleep 0.05; kill -$how $(cat %s/ready) ;;
		esac
		wait $p
		echo "$how $state $?"
	done
	if [ -n "%s" ]; then
		echo "decode $(LD_PRELOAD=%s timeout -s KILL 60 %s --loops 2 %s 2>&1)"
	fi
	i=$((i+1))
done > %s/children.out
touch %s/children.done
]=]):format(SECONDS, dir, lem, childf, dir, dir, dir, decoding or '', decoding or '', lem, decodef, dir, dir))
f:close()
os.execute('sh ' .. driver .. ' >/dev/null 2>&1 &')

local want = { exit = '5', error = '1', TERM = '143', INT = '130' }
local function children_done()
	local done = _G.io.open(dir .. '/children.done')
	if not done then return false end
	done:close()
	for line in _G.io.lines(dir .. '/children.out') do
		local fails = line:match('^decode (.*)$')
		if fails then
			if fails ~= '20' then fail('decoding child: ' .. fails) end
			counts.decode = counts.decode + tonumber(fails) or 0
		else
			local how, state, st = line:match('(%S+) (%S+) (%S+)')
			if st ~= want[how] then fail(('child %s/%s: status %s'):format(how, state, st)) end
			counts.child = counts.child + 1
		end
	end
	return true
end

-- wait for every part, then compare with the start
local s = utils.sleeper()
while not (clients_done and msgs_done and children_done()) do s:sleep(0.1) end
server:close()
s:sleep(0.2)
collectgarbage()
collectgarbage()
local fds1, rss1 = t.nfds(), rss_kb()

t.ok(#failures == 0, ('%d echo, %d reset, %d too-long clients, %d messages, %d children, %d failed decodes: no failure')
	:format(counts.echo, counts.reset, counts.long, counts.msg, counts.child, counts.decode), table.concat(failures, '\n'))
t.ok(counts.echo > 0 and counts.reset > 0 and counts.long > 0 and counts.msg > 0 and counts.child > 0
	and (counts.decode > 0 or not decoding), 'every part ran' .. (decoding and '' or
	' (no failing decodes: the sanitizers replace the allocator)'))
t.is(fds1, fds0, 'descriptors are back where they started')
if sanitized then   -- the sanitizers hold freed memory back (ASan's quarantine)
	t.skip('RSS back near the start', 'RSS means nothing under a sanitizer; it checks leaks itself')
else
	t.ok(rss1 - rss0 < 30 * 1024, ('RSS grew by %d KB (under 30 MB)'):format(rss1 - rss0))
end
t.done()
