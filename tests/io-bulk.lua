-- lem.io with bulk data: a 10 MB write to a slow reader (backpressure, nothing lost,
-- memory bounded), and large '*a' and counted reads in linear time.
local t = require 'tap'
local utils = require 'lem.utils'
local io = require 'lem.io'

local pair = t.tcp_pair

local function sum(s)    -- a cheap checksum, so that order matters too
	local h = 0
	for i = 1, #s, 4099 do h = (h * 31 + s:byte(i)) % 2147483647 end
	return h
end

-- 10 MB in one write, to a reader that takes 64 KB at a time with pauses
local MB = 1024 * 1024
local chunk = {}
for i = 0, 255 do chunk[#chunk + 1] = string.char(i) end
local data = table.concat(chunk):rep(10 * MB / 256)
local a, b = pair()
local wrote, werr, wrote_at
utils.spawn(function()
	wrote, werr = a:write(data)
	wrote_at = utils.now()
end)
utils.yield()
t.is(wrote, nil, 'a 10 MB write to a slow reader suspends the writer')
local parts, got, pauses = {}, 0, 0
while got < #data do
	local s = assert(b:read(math.min(65536, #data - got)))
	parts[#parts + 1] = s
	got = got + #s
	if got < 2 * MB then   -- slow at first: the writer must wait for us
		pauses = pauses + 1
		utils.sleeper():sleep(0.001)
	end
end
for _ = 1, 100 do if wrote then break end utils.yield() end
t.is(wrote, true, 'the write returns true once the kernel took everything')
local received = table.concat(parts)
t.is(#received, #data, 'nothing lost: all 10 MB arrive')
t.ok(received == data, 'in order, byte for byte')
parts, received = nil, nil

-- backpressure with bounded memory: 10 MB in 64 KB writes; the Lua heap stays small
-- while the reader lags, because each write waits for the kernel.
collectgarbage()
local heap0 = collectgarbage('count')
local maxheap, sent, lag = heap0, 0, 0
local piece = data:sub(1, 65536)
data = nil
local done
utils.spawn(function()
	for _ = 1, 160 do
		assert(a:write(piece))
		sent = sent + #piece
	end
	done = true
end)
local recvd = 0
while recvd < 160 * 65536 do
	local s = assert(b:read(math.min(32768, 160 * 65536 - recvd)))
	recvd = recvd + #s
	lag = math.max(lag, sent - recvd)
	maxheap = math.max(maxheap, collectgarbage('count'))
	if recvd % (1024 * 1024) < 32768 then utils.sleeper():sleep(0.002) end
end
t.is(recvd, 160 * 65536, '10 MB in 64 KB writes all arrive')
t.ok(lag < 8 * MB, 'the writer never runs far ahead of the reader',
	('lag %d bytes'):format(lag))
t.ok(maxheap - heap0 < 8 * 1024, 'the Lua heap stays bounded meanwhile',
	('grew by %d KB'):format(maxheap - heap0))

-- '*a' of 10 MB: a linear read (a quadratic one takes minutes)
local big = piece:rep(160)
local t0 = t.now()
utils.spawn(function() a:write(big) a:close() end)
local all = b:read('*a')
local dt = utils.now() - t0
t.is(#all, #big, "'*a' reads 10 MB")
t.ok(all == big, '... exactly')
t.ok(dt < 5, "... in linear time", ('%.2f s'):format(dt))
b:close()

-- a long line across many reads (longer than the default limit: raised)
a, b = pair()
local line = ('x'):rep(3 * MB)
b:limit(3 * MB)
utils.spawn(function() a:write(line, '\r\n', 'next\n') end)
t.is(b:read(), line, 'a 3 MB line across many reads')
t.is(b:read(), 'next', 'and the line after it')
-- many arguments in one write, more than one writev takes
local args = {}
for i = 1, 300 do args[i] = tostring(i) .. ',' end
utils.spawn(function() a:write(unpack(args)) a:write('\n') end)
t.is(b:read(), table.concat(args), 'write with 300 arguments')
a:close() b:close()
t.done()
