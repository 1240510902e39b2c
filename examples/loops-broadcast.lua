-- loops-broadcast.lua: a configuration pushed to every loop. Each loop does its own
-- work at the pace its configuration sets, and applies every new configuration that
-- loop 1 broadcasts; the last one says stop. Then each loop tells loop 1 which versions
-- it applied, and loop 1 reads the reports until receive says 'closed'.
--   lem --loops 4 examples/loops-broadcast.lua
local loops = require 'lem.loops'
local utils = require 'lem.utils'

if loops.id == 1 then
	local configs = {
		{ version = 1, every = 0.01, greeting = 'hello' },
		{ version = 2, every = 0.02, greeting = 'hej' },
		{ version = 3, stop = true },
	}
	local pause = utils.sleeper()
	for i, config in ipairs(configs) do
		if i > 1 then pause:sleep(0.05) end
		print(('version %d reached %d loops'):format(config.version, loops.broadcast('config', config)))
	end
	local reports = {}
	while true do
		local from, versions, greeting = loops.receive()
		if not from then break end   -- nil, 'closed': every other loop has finished
		reports[from] = ('loop %d applied versions %s, last greeting %s'):format(
			from, table.concat(versions, ' '), greeting)
	end
	for id = 2, loops.count do print(reports[id]) end
	return
end

-- The other loops. Their own work runs in a coroutine, a step at the configured pace,
-- until the configuration says stop.
local config, applied = { every = 0.01 }, {}
utils.spawn(function()
	local pace = utils.sleeper()
	while not config.stop do
		-- ... one step of this loop's work ...
		pace:sleep(config.every)
	end
end)

-- The main chunk listens: a table received is a copy, free to keep.
local greeting
while not config.stop do
	local from, what, new = loops.receive()
	if not from then break end   -- nil, 'closed'
	if what == 'config' then
		config = new
		applied[#applied + 1] = new.version
		greeting = new.greeting or greeting
	end
end
assert(loops.send(1, applied, greeting))
