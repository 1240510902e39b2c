-- lem.http under lem --loops 2: a listener per loop on one port, the kernel spreading the
-- connections over them (SO_REUSEPORT).
local t = require 'tap'
local http = require 'lem.http'
local utils = require 'lem.utils'

local port = t.free_port()
local dir = t.tmpdir()
local script = t.file(dir, 'server.lua', [[
local http = require 'lem.http'
local loops = require 'lem.loops'
local n = 0
local server
server = assert(http.listen('127.0.0.1', ]] .. port .. [[, function(req, res)
	n = n + 1
	res:send(200, tostring(loops.id))
	if req.path == '/stop' then require('lem.utils').exit(0) end
end))
print('listening ' .. loops.id)
io.stdout:flush()
]])
local _, output, wait = t.background(dir, '--loops 2 ' .. script)
wait('listening', 2)
t.is(select(2, output():gsub('listening', '')), 2, 'both loops listen on one port')

local seen = {}
for _ = 1, 40 do
	local r = http.request{ url = 'http://127.0.0.1:' .. port .. '/', headers = { connection = 'close' }, timeout = 5 }
	if r then seen[r:body()] = true end
end
t.ok(seen['1'] and seen['2'], 'new connections are served by both loops')
http.request{ url = 'http://127.0.0.1:' .. port .. '/stop', timeout = 2 }
t.done()
