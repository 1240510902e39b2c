-- lem.loops and --loops: messages between loops, their life cycle, the command line.
local t = require 'tap'
local utils = require 'lem.utils'
local loops = require 'lem.loops'
local lem = t.lem

t.is(loops.id, 1, 'a single lem is loop 1')
t.is(loops.count, 1, '... of 1')

-- values round-trip (self-send in this one loop)
local function roundtrip(...)
	assert(loops.send(1, ...))
	return select(2, loops.receive())
end
local function pack(...) return { n = select('#', ...), ... } end

local r = pack(roundtrip(nil, true, false, 0, -1.5, 2^53, 'str', nil))
t.is(r.n, 8, 'the number of values is kept, trailing nil included')
t.same({ r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8] }, { nil, true, false, 0, -1.5, 2^53, 'str', nil }, 'nil, booleans, numbers, strings')
local inf, nan = roundtrip(1/0, 0/0)
t.ok(inf == 1/0, 'inf')
t.ok(nan ~= nan, 'nan')
local negzero = roundtrip(-1 / math.huge)   -- computed: 5.1 folds the literal -0.0 into 0
t.ok(1/negzero == -1/0, '-0 keeps its sign')
t.is(roundtrip(0.1 + 0.2), 0.1 + 0.2, 'doubles exactly')
t.is(roundtrip(-2^-1074), -2^-1074, 'the smallest denormal')
local bin = ''
for i = 0, 255 do bin = bin .. string.char(i) end
t.is(roundtrip(bin), bin, 'binary-safe strings')
local big = ('abc\0'):rep(300000)
t.is(roundtrip(big), big, 'a 1.2 MB string')
t.is(roundtrip(''), '', 'the empty string')
local nested = { 1, 2, nil, 4, x = { y = { z = 'deep', [true] = false } }, [1.5] = 'float key', [-1] = { {} } }
t.same(roundtrip(nested), nested, 'nested tables, holes, any keys')
local shared = {}
local dag = roundtrip({ a = shared, b = shared })
t.ok(dag.a ~= dag.b and type(dag.a) == 'table', 'a table reached twice arrives as two copies')
local withmt = roundtrip(setmetatable({ 1 }, { __index = function() return 'mt' end }))
t.ok(getmetatable(withmt) == nil and withmt[2] == nil, 'metatables do not cross')
t.is(select('#', roundtrip()), 0, 'an empty message')

-- random values, nested, round-trip (a fixed seed: the same values every run)
math.randomseed(42)
local function random_value(depth)
	local k = math.random(depth > 3 and 5 or 7)
	if k == 1 then return nil
	elseif k == 2 then return math.random() < 0.5
	elseif k == 3 then return (math.random() - 0.5) * 10 ^ math.random(-300, 300)
	elseif k == 4 then return math.random(-2^31, 2^31)
	elseif k == 5 then
		local b = {}
		for i = 1, math.random(0, 40) do b[i] = string.char(math.random(0, 255)) end
		return table.concat(b)
	else
		local tb = {}
		for _ = 1, math.random(0, 8) do
			local key = random_value(9)   -- a scalar: table keys would arrive as new tables
			if key ~= nil then tb[key] = random_value(depth + 1) end
		end
		return tb
	end
end
local function deep_equal(a, b)
	if type(a) ~= 'table' or type(b) ~= 'table' then return a == b end
	for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
	for k in pairs(b) do if a[k] == nil then return false end end
	return true
end
local all_same = true
for _ = 1, 300 do
	local vals = { n = math.random(0, 6) }
	for i = 1, vals.n do vals[i] = random_value(0) end
	local back = pack(roundtrip(unpack(vals, 1, vals.n)))
	if back.n ~= vals.n then all_same = false end
	for i = 1, vals.n do
		if not deep_equal(vals[i], back[i]) then all_same = false end
	end
end
t.ok(all_same, '300 random messages of nested values round-trip')

-- unsendable values: a bad argument, and nothing is sent
local function nothing_queued() return loops.receive(0) == nil end
t.error(function() loops.send(1, 1, print) end, "bad argument #3 to 'send' %(cannot send a function%)", 'a function')
t.ok(nothing_queued(), '... nothing was sent')
t.error(function() loops.send(1, { f = { coroutine.create(function() end) } }) end, "bad argument #2 to 'send' %(cannot send a thread%)", 'a coroutine deep in a table')
t.error(function() loops.send(1, newproxy()) end, "cannot send a userdata", 'a userdata')
t.error(function() loops.send(1, { [print] = 1 }) end, "cannot send a function", 'a function as a key')
local cyc = { a = {} }
cyc.a.b = cyc
t.error(function() loops.send(1, 'x', cyc) end, "bad argument #3 to 'send' %(cannot send a table that contains itself%)", 'a cycle')
t.ok(nothing_queued(), '... nothing was sent')
-- nesting: 1000 levels (as JSON decoders allow) cross, 1001 do not; no C recursion
local function nest(n, key)   -- n tables, each the value (or the key) of the one outside
	local top = {}
	local d = top
	for _ = 2, n do
		local inner = {}
		if key then d[inner] = true else d[1] = inner end
		d = inner
	end
	d.leaf = 'bottom'
	return top
end
local function depth(v, key)
	local n = 0
	while type(v) == 'table' do
		n = n + 1
		if v.leaf then break end
		if key then v = next(v) else v = v[1] end
	end
	return n, v.leaf
end
t.same({ depth(roundtrip(nest(1000))) }, { 1000, 'bottom' }, 'tables nested 1000 deep cross')
t.same({ depth(roundtrip(nest(1000, true), true)) }, { 1000, 'bottom' }, '... and as keys nested 1000 deep')
t.error(function() loops.send(1, 'x', nest(1001)) end, "bad argument #3 to 'send' %(cannot send tables nested that deep%)", 'tables nested 1001 deep do not')
t.ok(nothing_queued(), '... nothing was sent')
t.error(function() loops.send(1, { a = nest(1000) }) end, 'nested that deep', 'nor 1000 more levels inside a table')
local wide = {}
for i = 1, 3999 do wide[i] = i end
wide[4000] = nest(1000)
local back = pack(roundtrip(unpack(wide, 1, 4000)))
t.ok(back.n == 4000 and back[3999] == 3999 and depth(back[4000]) == 1000, '4000 values, the last nested 1000 deep')
t.error(function() loops.broadcast(print) end, "bad argument #1 to 'broadcast' %(cannot send a function%)", 'broadcast checks too')
-- at most 4000 values at the top level; the argument number is the 4001st value's
local many = {}
for i = 1, 4001 do many[i] = i end
t.error(function() loops.send(1, unpack(many)) end,
	"bad argument #4002 to 'send' %(cannot send more than 4000 values at once%)", '4001 values: an error naming the 4001st')
t.ok(nothing_queued(), '... nothing was sent')
t.error(function() loops.broadcast(unpack(many)) end,
	"bad argument #4001 to 'broadcast' %(cannot send more than 4000 values at once%)", '... numbered from #1 in broadcast')
local pg_ok, pg = pcall(require, 'lem.postgres')
if pg_ok then
	t.error(function() loops.send(1, 'x', { { pg.null } }) end, "bad argument #3 to 'send' %(cannot send a userdata%)",
		'a light userdata deep in a table')
else
	t.skip('a light userdata deep in a table', 'lem.postgres (its null) does not load')
end
if jit then
	local ffi = require 'ffi'
	t.error(function() loops.send(1, { [ffi.new('int')] = 1 }) end, "bad argument #2 to 'send' %(cannot send a cdata%)",
		'a cdata as a key')
else
	t.skip('a cdata as a key', 'no cdata in PUC Lua')
end
t.is(loops.broadcast('nobody'), 0, 'broadcast with one loop reaches no one: 0')
t.ok(nothing_queued(), '... not even this loop')

-- bad ids
t.error(function() loops.send(2, 'x') end, "bad argument #1 to 'send' %(loop id must be a whole number from 1 to 1%)", 'id out of range')
t.error(function() loops.send(0) end, 'whole number from 1 to 1', 'id 0')
t.error(function() loops.send(1.5) end, 'whole number from 1 to 1', 'id 1.5')
t.error(function() loops.send('one') end, "bad argument #1 to 'send' %(number expected, got string%)", 'id of the wrong type')
t.error(function() loops.receive('soon') end, "bad argument #1 to 'receive' %(number expected, got string%)", 'receive timeout of the wrong type')

-- receive: timeout, order, FIFO among receivers
-- (the loop's time is fresh first: the sleep must outlast the receive, and a loop time
-- left behind by the work above would end both in the next poll)
local t0 = t.now()
utils.spawn(function() utils.sleeper():sleep(0.5) end)   -- other work: see loops-idle.lua
local a, e = loops.receive(0.05)
local took = utils.now() - t0
t.same({ a, e }, { nil, 'timeout' }, "receive(timeout) returns nil, 'timeout'")
t.ok(took >= 0.045 and took < 1, 'after about that long (' .. took .. ')')
t.same({ loops.receive(0) }, { nil, 'timeout' }, 'receive(0) polls')
t.same({ loops.receive(-1) }, { nil, 'timeout' }, 'so does receive(-1)')
-- where lem cannot suspend: a receive that has to wait raises, one that need not works
loops.send(1, 'ready')
t.same({ coroutine.wrap(function() return loops.receive() end)() }, { 1, 'ready' },
	'receive inside coroutine.wrap with a message there: the message')
t.same({ coroutine.wrap(function() return loops.receive(0) end)() }, { nil, 'timeout' },
	'... and receive(0) with none: nil, timeout')
t.error(coroutine.wrap(function() return loops.receive() end),
	'^cannot suspend here: not a coroutine run by lem', '... but one that has to wait raises')
for i = 1, 100 do loops.send(1, i) end
local inorder = true
for i = 1, 100 do if select(2, loops.receive()) ~= i then inorder = false end end
t.ok(inorder, 'messages arrive in the order sent')
local served = {}
for i = 1, 3 do utils.spawn(function() local _, v = loops.receive(); served[#served + 1] = i .. v end) end
utils.yield()
loops.send(1, 'a'); loops.send(1, 'b'); loops.send(1, 'c')
t.eventually(function() return #served == 3 end)
t.same(served, { '1a', '2b', '3c' }, 'waiting receivers are served first come, first served, one message each')
local late
utils.spawn(function() late = pack(loops.receive(1)) end)
utils.yield()
loops.send(1, 'x', nil)
t.eventually(function() return late end)
t.same(late, { n = 3, 1, 'x', nil }, 'a receiver with a timeout gets the message and the sender id')

-- a receiver resumed by hand (unsupported) is stale: the message it would have had is
-- kept for the next receive, whether that one waits already or comes later
local function stale_receiver()
	local co, got
	utils.spawn(function() co = coroutine.running(); got = pack(loops.receive()) end)
	utils.yield()                      -- co waits in receive
	assert(coroutine.resume(co, 'by hand'))
	return got
end
t.same(stale_receiver(), { n = 1, 'by hand' }, 'a receive resumed by hand returns what it was resumed with')
loops.send(1, 'next')
t.same(pack(loops.receive(1)), { n = 2, 1, 'next' }, '... and the message that comes next goes to the receiver waiting behind it')
stale_receiver()
loops.send(1, 'later')
-- it arrives while only the stale receiver waits; a receive that does not wait takes it
local later = t.eventually(function()
	local got = pack(loops.receive(0))
	return got[1] and got
end)
t.same(later, { n = 2, 1, 'later' }, '... or to the next receive, when none waits behind it')
stale_receiver()
loops.send(1, 'first'); loops.send(1, 'second')
local both = {}
for _ = 1, 2 do utils.spawn(function() local _, v = loops.receive(1); both[#both + 1] = v end) end
t.eventually(function() return #both == 2 end)
t.same(both, { 'first', 'second' }, '... in the order sent, with several receivers behind it')

-- the module required again in the same loop shares its receivers with the first
package.loaded['lem.loops'] = nil
local again = require 'lem.loops'
t.ok(again ~= loops, 'a second require makes a second module table')
local twice = {}
utils.spawn(function() local _, v = loops.receive(1); twice[#twice + 1] = v end)
utils.spawn(function() local _, v = again.receive(1); twice[#twice + 1] = v end)
utils.yield()
again.send(1, 'one'); loops.send(1, 'two')
t.eventually(function() return #twice == 2 end)
t.same(twice, { 'one', 'two' }, '... and both tables serve their receivers, in order')

-- closed: a receive that nothing can answer returns at once when the loop has nothing else
local st, out, err = t.run(lem .. [[ -e "print(require('lem.loops').receive())"]])
t.is(out, 'nil\tclosed\n', "receive with no possible sender returns nil, 'closed' instead of hanging")
t.is(st, 0, '... and lem exits 0')

-- the full mailbox
st, out = t.run(lem .. [[ --mailbox 3 -e "local l = require('lem.loops'); print(l.send(1, 1), l.send(1, 2), l.send(1, 3), l.send(1, 4)); print(select(2, l.receive()), l.send(1, 5))"]])
t.is(out, 'true\ttrue\ttrue\tnil\tfull\n1\ttrue\n', "a mailbox at its capacity: nil, 'full'; room again after a receive")

local dir = t.tmpdir()
local function script(name, text) return t.file(dir, name, text) end

-- several loops: each runs the script, same arg
local ids = script('ids.lua', [[
-- one io.write of one string per line: the pieces of print, or of an io.write with
-- several arguments, can interleave with another thread's
local l = require 'lem.loops'
if l.id == 1 then
	local seen = {}
	for _ = 2, l.count do local from, id, a1 = l.receive(); seen[#seen + 1] = from == id and a1 or 'bad' end
	table.sort(seen)
	io.write(l.count .. '\t' .. table.concat(seen, ',') .. '\n')
else
	l.send(1, l.id, arg[1] .. l.id)
end
]])
st, out = t.run(lem .. ' --loops 4 ' .. ids .. ' x')
t.is(out, '4\tx2,x3,x4\n', '--loops 4: four loops run the script with the same arg')
t.is(st, 0, '... and exit 0 when all are done')
st, out = t.run(lem .. ' --loops=3 ' .. ids .. ' y')
t.is(out, '3\ty2,y3\n', '--loops=3')
st, out = t.run(lem .. ' --loops auto ' .. ids .. ' z')
local ncpu = tonumber(io.popen('getconf _NPROCESSORS_ONLN'):read('*l'))
t.like(out, '^' .. ncpu .. '\t', '--loops auto runs one loop per online CPU (' .. ncpu .. ')')
st, out, err = t.run(lem .. ' --loops 2 --pin ' .. ids .. ' p')
t.is(out, '2\tp2\n', '--pin runs (pinned, or unpinned with a note)')
t.ok(err == '' or err:find('cannot pin'), 'pinning says so when it fails: ' .. err)

-- closed mailboxes, broadcast
local bc = script('bc.lua', [[
local l, u = require 'lem.loops', require 'lem.utils'
local function print(...)   -- one write per line: loops print at the same time
	local t = { ... }
	for i = 1, select('#', ...) do t[i] = tostring(t[i]) end
	io.write(table.concat(t, '\t', 1, select('#', ...)) .. '\n')
end
if l.id == 1 then
	print('reached', l.broadcast('hi', l.id))
	local got = 0
	for _ = 2, l.count do if select(2, l.receive()) == 'ack' then got = got + 1 end end
	print('acks', got)
	-- loop 3 has finished soon after its ack (10 s on a loaded machine at most): its
	-- mailbox is closed
	local t0 = u.now()
	while l.send(3, 'x') and u.now() - t0 < 10 do u.sleeper():sleep(0.01) end
	print('to finished loop', l.send(3, 'x'))
elseif l.id == 2 then
	local from, what = l.receive()
	l.send(from, 'ack')
	print('2 then', l.receive())
else
	local from = l.receive()
	l.send(from, 'ack')
end
]])
st, out = t.run(lem .. ' --loops 3 ' .. bc .. ' | sort')
t.is(out, "2 then\tnil\tclosed\nacks\t2\nreached\t2\nto finished loop\tnil\tclosed\n", "broadcast reaches the others; a finished loop's mailbox is closed")
-- a full mailbox is skipped (loop 2 receives nothing until the exit stops it)
st, out = t.run(lem .. [[ --loops 2 --mailbox 1 -e "local l, u = require 'lem.loops', require 'lem.utils'
	if l.id == 1 then print(l.broadcast('a'), l.broadcast('b')) u.exit(0) else u.sleeper():sleep(30) end"]])
t.is(out, '1\t0\n', 'broadcast skips a full mailbox: 1, then 0')

-- error and exit propagation from loop k
local errs = script('err.lua', [[
local l, u = require 'lem.loops', require 'lem.utils'
if l.id == 3 then u.timer(0.01, function() error('boom in 3') end) end
u.sleeper():sleep(5)
print('not reached', l.id)
]])
st, out, err = t.run(lem .. ' --loops 4 ' .. errs)
t.is(st, 1, 'an uncaught error in loop 3 stops every loop, status 1')
t.like(err, '^lem%[3%]: .*boom in 3\nstack traceback:', 'lem[<id>]: <message> and a traceback')
t.is(out, '', 'the others stopped without going on')
local ex = script('exit.lua', [[
local l, u = require 'lem.loops', require 'lem.utils'
local p = newproxy(true)
getmetatable(p).__gc = function() io.write('gc' .. l.id .. '\n') end
keep = p
-- every loop has its finalizer before loop 2 exits (a loop stopped before its script
-- ran has nothing to finalize)
if l.id == 2 then
	for _ = 2, l.count do l.receive() end
	u.exit(7)
end
l.send(2, 'ready')
u.sleeper():sleep(5)
]])
st, out = t.run(lem .. ' --loops 3 ' .. ex .. ' | sort')
t.is(out, 'gc1\ngc2\ngc3\n', 'utils.exit in one loop: every loop closes its own state, finalizers run')
st = t.run(lem .. ' --loops 3 ' .. ex)
t.is(st, 7, '... and the process exits with that status')
st, out, err = t.run(lem .. ' --loops 2 -e "error(\'both\')"')
t.is(st, 1, 'errors in several loops: status 1')
t.like(err, '^lem%[%d%]: %(command line%):1: both', 'reported with the loop id')

-- a stop reaches a busy loop before it resumes anything more
st, out = t.run(lem .. [[ --loops 2 -e "local l, u = require 'lem.loops', require 'lem.utils'; if l.id == 2 then u.timer(0.05, function() u.exit(4) end) else local t = os.clock() while os.clock() - t < 0.3 do end u.yield() print('after yield') end"]])
t.is(st, 4, 'exit in loop 2 while loop 1 computes: status 4')
t.is(out, '', 'loop 1 resumed nothing after the stop')

-- start-up failures are reported once
st, out, err = t.run(lem .. ' --loops 4 ' .. dir .. '/missing.lua')
t.is(st, 1, 'a missing script with --loops 4 exits 1')
t.like(err, '^lem: cannot open [^\n]*\n$', '... with one message')

-- --loops 1 is the single-loop lem
st, out, err = t.run(lem .. ' --loops 1 -e "error(\'one\')"')
t.like(err, '^lem: %(command line%):1: one', "--loops 1 reports as 'lem:'")

-- command line errors
for _, bad in ipairs({ '0', '1025', 'x', '-1', '2.5', '' }) do
	st, out, err = t.run(lem .. " --loops '" .. bad .. "' -e 'print(1)'")
	t.ok(st == 1 and err == "lem: --loops expects a whole number from 1 to 1024 or 'auto', got '" .. bad .. "'\n",
		'--loops ' .. bad .. ' is refused: ' .. err)
end
st, out, err = t.run(lem .. ' --loops')
t.ok(st == 1 and err:find("^lem: '%-%-loops' needs an argument\nusage: lem ") ~= nil, '--loops without a value: usage, status 1', err)
st, out, err = t.run(lem .. ' --mailbox 0 -e "print(1)"')
t.ok(st == 1 and out == '' and err == "lem: --mailbox expects a whole number from 1 to 16777216, got '0'\n", '--mailbox 0 is refused', err)
st, out, err = t.run(lem .. ' --mailbox 16777217 -e "print(1)"')
t.ok(st == 1 and err == "lem: --mailbox expects a whole number from 1 to 16777216, got '16777217'\n", '--mailbox 16777217 too', err)

-- signals stop every loop like utils.exit once the shutdown's deadline passed, at once
-- here (ThreadSanitizer defers signals: not there)
if os.getenv('LEM_SANITIZER') == 'tsan' then
	t.skip('SIGINT stops every loop', 'signals are deferred under ThreadSanitizer')
	t.skip('SIGTERM: status 143', 'signals are deferred under ThreadSanitizer')
else
local sig_script = script('sig.lua', [[
local l, u = require 'lem.loops', require 'lem.utils'
local p = newproxy(true)
getmetatable(p).__gc = function() io.write('gc' .. l.id .. '\n') end
keep = p
l.send(1, 'ready')
if l.id == 1 then
	for _ = 1, l.count do l.receive() end
	io.write('ready\n'); io.flush()
	io.open(arg[1], 'w'):close()   -- tells the test to send the signal now
end
u.sleeper():sleep(10)
]])
local flag = dir .. '/ready'
local function signal_cmd(loopsopt, sig)
	return '(rm -f ' .. flag .. '; ' .. lem .. loopsopt .. '--shutdown-timeout 0 ' .. sig_script .. ' ' .. flag .. ' 2>/dev/null & p=$!; ' ..
		'i=0; while [ ! -e ' .. flag .. ' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; ' ..
		'kill -' .. sig .. ' $p; wait $p; echo "status $?") | sort'
end
st, out = t.run(signal_cmd(' --loops 2 ', 'INT'))
t.is(out, 'gc1\ngc2\nready\nstatus 130\n', 'SIGINT stops every loop (finalizers run), status 130')
st, out = t.run(signal_cmd(' ', 'TERM'))
t.is(out, 'gc1\nready\nstatus 143\n', 'SIGTERM: status 143, also with one loop')
end

-- stress: 4 loops each send 100k messages to every other loop; each arrives exactly once
local stress = script('stress.lua', [[
local l, u = require 'lem.loops', require 'lem.utils'
local N, me = tonumber(arg[1]), l.id
u.spawn(function()
	for i = 1, N do
		for to = 1, l.count do
			if to ~= me then
				while true do
					local ok, why = l.send(to, me, i)
					if ok then break end
					assert(why == 'full', why)
					u.yield()
				end
			end
		end
	end
end)
local expect = (l.count - 1) * N
local sum, last, bad = 0, {}, 0
for _ = 1, expect do
	local from, who, i = l.receive()
	if from ~= who or i ~= (last[from] or 0) + 1 then bad = bad + 1 end
	last[from] = i
	sum = sum + i
end
local a, b = l.receive(0.01)   -- 'timeout', or 'closed' once the others are done
io.write(me .. '\t' .. (sum == (l.count - 1) * N * (N + 1) / 2 and bad == 0 and 'ok' or ('bad ' .. bad)) .. '\t' .. tostring(a) .. '\n')
]])
st, out = t.run(lem .. ' --loops 4 --mailbox 1000 ' .. stress .. ' 100000 | sort')
t.is(out, '1\tok\tnil\n2\tok\tnil\n3\tok\tnil\n4\tok\tnil\n',
	'4 loops x 100k messages to each other loop: every one arrives once, in order per sender, none extra')

-- ping-pong between two loops that are idle in between: never a false 'closed'
local pp = script('pp.lua', [[
local l = require 'lem.loops'
local N = tonumber(arg[1])
if l.id == 1 then
	for i = 1, N do
		l.send(2, i)
		local from, k = l.receive()
		if from ~= 2 or k ~= i then io.write('bad at ', i, ' ', tostring(k), '\n') return end
	end
	io.write('ok\n')
else
	for _ = 1, N do
		local from, k = l.receive()
		if not from then io.write('loop 2: ', k, '\n') return end
		l.send(from, k)
	end
end
]])
st, out = t.run(lem .. ' --loops 2 ' .. pp .. ' 20000')
t.is(out, 'ok\n', '20000 ping-pong round trips between two loops, each idle in between')

-- print writes each line whole, so loops printing at once never cut into each other
local pr = script('print.lua', [[
local l = require 'lem.loops'
for i = 1, 2000 do print('loop', l.id, 'line', i, 'end') end
]])
st, out = t.run(lem .. ' --loops 4 ' .. pr)
local lines, whole = 0, 0
for line in out:gmatch('[^\n]*\n') do
	lines = lines + 1
	if line:match('^loop\t%d\tline\t%d+\tend\n$') then whole = whole + 1 end
end
t.ok(lines == 8000 and whole == 8000, 'print from 4 loops at once: 8000 whole lines (' .. whole .. ' of ' .. lines .. ')')

-- os.date from several loops at once (PUC Lua's own shares one static buffer)
local dates = script('dates.lua', [[
local l = require 'lem.loops'
local want = { [0] = '1970-01-01 00:00:00', [86399] = '1970-01-01 23:59:59', [951782400] = '2000-02-29 00:00:00' }
local bad = 0
for i = 1, 20000 do
	for tm, s in pairs(want) do
		if os.date('!%Y-%m-%d %H:%M:%S', tm) ~= s then bad = bad + 1 end
	end
	local d = os.date('!*t', 951782400 + l.id)
	if d.year ~= 2000 or d.month ~= 2 or d.day ~= 29 or d.sec ~= l.id % 60 then bad = bad + 1 end
end
io.write(l.id .. ' ' .. bad .. '\n')
]])
st, out = t.run(lem .. ' --loops 4 ' .. dates .. ' | sort')
t.is(out, '1 0\n2 0\n3 0\n4 0\n', 'os.date in 4 loops at once: every date right')

-- 64 loops
st, out = t.run(lem .. ' --loops 64 ' .. ids .. ' s')
local expect = {}
for i = 2, 64 do expect[#expect + 1] = 's' .. i end
table.sort(expect)
t.is(out, '64\t' .. table.concat(expect, ',') .. '\n', '64 loops start, talk and finish')

-- A receiver that two other loops keep fed never waits for a message; its loop's timers
-- still fire: receive lets the rest of the loop run now and then.
local flood = script('flood.lua', [[
local utils, loops = require 'lem.utils', require 'lem.loops'
if loops.id == 1 then
	local n = 0
	utils.spawn(function() while true do loops.receive() n = n + 1 end end)
	local t0 = os.clock()
	utils.timer(0.01, function()
		print(('fired after %.3f s of CPU, %d messages'):format(os.clock() - t0, n))
		utils.exit(0)
	end)
	return
end
local msg = ('x'):rep(100)
while true do if not loops.send(1, msg) then utils.yield() end end
]])
st, out = t.run('timeout -s KILL 20 ' .. lem .. ' --loops 3 ' .. flood)
local cpu = tonumber(out:match('fired after ([%d.]+)'))
t.ok(st == 0 and cpu and cpu < 1, 'a flooded receiver does not starve its loop: the timer fires', out)

t.done()
