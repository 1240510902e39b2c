-- cluster/chat.lua: examples/chat.lua for several lem processes, on one host or many:
-- every line goes through a Redis channel, so that each client hears the clients of
-- every process (see README.md beside this file).
--   lem examples/cluster/chat.lua [port [redis [address]]]
--     port     where this process listens (default 9001)
--     redis    host:port (default 127.0.0.1:6379), or the path of a Unix socket (./r.sock)
--     address  the address it listens on (default 127.0.0.1; '*': every address)
--   lem --loops 4 examples/cluster/chat.lua ...   each loop is one more member
-- Each process (each loop) holds two Redis connections: one subscribed to the channel,
-- whose messages it hands to its own clients, and one that publishes its clients' lines.
-- A line comes back to the process that sent it like to any other: every client sees
-- the lines in the order Redis gave them.
local io = require 'lem.io'
local utils = require 'lem.utils'
local redis = require 'lem.redis'

local port = tonumber(arg[1]) or 9001
local where = arg[2] or '127.0.0.1:6379'
local address = arg[3] or '127.0.0.1'
local CHANNEL = 'chat'
local MAX_QUEUED = 1000            -- lines waiting for a slow client before it is dropped

local function connect()
	if where:find('/') then return redis.connect(where, 5) end
	local host, p = where:match('^(.*):(%d+)$')
	return redis.connect(host or where, tonumber(p) or 6379, 5)
end

-- Without the broker this process is of no use: fail at once, and let whatever
-- supervises it start it again.
local function check(ok, err, ...)
	if not ok then error('redis ' .. where .. ': ' .. tostring(err), 0) end
	return ok, err, ...
end

local pub = check(connect())
local sub = check(connect())
-- A number no other member has, from the broker's shared state: it tells a message
-- which client sent it, and so which one not to echo it to.
local node = check(pub:call('INCR', 'chat:members'))
check(sub:subscribe(CHANNEL))
check(sub:message(5))              -- the confirmation: from now on nothing is missed

local outboxes = {}                -- client stream -> its outbox: { lines..., wake, id }

-- Queues line for every local client but the one named `from`.
local function deliver(from, line)
	for client, box in pairs(outboxes) do
		if box.id ~= from then
			if #box >= MAX_QUEUED then
				client:close()     -- its reader sees nil, 'closed' and cleans up
			else
				box[#box + 1] = line
				box.wake:wakeup()  -- nil, 'not sleeping' when it is busy writing: fine
			end
		end
	end
end

-- The subscriber: relays the channel to this process's clients.
utils.spawn(function()
	while true do
		local kind, channel, payload = check(sub:message())
		if kind == 'message' then
			local from, text = payload:match('^(%S+) (.*)$')
			deliver(from, text .. '\n')
		end
	end
end)

-- The publisher: a message is the sender's id and the text of the line. The PUBLISH
-- calls of all the clients share one connection, pipelined.
local function publish(from, text)
	check(pub:call('PUBLISH', CHANNEL, from .. ' ' .. text))
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

local server = assert(io.tcp.listen(address, port))
print(('chat: member %d listening on %s:%d'):format(node, address, server:port()))
_G.io.stdout:flush()               -- (for whoever reads it from a file or a pipe)

local clients = 0
server:autospawn(function(client)
	local addr, cport = client:peer()
	local name = ('%s:%d'):format(addr, cport)
	clients = clients + 1
	local box = { wake = utils.sleeper(), id = node .. '/' .. clients }
	outboxes[client] = box
	utils.spawn(writer, client, box)
	publish(box.id, name .. ' joined')
	while true do
		local line = client:read()
		if not line then break end
		publish(box.id, name .. ': ' .. line)
	end
	outboxes[client] = nil
	box.wake:wakeup()                  -- let its writer end
	client:close()
	publish(box.id, name .. ' left')
end)
