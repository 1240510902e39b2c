-- hello.lua: three coroutines take turns on one event loop.
--   lem examples/hello.lua
local utils = require 'lem.utils'

local start = utils.now()
for i = 1, 3 do
	utils.spawn(function()
		for step = 1, 3 do
			print(('coroutine %d, step %d, at %.2f s'):format(i, step, utils.now() - start))
			utils.sleeper():sleep(0.1 * i)   -- suspends this coroutine only
		end
	end)
end
print('main chunk done; the spawned coroutines run on')
