-- sched.lua: how a luv user runs coroutines: luv has no scheduler of its own, so a ready
-- queue is drained from an idle handle (in the manner of setImmediate), coroutines are
-- resumed from callbacks, and a sleeper is a coroutine put aside until someone queues it.
local common = ...   -- bench/common.lua, whose scheduler() loads this
local uv = require 'luv'
local create, resume, yield, running = coroutine.create, coroutine.resume,
	coroutine.yield, coroutine.running

local sched = {}
local queue, args, head, tail = {}, {}, 1, 0
local idle = uv.new_idle()
local idling = false

local function run(co, ...)
	local ok, err = resume(co, ...)
	if not ok then error(err, 0) end
end

-- Resumes the coroutines queued before this iteration; later ones wait for the next.
local function drain()
	local last = tail
	while head <= last do
		local co, a = queue[head], args[head]
		queue[head], args[head] = nil, nil
		head = head + 1
		if a then run(co, unpack(a)) else run(co) end
	end
	if head > tail then
		idle:stop()
		idling = false
	end
end

local function push(co, a)
	tail = tail + 1
	queue[tail], args[tail] = co, a
	if not idling then
		idle:start(drain)
		idling = true
	end
end

function sched.spawn(f, ...)
	push(create(f), select('#', ...) > 0 and { ... } or nil)
end

function sched.yield()
	push(running())
	return yield()
end

sched.sleeper = common.sleepers(push)

-- A resumable timer for one coroutine: sleep(ms) suspends it until the timer fires.
function sched.timer()
	local t, co = uv.new_timer(), nil
	local function fire() run(co) end
	return {
		sleep = function(ms)
			co = running()
			t:start(ms, 0, fire)
			return yield()
		end,
		close = function() t:close() end,
	}
end

sched.run = function() uv.run() end
sched.now = function() return uv.hrtime() * 1e-9 end

return sched
