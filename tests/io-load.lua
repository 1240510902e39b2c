-- lem.io under load: 1000 concurrent clients, and 10k connections that leave no descriptor
-- behind.
local t = require 'tap'
local utils = require 'lem.utils'
local io = require 'lem.io'

local nfds = t.nfds

local server = assert(io.tcp.listen('127.0.0.1', 0, 2048))
local port = server:port()
local handled = 0
utils.spawn(function()
	server:autospawn(function(c)
		local line = c:read()
		if line then c:write(line:upper(), '\n') end
		local rest = c:read()      -- nil, 'closed' once the client goes
		handled = handled + 1
		c:close()
	end)
end)
utils.yield()
local base = nfds()

-- 1000 clients at once: all connect first, then all talk, then all close
local N = 1000
local clients, answers, failures = {}, 0, {}
local done = utils.sleeper()
local pending = N
for i = 1, N do
	utils.spawn(function()
		local c, err = io.tcp.connect('127.0.0.1', port, 10)
		if not c then
			failures[#failures + 1] = err
		else
			clients[i] = c
			c:write('client ', i, '\n')
			if c:read('*l', 10) == 'CLIENT ' .. i then answers = answers + 1 end
		end
		pending = pending - 1
		if pending == 0 then done:wakeup() end
	end)
end
done:sleep(30)
t.is(#failures, 0, N .. ' concurrent clients connect', table.concat(failures, ', '))
t.is(answers, N, 'each gets its own answer')
for i = 1, N do if clients[i] then clients[i]:close() end end
for _ = 1, 300 do
	if handled == N then break end
	utils.sleeper():sleep(0.01)
end
t.is(handled, N, 'the server saw every client leave')

-- 10k connections, a few at a time (the kernel's ephemeral ports stay spread)
local M, errors, K = 10000, 0, 50
local left = K
local finished = utils.sleeper()
for k = 1, K do
	utils.spawn(function()
		for _ = 1, M / K do
			local c = io.tcp.connect('127.0.0.1', port, 10)
			if c then
				c:write('x\n')
				if c:read('*l', 10) ~= 'X' then errors = errors + 1 end
				c:close()
			else
				errors = errors + 1
			end
		end
		left = left - 1
		if left == 0 then finished:wakeup() end
	end)
end
finished:sleep(60)
t.is(errors, 0, M .. ' connections, each a round trip')
for _ = 1, 300 do
	if handled == N + M then break end
	utils.sleeper():sleep(0.01)
end
t.is(handled, N + M, 'the server closed each')
collectgarbage() collectgarbage()
t.is(nfds(), base, 'descriptors are back to their baseline')
server:close()
t.done()
