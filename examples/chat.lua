-- chat.lua: a chat server: each line a client sends goes to every other client.
--   lem examples/chat.lua [port]        (default 9001, on 127.0.0.1)
--   then connect two or more terminals:  nc 127.0.0.1 9001
-- A client's lines reach the others through one outbox per client, drained by a writer
-- coroutine of its own: a slow client delays only itself, and one whose outbox grows
-- past a bound is dropped instead of making the server hold ever more memory.
local io = require 'lem.io'
local utils = require 'lem.utils'

local port = tonumber(arg[1]) or 9001
local MAX_QUEUED = 1000            -- lines waiting for a slow client before it is dropped

local outboxes = {}                -- client stream -> its outbox: { lines..., wake = sleeper }

local function broadcast(from, line)
	for client, box in pairs(outboxes) do
		if client ~= from then
			if #box >= MAX_QUEUED then
				client:close()     -- its reader sees nil, 'closed' and cleans up
			else
				box[#box + 1] = line
				box.wake:wakeup()  -- nil, 'not sleeping' when it is busy writing: fine
			end
		end
	end
end

-- Writes a client's outbox in order, one write at a time.
local function writer(client, box)
	while outboxes[client] == box do
		if #box == 0 then
			box.wake:sleep()
		elseif not client:write(table.remove(box, 1)) then
			break
		end
	end
end

local server = assert(io.tcp.listen('127.0.0.1', port))
print(('chat: listening on 127.0.0.1:%d'):format(server:port()))

server:autospawn(function(client)
	local addr, cport = client:peer()
	local name = ('%s:%d'):format(addr, cport)
	local box = { wake = utils.sleeper() }
	outboxes[client] = box
	utils.spawn(writer, client, box)
	broadcast(client, name .. ' joined\n')
	while true do
		local line = client:read()
		if not line then break end
		broadcast(client, name .. ': ' .. line .. '\n')
	end
	outboxes[client] = nil
	box.wake:wakeup()                  -- let its writer end
	client:close()
	broadcast(nil, name .. ' left\n')
end)
