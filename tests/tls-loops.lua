-- lem.io's TLS under lem --loops 2: each loop makes its own context and listener on one
-- port, and both serve handshakes and keep-alive connections at once.
local t = require 'tap'
local io = require 'lem.io'
local utils = require 'lem.utils'
local certs = require 'certs'

local dir, c = certs.for_test(t)
if not dir then return t.done() end
local port = t.free_port()
local script = t.file(dir, 'server.lua', ([[
local tls = require('lem.io').tls
local loops = require 'lem.loops'
local ctx = assert(tls.context{ cert = %q, key = %q })
local l = assert(tls.listen('127.0.0.1', %d, ctx))
print('listening ' .. loops.id)
io.stdout:flush()
l:autospawn(function(s)
	while true do
		local line = s:read('*l', 10)
		if not line then break end
		if line == 'stop' then require('lem.utils').exit(0) end
		s:write(loops.id, ' ', line, '\n')
	end
	s:close()
end)
]]):format(c.server, c.key, port))
local _, output, wait = t.background(dir, '--loops 2 ' .. script)
wait('listening', 2)
t.is(select(2, output():gsub('listening', '')), 2, 'both loops listen on one port')

local cctx = assert(io.tls.context{ ca = c.ca })
local seen, answered = {}, 0
for i = 1, 40 do
	local s = io.tls.connect('localhost', port, { context = cctx, timeout = 20 })
	if s then
		s:write('hello ', i, '\n')
		local line = s:read('*l', 10)
		local id = line and line:match('^(%d) hello ' .. i .. '$')
		if id then seen[id] = true answered = answered + 1 end
		s:close()
	end
end
t.is(answered, 40, 'every new connection is answered')
t.ok(seen['1'] and seen['2'], 'by both loops')

-- eight clients at once, each sending 50 lines on one connection
local done, right = 0, 0
for k = 1, 8 do
	utils.spawn(function()
		local s = io.tls.connect('localhost', port, { context = cctx, timeout = 20 })
		local good = s ~= nil
		for i = 1, 50 do
			if not good then break end
			s:write(k, '.', i, '\n')
			local line = s:read('*l', 10)
			good = line ~= nil and line:match(' (.*)$') == k .. '.' .. i
		end
		if good then right = right + 1 end
		if s then s:close() end
		done = done + 1
	end)
end
local sl = utils.sleeper()
local t0 = utils.now()
while done < 8 and utils.now() - t0 < 60 do sl:sleep(0.02) end
t.is(right, 8, 'eight keep-alive clients at once get every answer in order')

local s = io.tls.connect('localhost', port, { context = cctx, timeout = 20 })
if s then s:write('stop\n') s:close() end
t.done()
