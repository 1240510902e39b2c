-- echo.lua: a line echo server: every line a client sends comes back to it.
--   lem examples/echo.lua [port]        (default 9000, on 127.0.0.1)
--   then, in another terminal:  nc 127.0.0.1 9000
-- Each client runs in a coroutine of its own (autospawn); a read suspends only that
-- coroutine, so one slow client never holds up the others.
local io = require 'lem.io'

local port = tonumber(arg[1]) or 9000
local server = assert(io.tcp.listen('127.0.0.1', port))
print(('echo: listening on 127.0.0.1:%d'):format(server:port()))

server:autospawn(function(client)
	while true do
		local line = client:read()           -- nil, 'closed' once the client goes
		if not line then break end
		if not client:write(line, '\n') then break end
	end
	client:close()
end)
