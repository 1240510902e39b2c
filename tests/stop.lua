-- Stopping every loop, whatever each is doing: utils.exit, an uncaught error, SIGTERM and
-- SIGINT, with the other loops idle in receive, idle in the poll, busy in Lua, sending,
-- or still starting. Each combination runs 20 times in a row: a stop path that hangs or
-- loses a finalizer once in 20 is a bug. The signals run with --shutdown-timeout 0: the
-- shutdown's deadline passes at once and stops the loops, whatever they do (the graceful
-- shutdown has its own tests: shutdown.lua).
local t = require 'tap'
local lem = t.lem
local RUNS = tonumber(os.getenv('STOP_RUNS')) or 20
local tsan = os.getenv('LEM_SANITIZER') == 'tsan'
local luajit = jit ~= nil

local dir = t.tmpdir()
local function file(name, text) return t.file(dir, name, text) end

-- Every loop writes its id to the ready file once it is in its state; loop 1 stops the
-- group when all others are (exit, error), or waits with them for the signal.
local child = file('child.lua', [=[
local utils = require 'lem.utils'
local loops = require 'lem.loops'
local state, path, ready = ...
local p = newproxy(true)
getmetatable(p).__gc = function() io.stderr:write('fin ' .. loops.id .. '\n') end
_G.keep = p
local function mark()
	local f = assert(io.open(ready, 'a'))
	f:write(loops.id .. '\n')
	f:close()
end
local function count()
	local n = 0
	for _ in io.lines(ready) do n = n + 1 end
	return n
end
if loops.id == 1 then
	local s = utils.sleeper()
	if state == 'sending' then
		utils.spawn(function() while true do loops.receive() end end)
	end
	if state == 'startup' then
		mark()   -- signals are sent once loop 1 runs, the others still starting
		if path == 'exit' then utils.exit(3) elseif path == 'error' then error('boom') end
		return s:sleep(30)
	end
	while count() < loops.count - 1 do s:sleep(0.002) end
	if path == 'exit' then
		utils.timer(0.001, function() utils.exit(3) end)
	elseif path == 'error' then
		utils.timer(0.001, function() error('boom') end)
	else
		mark()
	end
	return s:sleep(30)
end
if state == 'startup' then return loops.receive() end
mark()
if state == 'receive' then
	loops.receive()
elseif state == 'poll' then
	utils.sleeper():sleep(30)
elseif state == 'busy' then
	if jit then   -- a compiled trace never looks at hooks: see docs/loops.md
		while true do os.clock() end
	else
		while true do end
	end
elseif state == 'sending' then
	local msg = ('x'):rep(100)
	while true do
		if not loops.send(1, msg) then utils.yield() end
	end
end
]=])

-- Runs the child `runs` times in a row; prints "status finalizers errors-line" per run.
-- A run that does not end within 20 s is killed (status 137).
local driver = file('run.sh', [=[
lem=$1 child=$2 state=$3 path=$4 runs=$5 loops=$6 dir=$7
i=0
while [ $i -lt $runs ]; do
	ready=$dir/ready
	: > $ready
	$lem --loops $loops --shutdown-timeout 0 $child $state $path $ready 2> $dir/err &
	pid=$!
	( trap 'kill $s; exit 0' TERM; sleep 20 & s=$!; wait $s; kill -9 $pid ) >/dev/null 2>&1 &
	guard=$!
	case $path in TERM|INT)
		want=$loops
		[ $state = startup ] && want=1
		k=0
		while [ $(wc -l < $ready) -lt $want ] && [ $k -lt 4000 ]; do sleep 0.002; k=$((k+1)); done
		kill -$path $pid ;;
	esac
	wait $pid
	st=$?
	kill $guard 2>/dev/null
	wait $guard 2>/dev/null
	fins=$(grep -c '^fin ' $dir/err)
	boom=$(grep -c '^lem\[1\]: .*boom' $dir/err)
	other=$(grep -v '^fin \|^lem\[1\]: .*boom\|^stack traceback:\|^spawned at \|^	' $dir/err | head -1)
	echo "run $i status $st fins $fins boom $boom other $other"
	i=$((i+1))
done
]=])

local want = { exit = 3, error = 1, TERM = 143, INT = 130 }
for _, state in ipairs { 'receive', 'poll', 'busy', 'sending', 'startup' } do
	for _, path in ipairs { 'exit', 'error', 'TERM', 'INT' } do
		local name = ('%s while the other loops are %s'):format(path, state)
		local signal = path == 'TERM' or path == 'INT'
		if tsan and (signal or state == 'busy') then
			-- ThreadSanitizer delivers signals only at its own interception points
			t.skip(name, 'signals are deferred under ThreadSanitizer')
		else
			local loops = state == 'startup' and (signal and 256 or 64) or 3
			local _, out = t.run(('sh %s %s %s %s %s %d %d %s'):format(driver, lem, child,
				state, path, RUNS, loops, dir))
			local bad, runs = {}, 0
			for line in out:gmatch('[^\n]+') do
				runs = runs + 1
				local st, fins, boom, other = line:match('status (%d+) fins (%d+) boom (%d+) other ?(.*)')
				st, fins, boom = tonumber(st), tonumber(fins), tonumber(boom)
				-- a stop during start-up may come before some loops made their finalizer
				local finsok = fins == loops or (state == 'startup' and fins >= 1 and fins <= loops)
				if st ~= want[path] or not finsok or (path == 'error') ~= (boom == 1)
				   or (other ~= '' and not signal) then
					bad[#bad + 1] = line
				end
			end
			t.ok(runs == RUNS and #bad == 0, name .. (' (%d runs, %d loops)'):format(RUNS, loops),
			     table.concat(bad, '\n'))
		end
	end
end

-- ---- a stop while a name lookup waits for a DNS server that does not answer ----
-- getaddrinfo runs on the thread pool and blocks until the resolver gives up (here 5 s
-- times 3 attempts). A stop (the shutdown's deadline, utils.exit, os.exit) ended the
-- process only once it had: the freed loop waited for the lookup, and the exit for the
-- pool's thread. The child gets a silent DNS server of its own through a mount namespace
-- (root, unshare and python3 needed).
local function can(cmd) return os.execute(cmd .. ' >/dev/null 2>&1') == 0 end
if not (can('test "$(id -u)" = 0') and can('unshare -m --propagation private true') and can('python3 -c 1')) then
	t.skip('a stop during a name lookup', 'needs root, unshare -m and python3')
else
	-- a UDP socket that takes the queries and never answers, on an address of its own
	math.randomseed(os.time() + tonumber(t.pid))
	local ns = ('127.%d.%d.%d'):format(math.random(1, 254), math.random(1, 254), math.random(2, 254))
	file('resolv.conf', 'nameserver ' .. ns .. '\noptions timeout:5 attempts:3\n')
	local dns = io.popen(('exec python3 -c "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n' ..
		's.bind((\'%s\', 53))\nprint(__import__(\'os\').getpid(), flush=True)\ntime.sleep(120)"'):format(ns))
	local dnspid = dns:read('*l')
	local lookup = file('lookup.lua', [=[
local io, loops, utils = require 'lem.io', require 'lem.loops', require 'lem.utils'
local how, ready = ...
local f = _G.io.open(ready, 'a') f:write(loops.id, '\n') f:close()
if how == 'exit' then utils.timer(0.2, function() utils.exit(3) end) end
if how == 'os.exit' then utils.timer(0.2, function() os.exit(3) end) end
print(io.tcp.connect('lookup.example', 80))
]=])
	for _, how in ipairs { 'TERM', 'exit', 'os.exit' } do
		local _, out = t.run(([[
unshare -m --propagation private sh -c '
mount --bind %s/resolv.conf /etc/resolv.conf || exit 99
: > %s/ready
s=$(date +%%s%%N)
%s --loops %d --shutdown-timeout 0.2 %s %s %s/ready > /dev/null 2>&1 &
p=$!
( sleep 30; kill -9 $p ) >/dev/null 2>&1 &
g=$!
if [ %s = TERM ]; then
	k=0; while [ $(wc -l < %s/ready) -lt 2 ] && [ $k -lt 2000 ]; do sleep 0.005; k=$((k+1)); done
	sleep 0.1; kill -TERM $p
fi
wait $p; st=$?
kill $g
echo "status $st ms $(( ($(date +%%s%%N) - s) / 1000000 ))"']]):format(dir, dir, lem, how == 'os.exit' and 1 or 2,
			lookup, how, dir, how, dir))
		local st, ms = out:match('status (%d+) ms (%d+)')
		st, ms = tonumber(st), tonumber(ms)
		t.ok(st == (how == 'TERM' and 143 or 3) and ms and ms < 3000,
		     ('%s while %s up: the process ends at once, not when the resolver gives up'):format(how,
		      how == 'os.exit' and 'the loop looks a name' or 'both loops look a name'),
		     out)
	end
	os.execute('kill ' .. (tonumber(dnspid) or ''))
	dns:close()
end

t.done()
