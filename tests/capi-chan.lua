-- The C API, through the second example module examples/c/chan.c (built by make test).
local t = require 'tap'
local utils = require 'lem.utils'

local chan = t.require('chan')
if not chan then return t.done() end
local function pack(...) return { n = select('#', ...), ... } end
local function sleep(s) utils.sleeper():sleep(s) end

-- values sent before anyone receives are queued, in order, whatever they are
local c = chan.new()
local tbl = {}
c:send(1); c:send(nil); c:send(false); c:send(tbl)
local got = {}
for i = 1, 4 do got[i] = pack(c:recv()) end
t.same({ got[1][1], got[2][1], got[3][1], got[4][1] == tbl }, { 1, nil, false, true },
	'queued values come out in order: 1, nil, false, the same table')
t.same({ got[1].n, got[2].n }, { 1, 1 }, 'recv returns one value')

-- a receiver waits for a send: lem_suspend, then lem_wake from the sender's coroutine
local r
utils.spawn(function() r = pack(c:recv()) end)
utils.yield()
t.is(r, nil, 'an empty channel suspends its receiver')
t.is(c:send('v'), nil, 'send returns nothing, at once')
utils.yield()
t.same(r, { n = 1, 'v' }, 'the waiting receiver gets the value sent')

-- receivers are served in the order they came
local order = {}
for i = 1, 3 do
	utils.spawn(function() local v = c:recv(); order[#order + 1] = i .. v end)
end
utils.yield()
c:send('a'); c:send('b'); c:send('c')
utils.yield()
t.same(order, { '1a', '2b', '3c' }, 'FIFO among receivers')

-- timeouts: lem_deadline, and a wake from the timer's callback
local t0 = t.now()
local a, e = c:recv(0.03)
local took = utils.now() - t0
t.same({ a, e }, { nil, 'timeout' }, "recv(timeout) on an empty channel: nil, 'timeout'")
t.ok(took >= 0.025 and took < 1, 'after about the timeout (' .. took .. ')')
t.same({ c:recv(0) }, { nil, 'timeout' }, 'recv(0) does not wait')
c:send('later')
t.is(c:recv(0), 'later', 'a send after a timeout is queued, not lost to the timed-out receiver')

-- a receiver that timed out between two waiting ones leaves a hole that send skips
local slots = {}
utils.spawn(function() slots.a = c:recv() end)
utils.spawn(function() slots.b = pack(c:recv(0.02)) end)
utils.spawn(function() slots.c = c:recv() end)
sleep(0.04)
t.same(slots.b, { n = 2, nil, 'timeout' }, 'the middle receiver timed out')
c:send('x'); c:send('y'); c:send('z')
utils.yield()
t.same({ slots.a, slots.c, c:recv(0) }, { 'x', 'y', 'z' },
	'the others get the values in order, then the channel queues again')

-- many timeouts behind a receiver that waits for good do not pile up
local stuck
utils.spawn(function() stuck = c:recv() end)
utils.yield()
for _ = 1, 5 do c:recv(0.001) end
c:send('first')
utils.yield()
t.is(stuck, 'first', 'the first receiver still gets the first value')
t.same({ c:recv(0) }, { nil, 'timeout' }, 'and nothing is left')

-- a timed receiver woken by a send: its timer is stopped
local early
utils.spawn(function() early = pack(c:recv(0.03)) end)
utils.yield()
c:send('early')
sleep(0.05)
t.same(early, { n = 1, 'early' }, 'a timed receiver woken before its timeout')
c:send('after')
t.is(c:recv(0), 'after', 'its timer did not fire later')

-- across the yield-safe pcall
utils.spawn(function() c:send('p') end)
t.same({ pcall(c.recv, c) }, { true, 'p' }, 'recv suspends inside pcall')

-- where the coroutine cannot suspend: lem_suspend raises, the channel is unharmed
local w = coroutine.wrap(function() return c:recv() end)
t.error(w, 'cannot suspend here', 'a receiver inside coroutine.wrap gets "cannot suspend here"')
local w2 = coroutine.wrap(function() return c:recv(0.01) end)
t.error(w2, 'cannot suspend here', 'a timed one too')
collectgarbage(); collectgarbage()
sleep(0.02)
c:send('still'); c:send('works')
t.same({ c:recv(), c:recv(0) }, { 'still', 'works' }, 'the channel works after them')
local sorted, serr = pcall(table.sort, { 3, 2, 1 }, function(x, y) c:recv() return x < y end)
t.ok(not sorted and serr:find('^attempt to yield across [metamethod/]*C%-call boundary$'),
	'a receiver inside table.sort raises the VM\'s error (' .. (jit and 'LuaJIT' or 'PUC') .. ')', serr)
c:send(1)
t.is(c:recv(0), 1, 'the channel works after it')

-- a coroutine resumed by hand while it waits: the send goes to the next receiver
local hand, other
utils.spawn(function() hand = coroutine.running(); c:recv() end)
utils.spawn(function() other = c:recv() end)
utils.yield()
coroutine.resume(hand)
c:send('next')
utils.yield()
t.is(other, 'next', 'a stale receiver is skipped')

-- a channel nobody can reach is garbage with the coroutine waiting on it
local weak = setmetatable({}, { __mode = 'k' })
utils.spawn(function() local lost = chan.new(); weak[lost] = true; lost:recv() end)
utils.yield()
t.ok(next(weak), 'a receiver waits on a channel only it refers to')
utils.sleeper():sleep(0.001)   -- the runqueue forgets the coroutines it ran by the next poll
for _ = 1, 3 do collectgarbage() end
t.is(next(weak), nil, 'the channel and its waiting receiver are collected, no crash')

-- a timed receiver is anchored: its timer still comes
local timed
utils.spawn(function() timed = pack(chan.new():recv(0.02)) end)
utils.yield()
collectgarbage(); collectgarbage()
sleep(0.04)
t.same(timed, { n = 2, nil, 'timeout' }, 'a timed receiver on an unreachable channel times out')

-- ping-pong between two coroutines
local ping, pong = chan.new(), chan.new()
utils.spawn(function()
	for _ = 1, 1000 do pong:send(ping:recv() + 1) end
end)
local n = 0
for _ = 1, 1000 do ping:send(n); n = pong:recv() end
t.is(n, 1000, '1000 round trips')

t.error(function() c.send(c) end, "bad argument #2 to 'send'", 'send needs a value')
t.error(function() c:recv('x') end, "bad argument #1 to 'recv'", 'a bad timeout is an error')
t.error(function() c:recv(0 / 0) end, 'not a number', 'NaN is refused')
t.error(function() c.recv({}) end, 'chan expected', 'recv needs a channel')
t.done()
