-- bench/tls/idle.lua: opens n connections to a server, sends one request on each and reads
-- its answer, prints "ready", then keeps them open until it is killed.
--   lem bench/tls/idle.lua port n tls|plain
local io = require 'lem.io'
local utils = require 'lem.utils'
local port, n, tls = tonumber(arg[1]), tonumber(arg[2]), arg[3] == 'tls'
local ctx = tls and assert(io.tls.context{ verify = false })
local held = {}
for i = 1, n do
	local s, err
	if tls then s, err = io.tls.connect('127.0.0.1', port, { context = ctx, timeout = 10 })
	else s, err = io.tcp.connect('127.0.0.1', port, 10) end
	if not s then print('connect ' .. i .. ': ' .. err) utils.exit(1) end
	s:write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
	s:read('*u', '\r\n\r\n', 10)
	s:read(14, 10)
	held[i] = s
end
print('ready')
_G.io.stdout:flush()
utils.sleeper():sleep(3600)
