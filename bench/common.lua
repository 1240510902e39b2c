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
-- plain-Lua and luv columns run the very same workload code. Returns the scheduler, its
-- name for titles, and the name for the sched= default.
function common.scheduler(dir)
	local which = 'plain'
	for _, a in ipairs(arg or {}) do which = a:match('^sched=(%w+)$') or which end
	local sched = dofile(dir .. '../' .. which .. '/sched.lua')
	return sched, which == 'plain' and 'plain Lua' or which, which
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

-- lem only: every loop did `work` between its t0 and t1 (utils.now()); loop 1 prints the
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
