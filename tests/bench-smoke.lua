-- The benchmarks (bench/, docs/benchmarks.md), each run once with tiny counts: every
-- program must run and print a sane figure, so that a broken benchmark shows in make test.
-- No figure is judged here; make bench does that.
-- A tiny run must not need luck to give a sane figure. CPU figures count the run's own
-- work, tens of microseconds at least against os.clock()'s step of one. Wall figures of
-- lem's programs come from utils.now(), which stands still between two polls of the loop,
-- and a tiny run can fit between two: they read it through common.now(), after a poll,
-- which makes every wall time positive. So every figure printed, and every wall time of a
-- phase, is checked, not only the main figure.
local t = require 'tap'

local root = (arg[0]:match('^(.*)/tests/[^/]*$') or '.') .. '/'
local lem = t.lem
local lemdir = (os.getenv('LEM') or ''):match('^(.*)/[^/]*$')
local vm = lem:find('luajit', 1, true) and 'luajit' or 'lua5.1'

local function sh(cmd)
	return t.run('cd ' .. root .. ' && timeout 60 ' .. cmd)
end

local function available(cmd)
	return (sh(cmd)) == 0
end

-- name -> tiny arguments, the same for a workload's lem program and its references.
local tiny = {
	switch = 'k=4 m=50',
	spawn = 'n=300 batch=10',
	timers = 'n=50 max=0.002',
	sleeps = 'k=4 r=3 delay=0.0005',
	pingpong = 'n=200',
	parked = 'n=50',
	['mailbox-stream'] = 'n=5000 size=16',
	['mailbox-pingpong'] = 'n=200',
}
-- name -> the unit of its main figure
local unit = {
	switch = 'switches/s', spawn = 'spawns/s', timers = 'fires/s', sleeps = 'sleeps/s',
	pingpong = 'roundtrips/s', parked = 'rss', ['mailbox-stream'] = 'messages/s',
	['mailbox-pingpong'] = 'us/roundtrip',
}

local function sane(v)
	return v and v == v and v > 0 and v < math.huge
end

-- Runs cmd and checks that it printed the figure `u`, that every figure it printed is
-- sane, and that every phase it timed on the wall clock took some time.
local function check(name, cmd, u)
	local status, out, err = sh(cmd)
	local v = tonumber(out:match('\nresult ' .. u:gsub('%p', '%%%0') .. ' (%S+)'))
	local ok = status == 0 and sane(v)
	for figure in out:gmatch('\nresult %S+ (%S+)') do
		ok = ok and sane(tonumber(figure))
	end
	for wall in out:gmatch('\nphase [^\n]- wall (%S+) s') do
		ok = ok and sane(tonumber(wall))
	end
	if not t.ok(ok, name, ('status %s\n%s%s'):format(tostring(status), out, err)) then
		return
	end
	return v
end

local order = { 'switch', 'spawn', 'timers', 'sleeps', 'pingpong', 'parked',
	'mailbox-stream', 'mailbox-pingpong' }
local loops = available(lem .. ' --loops 2 -e "require\'lem.loops\'"')

-- lem's programs
for _, name in ipairs(order) do
	local script = 'bench/lem/' .. name .. '.lua ' .. tiny[name]
	if name:match('^mailbox') then
		if loops then
			check(name .. ' (lem)', lem .. ' --loops 2 ' .. script, unit[name])
		else
			t.skip(name .. ' (lem)', 'needs --loops')
		end
	else
		check(name .. ' (lem)', lem .. ' ' .. script, unit[name])
	end
end
check('sleeps (lem) CPU per sleep', lem .. ' bench/lem/sleeps.lua ' .. tiny.sleeps, 'cpu-us/sleep')
check('timers (lem) RSS with timers pending', lem .. ' bench/lem/timers.lua ' .. tiny.timers, 'rss')
check('timers (lem) with nothing pending', lem .. ' bench/lem/timers.lua n=0', 'rss')
if loops then
	for _, l in ipairs({ 1, 2 }) do
		check(('scaling switch, --loops %d'):format(l),
			lem .. (' --loops %d bench/lem/switch.lua k=10 m=2000'):format(l), 'aggregate-switches/s')
		check(('scaling timers, --loops %d'):format(l),
			lem .. (' --loops %d bench/lem/timers.lua n=500 max=0.002'):format(l), 'aggregate-fires/s')
	end
else
	t.skip('scaling', 'needs --loops')
end

-- The Lua references: plain Lua under the same VM, the peers under lua5.1.
local refs = {
	{ 'plain', vm, { 'switch', 'spawn', 'pingpong', 'parked' } },
	{ 'luv', 'lua5.1', { 'switch', 'spawn', 'timers', 'sleeps', 'pingpong' } },
	{ 'cqueues', 'lua5.1', { 'switch', 'spawn', 'timers', 'sleeps', 'pingpong', 'parked' } },
}
for _, r in ipairs(refs) do
	local dir, interp, names = r[1], r[2], r[3]
	local need = dir == 'plain' and '' or ('require\'' .. dir .. '\'')
	if not available(interp .. ' -e "' .. need .. '"') then
		t.skip(dir .. ' references', interp .. (dir == 'plain' and '' or ' with ' .. dir) .. ' not installed')
	else
		for _, name in ipairs(names) do
			-- luv runs the shared scripts of bench/plain for these, with sched=luv
			local shared = dir == 'luv' and (name == 'switch' or name == 'spawn' or name == 'pingpong')
			local script = shared and ('bench/plain/%s.lua sched=luv'):format(name)
				or ('bench/%s/%s.lua'):format(dir, name)
			check(('%s (%s)'):format(name, dir),
				('%s %s %s'):format(interp, script, tiny[name]), unit[name])
		end
	end
end

-- The C references, where make bench-build has built them beside this lem.
local cbin = lemdir and lemdir .. '/bench/'
local crefs = {
	{ 'vm', 'switch' }, { 'vm', 'spawn' }, { 'vm', 'parked' }, { 'vm', 'pingpong' },
	{ 'ev', 'timers' }, { 'ev', 'sleeps' },
	{ 'mailbox', 'stream', 'mailbox-stream' }, { 'mailbox', 'pingpong', 'mailbox-pingpong' },
}
if not cbin or not io.open(cbin .. 'vm') then
	t.skip('C references', 'not built (make bench-build)')
else
	for _, c in ipairs(crefs) do
		local name = c[3] or c[2]
		check(('%s (%s)'):format(name, c[1]),
			("'%s%s' %s %s"):format(cbin, c[1], c[2], tiny[name]), unit[name])
	end
end

-- The driver itself parses and knows every workload.
local status, out = sh('lua5.1 bench/run --no-build --list')
t.ok(status == 0 and out:match('switch') and out:match('scaling'), 'bench/run --list')

-- The scripts of the server benchmarks: --help prints their header comment, all of it
-- (its last line is the comment's last, just before the code).
for _, script in ipairs({ 'bench/http/run', 'bench/http/instructions', 'bench/tls/run', 'bench/db/run' }) do
	local f = assert(io.open(root .. script))
	local last
	for line in f:lines() do
		if not line:match('^#') then break end
		last = line:gsub('^# ?', '')
	end
	f:close()
	local code, text = sh('bash ' .. script .. ' --help')
	t.ok(code == 0 and text:match('\n([^\n]*)\n$') == last,
		script .. ' --help: the whole header', text)
end

-- --against: this lem against itself has a figure and a ratio; against a lem that cannot
-- run the workload, n/a. Needs the build bench/run measures, which a sanitizer run lacks.
if not io.open(root .. 'build/' .. vm .. '/lem') then
	t.skip('bench/run --against', 'build/' .. vm .. '/lem not built')
else
	local against = ('lua5.1 bench/run --no-build --lua %s --runs 1 --against %%s switch '
		.. 'switch.k=2 switch.m=50'):format(vm)
	local _, err
	status, out, err = sh(against:format(lem))
	t.ok(status == 0 and out:match('| this/other')
		and out:match('\n| switch | switches/s | [^|]* | [^|]*%d[^|]* | %d+%.%d+x |'),
		'bench/run --against itself', out .. err)
	local broken = t.file(t.tmpdir(), 'lem', '#!/bin/sh\nexit 1\n', '755')
	status, out, err = sh(against:format(broken))
	t.ok(status == 0 and out:match('\n| switch | switches/s | [^|]*%d[^|]* | n/a | n/a |'),
		'bench/run --against a lem that fails', out .. err)
end

t.done()
