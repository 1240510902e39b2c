-- Finalizers that the collector runs while the loop itself allocates (a coroutine made on
-- the loop's main state, a value a callback builds): lem.io's objects then give their
-- anchors back from inside a finalizer's frame on that state, which must not disturb the
-- loop's own slots.
local t = require 'tap'
local utils = require 'lem.utils'
local io = require 'lem.io'

local server = assert(io.tcp.listen('127.0.0.1', 0))
local port = server:port()
utils.spawn(server.autospawn, server, function(c) c:read('*a') c:close() end)

collectgarbage('setpause', 50)      -- collect often: finalizers run at many places
local made = 0
for _ = 1, 16 do
	for _ = 1, 25 do
		local c = io.tcp.connect('127.0.0.1', port)
		if c then
			c:read('*l', 0.001)         -- a wait: the stream takes its anchor slots
			made = made + 1
		end                             -- and is dropped unclosed
	end
	for i = 1, 200 do                   -- coroutines made on the loop's main state
		utils.spawn(function(a) return a end, i)
	end
	utils.yield()
end
collectgarbage('collect')
t.ok(made > 350, 'made and dropped ' .. made .. ' streams while the loop allocated')
local s = utils.sleeper()
utils.spawn(function() s:wakeup('alive') end)
t.is(s:sleep(1), 'alive', 'the loop still schedules after finalizers ran on its main state')
server:close()
t.done()
