-- lem.loops: when receive says 'closed', with timed receives among the waiting ones.
-- A timed receive whose loop has nothing else to do counts as waiting: it hears 'closed'
-- when no other loop can send, yet keeps the other loops' receives open while it waits.
local t = require 'tap'
local lem = t.lem

local dir = t.tmpdir()
local function script(name, text) return t.file(dir, name, text) end

-- Each loop writes one line; times are rounded to a verdict: 'soon' (under 2 s, where a
-- timeout of 5 s would have said otherwise) or 'late'.
local prelude = [[
local l, u = require 'lem.loops', require 'lem.utils'
local t0 = u.now()
local function say(...)
	local t = { l.id, ... }
	for i = 1, select('#', ...) + 1 do t[i] = tostring(t[i]) end
	io.write(table.concat(t, ' ') .. '\n')
end
local function when() return u.now() - t0 < 2 and 'soon' or 'late' end
]]

local function run(name, opts, body)
	local st, out, err = t.run(lem .. ' ' .. opts .. ' ' .. script(name, prelude .. body) .. ' | sort')
	return out .. err
end

t.is(run('one.lua', '', [[
local a, b = l.receive(5)
say(a, b, when())
]]), "1 nil closed soon\n", "one loop: receive(5) with nothing else to do says 'closed' at once")

t.is(run('one-nan.lua', '', [[
say(pcall(l.receive, 0/0))
say(pcall(function() l.receive(0/0) end))
]]):gsub('%S*one%-nan.lua:%d+:', 'at:'), "1 false at: bad argument #1 to 'receive' (timeout is not a number)\n1 false bad argument #1 to 'receive' (timeout is not a number)\n", "receive(nan) is a bad argument, raised at the caller's line")

t.is(run('one-two.lua', '', [[
u.spawn(function() say('untimed', l.receive()) end)
say('timed', l.receive(5))
]]), "1 timed nil closed\n1 untimed nil closed\n",
	"one loop, a timed and an untimed receive: both 'closed'")

t.is(run('one-busy.lua', '', [[
local done
u.spawn(function() u.sleeper():sleep(0.3); done = true end)
local a, b = l.receive(5)
say(a, b, done and 'after the sleep' or 'during the sleep', when())
]]), "1 nil closed after the sleep soon\n", "a timed receive hears 'closed' once its loop's other work is done")

t.is(run('one-timeout.lua', '', [[
u.spawn(function() u.sleeper():sleep(1) end)
local a, b = l.receive(0.1)
say(a, b, u.now() - t0 >= 0.09 and 'after its time' or 'early')
]]), "1 nil timeout after its time\n", "a timed receive in a loop with other work times out")

-- Loop 1 waits in a timed receive, loop 2 in an untimed one. Loop 1 hears 'closed' at
-- once; loop 2's receive stays open, for loop 1 may send once its receive returned:
-- it does, after a while, then finishes; loop 2's next receive says 'closed'.
t.is(run('two.lua', '--loops 2', [[
if l.id == 1 then
	local a, b = l.receive(5)
	say(a, b, when())
	u.sleeper():sleep(0.2)
	l.send(2, 'after the timed receive')
else
	local from, what = l.receive()
	say(from, what)
	say(l.receive())
end
]]), "1 nil closed soon\n2 1 after the timed receive\n2 nil closed\n",
	"a timed and an untimed receive in two loops: the timed one hears 'closed' at once, the untimed one gets what the other sends next")

t.is(run('two-end.lua', '--loops 2', [[
if l.id == 1 then
	say(l.receive(5))
	u.sleeper():sleep(0.2)
else
	say(l.receive())
end
]]), "1 nil closed\n2 nil closed\n",
	"... and 'closed' once the timed one's loop finishes")

-- Two loops in timed receives: each may send to the other once its receive returns, so
-- both wait for their timeouts. Each then stays busy a while, so that the other's
-- timeout comes first too.
t.is(run('two-timed.lua', '--loops 2', [[
local a, b = l.receive(0.3)
say(a, b, u.now() - t0 >= 0.29 and 'after its time' or 'early')
u.sleeper():sleep(1)
]]), "1 nil timeout after its time\n2 nil timeout after its time\n", "timed receives in two loops both time out")

-- Three loops: two in untimed receives, one in a timed one: only the timed one closes.
t.is(run('three.lua', '--loops 3', [[
if l.id == 1 then
	say(l.receive(5))
	u.sleeper():sleep(0.1)
	l.broadcast('bye')
else
	local from, what = l.receive()
	say(from, what)
end
]]), "1 nil closed\n2 1 bye\n3 1 bye\n", "two untimed receives and a timed one in three loops: the timed one closes")

-- Many times over: loop 1's timed receives, with loops 2 to 4 waiting untimed, each
-- return 'closed' at once; then loop 1 lets the others go.
t.is(run('many.lua', '--loops 4', [[
if l.id == 1 then
	local closed = 0
	for _ = 1, 200 do
		local a, b = l.receive(5)
		if b == 'closed' then closed = closed + 1 end
		l.send(1, 'x')       -- one message for itself: the next receive takes it at once
		local _, x = l.receive(5)
		if x ~= 'x' then closed = -1000 end
	end
	say(closed, when())
	l.broadcast('bye')
else
	say(select(2, l.receive()))
end
]]), "1 200 soon\n2 bye\n3 bye\n4 bye\n",
	"loop 1's 200 timed receives, the others waiting untimed: 'closed' at once each time")

-- Timeouts racing messages: 50 coroutines of loop 1 receive with short timeouts while
-- loop 2 sends; a timeout due in the same loop iteration as a message must not fire for
-- a receiver that the message served. Every message arrives once; when loop 2 is done,
-- the timed receives hear 'closed'.
t.is(run('race.lua', '--loops 2 --mailbox 100', [[
local N = 20000
if l.id == 2 then
	for i = 1, N do
		while not l.send(1, i) do u.yield() end
	end
	return
end
local got, seen, timeouts, ended = 0, {}, 0, 0
for c = 1, 50 do
	u.spawn(function()
		while true do
			local from, v = l.receive(0.0001 * (c % 7 + 1))
			if from then
				if seen[v] then got = -N end
				seen[v] = true
				got = got + 1
			elseif v == 'timeout' then
				timeouts = timeouts + 1
			else
				ended = ended + 1
				if ended == 50 then say(got == N and 'all once' or got, v) end
				return
			end
		end
	end)
end
]]), "1 all once closed\n", "50 timed receivers in a race with 20000 messages: each arrives once, then 'closed'")

t.done()
