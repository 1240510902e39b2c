-- tap.lua: a small Test Anything Protocol producer for lem's test files.
--   local t = require 'tap'
--   t.ok(cond, name); t.is(got, want, name); t.like(str, pattern, name); t.done()
-- Tests run under lem, so each file's main chunk is a coroutine and may suspend.
local t = { count = 0, failed = 0 }

local function report(pass, name, diag)
	t.count = t.count + 1
	if not pass then t.failed = t.failed + 1 end
	io.write(pass and 'ok ' or 'not ok ', t.count, ' - ', name or '', '\n')
	if not pass and diag then
		io.write('#   ', (diag:gsub('\n', '\n#   ')), '\n')
	end
	io.flush()
	return pass
end

local function show(v)
	if type(v) == 'string' then return string.format('%q', v) end
	return tostring(v)
end

function t.ok(cond, name, diag)
	return report(not not cond, name, diag)
end

function t.is(got, want, name)
	local pass = got == want or (got ~= got and want ~= want)   -- nan is nan
	return report(pass, name, 'got:      ' .. show(got) .. '\nexpected: ' .. show(want))
end

function t.isnt(got, unwanted, name)
	return report(got ~= unwanted, name, 'got: ' .. show(got))
end

function t.like(str, pattern, name)
	local pass = type(str) == 'string' and str:find(pattern) ~= nil
	return report(pass, name, 'got:     ' .. show(str) .. '\npattern: ' .. show(pattern))
end

-- t.near(x, want, tolerance, name): timing checks take tolerances, never exact values.
function t.near(x, want, tol, name)
	local pass = type(x) == 'number' and math.abs(x - want) <= tol
	return report(pass, name, ('got %s, expected %s +- %s'):format(show(x), show(want), show(tol)))
end

-- t.error(f, pattern, name): f() must raise an error whose message matches pattern.
function t.error(f, pattern, name)
	local ok, err = pcall(f)
	if ok then return report(false, name, 'no error raised') end
	return t.like(tostring(err), pattern, name)
end

-- t.same(a, b, name): deep equality of plain tables.
local function same(a, b)
	if a == b or (a ~= a and b ~= b) then return true end
	if type(a) ~= 'table' or type(b) ~= 'table' then return false end
	for k, v in pairs(a) do if not same(v, b[k]) then return false end end
	for k in pairs(b) do if a[k] == nil then return false end end
	return true
end
function t.same(a, b, name) return report(same(a, b), name, 'tables differ') end

function t.skip(name, why)
	t.count = t.count + 1
	io.write('ok ', t.count, ' - ', name, ' # SKIP ', why, '\n')
end

-- Runs a shell command; returns its exit status, stdout and stderr. Used by CLI tests.
-- A command still running after 300 s is killed, with every process it started that
-- stayed in its group (status 137): a hung child fails its test instead of hanging the run.
local tmp = os.tmpname()
function t.run(cmd, input)
	local inf, script = tmp .. '.in', tmp .. '.sh'
	if input then
		local f = assert(io.open(inf, 'wb')); f:write(input); f:close()
		cmd = cmd .. ' < ' .. inf
	end
	local f = assert(io.open(script, 'wb')); f:write(cmd, '\n'); f:close()
	local out = io.popen('timeout -s KILL 300 sh ' .. script .. ' 2>' .. tmp .. '.err; echo "#status $?"')
	local text = out:read('*a')
	out:close()
	local status = tonumber(text:match('#status (%d+)\n?$'))
	text = text:gsub('#status %d+\n?$', '')
	local ef = io.open(tmp .. '.err', 'rb')
	local err = ef and ef:read('*a') or ''
	if ef then ef:close() end
	os.remove(tmp .. '.err'); os.remove(inf); os.remove(script)
	return status, text, err
end
os.remove(tmp)

-- Open descriptors of this process, counted without starting a process (a child would
-- race with us over the pipe it is started with).
function t.nfds()
	local n = 0
	for fd = 0, 4095 do
		local f = io.open('/proc/self/fdinfo/' .. fd)
		if f then n = n + 1 f:close() end
	end
	return n
end

-- Two connected TCP streams of lem.io (client, server side), over loopback.
function t.tcp_pair()
	local io = require 'lem.io'
	local server = assert(io.tcp.listen('127.0.0.1', 0))
	local a = assert(io.tcp.connect('127.0.0.1', server:port()))
	local b = assert(server:accept(2))
	server:close()
	return a, b
end

-- require(name), or nil after a failed test that says why (the caller ends the file).
function t.require(name)
	local ok, mod = pcall(require, name)
	if ok then return mod end
	t.ok(false, 'module ' .. name .. ' loads: ' .. tostring(mod))
end

-- The pieces of s between separators (a character class, e.g. '\n'), sorted and joined
-- back: output whose order does not matter, made comparable.
function t.sorted(s, sep)
	local l = {}
	for x in s:gmatch('[^' .. sep .. ']+') do l[#l + 1] = x end
	table.sort(l)
	return table.concat(l, sep)
end

-- This test process's pid, for the children that watch it.
do
	local f = assert(io.open('/proc/self/stat'))   -- closed now: tests count descriptors
	t.pid = f:read('*l'):match('^%d+')
	f:close()
end

-- Shell text that kills process `pid` should this test process die first (an error
-- outside t.done, a kill): a child must not outlive the test that waits for it.
local function watchdog(pid)
	return ('(while kill -0 %s; do kill -0 %s || exit 0; sleep 0.5; done; kill -KILL %s) >/dev/null 2>&1 &')
		:format(t.pid, pid, pid)
end

-- Runs `lem args` in the background, its output in a file of dir; returns its pid and a
-- function that reads that output. wait(pattern, n) polls (up to 30 s: a loaded machine
-- starts a sanitized lem slowly) until the output holds pattern n times, and returns the
-- output. The child is killed by t.done() if it still runs then, or when this process dies.
local children = {}
function t.background(dir, args)
	local out, pidf = dir .. '/bg.out', dir .. '/bg.pid'
	os.execute(t.lem .. ' ' .. args .. ' > ' .. out .. ' 2>&1 & echo $! > ' .. pidf)
	local f = assert(io.open(pidf))
	local pid = f:read('*l')
	f:close()
	children[#children + 1] = pid
	os.execute(watchdog(pid))
	local function output() return t.slurp(out) end
	local function wait(pattern, n)
		t.eventually(function() return select(2, output():gsub(pattern, '')) >= n end, 30)
		return output()
	end
	return pid, output, wait
end

-- A shell function for scripts that start a child and wait for it: `bounded SECONDS PID`
-- waits for PID and returns its status, killing it (SIGKILL: status 137) if it has not
-- ended after SECONDS. A wait without a bound hangs the whole test run on a lost signal.
t.sh_bounded = [[
bounded() {
	( trap 'kill $s; exit 0' TERM; sleep $1 & s=$!; wait $s; kill -9 $2 ) >/dev/null 2>&1 &
	_g=$!
	wait $2; _st=$?
	kill $_g 2>/dev/null; wait $_g 2>/dev/null
	return $_st
}
]]

-- A TCP port on loopback that nobody listens on now, for a child server to take. The
-- kernel picks it: a port tried at random would be the same in every test process (the
-- generator is not seeded), and SO_REUSEPORT lets a second server bind it beside a live
-- one of another test run.
-- Writes 1 MiB pieces to the stream s until a write fails (a peer that reads nothing: the
-- kernel's buffers fill up) or n of them (default 64) went out.
-- --> the failed write's message (nil when all went out), the seconds it all took
function t.write_until_fails(s, n)
	local utils = require 'lem.utils'
	local piece, t0, err = string.rep('w', 1048576), utils.now(), nil
	for _ = 1, n or 64 do
		local ok, e = s:write(piece)
		if not ok then err = e break end
	end
	return err, utils.now() - t0
end

function t.free_port()
	local l = assert(require('lem.io').tcp.listen('127.0.0.1', 0))
	local p = l:port()
	l:close()
	return p
end

-- A new temporary folder, removed by t.done(), and files written into it (mode: chmod's).
local tmpdirs = {}
function t.tmpdir()
	local dir = os.tmpname()
	os.remove(dir)
	assert(os.execute('mkdir -p ' .. dir) == 0, 'cannot make ' .. dir)
	tmpdirs[#tmpdirs + 1] = dir
	return dir
end
-- The whole of a file, or '' when it is not there (yet).
function t.slurp(path)
	local f = io.open(path, 'rb')
	local text = f and f:read('*a') or ''
	if f then f:close() end
	return text
end
function t.file(dir, name, text, mode)
	local path = dir .. '/' .. name
	local f = assert(io.open(path, 'wb'))
	f:write(text)
	f:close()
	if mode then os.execute('chmod ' .. mode .. ' ' .. path) end
	return path
end

-- The time now, for a duration to start from: utils.now() is the loop's time as of its
-- last poll, which the code run since (a blocking call, a slow machine) has left behind.
-- It suspends the caller for a millisecond.
function t.now()
	local utils = require 'lem.utils'
	utils.sleeper():sleep(0.001)
	return utils.now()
end

-- Polls cond every 10 ms until it returns true or timeout (5 s) passes; returns its last
-- value. For what another thread or process makes true "soon": under load, soon varies.
-- After each sleep, what woke in the same loop iteration runs before cond is asked: a
-- slow iteration (valgrind, a loaded machine) may move the loop's time past the timeout.
function t.eventually(cond, timeout)
	local utils = require 'lem.utils'
	local s, t0 = utils.sleeper(), utils.now()
	local v = cond()
	while not v and utils.now() - t0 < (timeout or 5) do
		s:sleep(0.01)
		utils.yield()
		v = cond()
	end
	return v
end

-- The lem binary under test (set by make test), quoted for the shell.
t.lem = "'" .. (os.getenv('LEM') or 'lem') .. "'"

-- Runs a C test program of make test's (tests/c/<name>.c, built beside lem in tests/)
-- with the shell words args, and relays the TAP it prints: each of its tests is one here,
-- its other lines are written through; then that it exited 0 having run its whole plan.
function t.ctest(name, args)
	local bin = (os.getenv('LEM') or ''):match('^(.*)/[^/]*$')
	local st, out, err = t.run("'" .. (bin or '.') .. '/tests/' .. name .. "' " .. (args or ''))
	local plan, seen = nil, 0
	for line in out:gmatch('[^\n]+') do
		local pass, what = line:match('^(n?o?t? ?ok) %d+ %- (.*)$')
		if pass then
			seen = seen + 1
			t.ok(pass == 'ok', what)
		elseif line:match('^1%.%.%d+$') then
			plan = tonumber(line:match('%d+$'))
		else
			io.write(line, '\n')
		end
	end
	t.is(st, 0, 'the C test program exits 0' .. (err ~= '' and ': ' .. err or ''))
	t.is(seen, plan, 'it ran its whole plan')
end

function t.done()
	-- children told to stop get 2 s to end by themselves (a sanitizer's report comes at the exit)
	for _, pid in ipairs(children) do
		local function alive() return os.execute('kill -0 ' .. pid .. ' 2>/dev/null') == 0 end
		if not t.eventually(function() return not alive() end, 2) then
			os.execute('kill -KILL ' .. pid .. ' 2>/dev/null')
		end
	end
	for _, dir in ipairs(tmpdirs) do os.execute('rm -rf ' .. dir) end
	io.write('1..', t.count, '\n')
	io.flush()
	if t.failed > 0 then
		require('lem.utils').exit(1)
	end
end

return t
