-- sched.lua: the minimal round-robin scheduler a user would write in plain Lua: a FIFO
-- of runnable coroutines, spawn, yield, and sleepers (sleep until woken), driven by
-- coroutine.resume/yield. What the same workloads cost without lem. Loaded by
-- bench/common.lua's scheduler(), which passes itself.
local common = ...
local create, resume, yield, status = coroutine.create, coroutine.resume,
	coroutine.yield, coroutine.status

local sched = {}
local queue, head, tail = {}, 1, 0   -- queue[head..tail]: coroutines to resume
local args = {}                      -- args[i]: arguments of queue[i]'s first resume
local SLEEP = {}                     -- yielded by a sleeping coroutine: not requeued

local function push(co)
	tail = tail + 1
	queue[tail] = co
end

function sched.spawn(f, ...)
	tail = tail + 1
	queue[tail] = create(f)
	if select('#', ...) > 0 then args[tail] = { ... } end
end

-- yield(): run every coroutine queued before this one, then go on.
sched.yield = yield

sched.sleeper = common.sleepers(push, SLEEP)

-- Runs until no coroutine is runnable.
function sched.run()
	while head <= tail do
		local co, a = queue[head], args[head]
		queue[head] = nil
		local ok, what
		if a then
			args[head] = nil
			ok, what = resume(co, unpack(a))
		else
			ok, what = resume(co)
		end
		head = head + 1
		if not ok then error(what, 0) end
		if what ~= SLEEP and status(co) == 'suspended' then
			tail = tail + 1
			queue[tail] = co
		end
	end
end

return sched
