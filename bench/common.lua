-- common.lua: what every Lua benchmark program shares: its arguments, RSS, and the lines
-- it prints. Every program prints its phases separately, then its figures:
--   # switch (lem): k=100 m=100000
--   phase run wall 0.812 s cpu 0.810 s
--   result switches/s 12315270
-- bench/run reads the "result" lines; the rest is for people.
local common = {}

-- Arguments are name=value pairs, defaults in `defaults`; unknown names are an error.
function common.args(title, defaults, argv)
	local o = {}
	for k, v in pairs(defaults) do o[k] = v end
	for _, a in ipairs(argv or arg or {}) do
		local k, v = a:match('^([%w_]+)=(.*)$')
		if not k or o[k] == nil then
			error(('%s: bad argument %q (expected one of name=value)'):format(title, a), 0)
		end
		o[k] = tonumber(v) or v
	end
	local names = {}
	for k in pairs(defaults) do names[#names + 1] = k end
	table.sort(names)
	for i, k in ipairs(names) do names[i] = k .. '=' .. tostring(o[k]) end
	if not common.tag then   -- with lem --loops, only loop 1 prints the title
		io.write('# ', title, ': ', table.concat(names, ' '), '\n')
	end
	return o
end

-- The scheduler a shared workload of bench/plain runs on, from its sched= argument:
-- plain (bench/plain/sched.lua, the default) or luv (bench/luv/sched.lua), so that the
-- plain-Lua and luv columns run the very same workload code; `which` forces one. Returns
-- the scheduler, its name for titles, and the name for the sched= default.
function common.scheduler(dir, which)
	if not which then
		which = 'plain'
		for _, a in ipairs(arg or {}) do which = a:match('^sched=(%w+)$') or which end
	end
	local sched = assert(loadfile(dir .. '../' .. which .. '/sched.lua'))(common)
	return sched, which == 'plain' and 'plain Lua' or which, which
end

-- The sleepers of those schedulers: sleep() sets the running coroutine aside, yielding
-- `mark` to the scheduler; wakeup() gives it to push(co). Returns the constructor.
function common.sleepers(push, mark)
	local running, yield = coroutine.running, coroutine.yield
	local Sleeper = {}
	Sleeper.__index = Sleeper
	function Sleeper:sleep()
		self.co = running()
		return yield(mark)
	end
	function Sleeper:wakeup()
		local co = self.co
		if not co then return nil, 'not sleeping' end
		self.co = nil
		push(co)
		return true
	end
	return function() return setmetatable({}, Sleeper) end
end

-- Runs worker(...) in k coroutines of the scheduler s (s.spawn(f, ...), s.run() until
-- they are done, s.now() if it has a clock) and checks that every one returned; s.done(),
-- if there, is called when the last one has. Returns t0, c0, t1, c1: s.now() (or nil) and
-- os.clock() before and after.
function common.workers(s, k, worker, ...)
	local done = 0
	local function counted(...)
		worker(...)
		done = done + 1
		if done == k and s.done then s.done() end
	end
	local t0, c0 = s.now and s.now(), os.clock()
	for _ = 1, k do
		s.spawn(counted, ...)
	end
	s.run()
	local c1 = os.clock()   -- before now(): lem's polls once
	local t1 = s.now and s.now()
	assert(done == k, 'not every worker returned')
	return t0, c0, t1, c1
end

-- lem only: utils.now() read after the loop has polled. The loop reads its clock once per
-- poll, and coroutines that never wait for an event run up to a whole batch between two
-- polls: the start-up, or a whole tiny run, can fit in one, and two plain reads of
-- utils.now() around it are equal (a yield does not help: it is resumed in the same
-- batch). A sleep ends only after a poll that finds its timer due, so the value returned
-- is taken after everything before the call, and is at least a microsecond past any
-- earlier one. Costs one poll, and at most a few tens of microseconds of waiting.
function common.now(utils)
	utils.sleeper():sleep(1e-6)
	return utils.now()
end

-- lem's scheduler for workers(): run() sleeps until done() wakes it; now() is
-- common.now, so the run is timed from a poll after the start-up to one after the end.
function common.lem(utils)
	local finished = utils.sleeper()
	return { spawn = utils.spawn, now = function() return common.now(utils) end,
		run = function() finished:sleep() end, done = function() finished:wakeup() end }
end

-- cqueues' scheduler for workers(): a controller that runs until its coroutines are done.
function common.cqueues(cqueues)
	local cq = cqueues.new()
	return { spawn = function(f, ...) cq:wrap(f, ...) end, now = cqueues.monotime,
		run = function() assert(cq:loop()) end }
end

-- The figures of the sleeps workload: n sleeps in wall and cpu seconds.
function common.sleeps(n, wall, cpu)
	common.phase('run', wall, cpu)
	common.result('sleeps/s', n / wall)
	common.result('cpu-us/sleep', cpu / n * 1e6)
end

-- Peak resident set size of this process so far, in bytes (Linux).
function common.rss()
	local f = io.open('/proc/self/status')
	if not f then return 0 end
	local s = f:read('*a')
	f:close()
	return (tonumber(s:match('VmHWM:%s*(%d+) kB')) or 0) * 1024
end

-- phase(name, wall seconds or nil, cpu seconds or nil)
function common.phase(name, wall, cpu)
	io.write('phase ', name, common.tag or '')
	if wall then io.write((' wall %.6f s'):format(wall)) end
	if cpu then io.write((' cpu %.6f s'):format(cpu)) end
	io.write('\n')
	io.flush()
end

function common.result(unit, value)
	io.write(('result %s %.6g\n'):format(unit, value))
	io.flush()
end

-- lem only: the loops module when lem runs with --loops, else nil.
function common.loops()
	local ok, loops = pcall(require, 'lem.loops')
	return ok and loops or nil
end

-- Under lem --loops N (N > 1), the phases of loop i are tagged " (loop i)", and only
-- loop 1 prints the title: their output interleaves.
do
	local loops = package.preload['lem.loops'] and common.loops()
	if loops and loops.count > 1 then
		common.tag = (' (loop %d)'):format(loops.id)
		if loops.id == 1 then common.tag = nil end
	end
end

-- lem only: every loop did `work` between its t0 and t1 (common.now()); loop 1 prints the
-- aggregate rate over all loops, from the first start to the last end.
function common.aggregate(loops, unit, work, t0, t1)
	local count = loops and loops.count or 1
	if count > 1 and loops.id ~= 1 then
		assert(loops.send(1, 'report', t0, t1))
		return
	end
	for _ = 2, count do
		local _, what, s, e = loops.receive()
		assert(what == 'report', 'unexpected message')
		t0, t1 = math.min(t0, s), math.max(t1, e)
	end
	common.result('aggregate-' .. unit, count * work / (t1 - t0))
end

return common
