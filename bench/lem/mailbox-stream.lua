-- mailbox-stream.lua: loop 1 sends n messages (a number and a size-byte string) to loop 2;
-- messages/s from the first send to loop 2's acknowledgement of the last. A full
-- mailbox makes the sender yield and retry.
--   lem --loops 2 bench/lem/mailbox-stream.lua [n=1000000] [size=16]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local utils = require 'lem.utils'
local loops = require 'lem.loops'
local o = common.args('mailbox-stream (lem)', { n = 1000000, size = 16 })
assert(loops.count >= 2, 'run with --loops 2')

if loops.id == 1 then
	local send, yield, payload = loops.send, utils.yield, string.rep('x', o.size)
	local t0, c0 = common.now(utils), os.clock()   -- after the start-up
	for i = 1, o.n do
		while true do
			local ok, err = send(2, i, payload)
			if ok then break end
			assert(err == 'full', err)
			yield()
		end
	end
	local from, what = loops.receive()
	assert(from == 2 and what == 'done')
	-- the acknowledgement may be there before the receive, which then does not wait, and
	-- a small run can fit in the batch of t0's poll: only a fresh read is past the end
	local c1 = os.clock()
	local t1 = common.now(utils)
	common.phase('run', t1 - t0, c1 - c0)
	common.result('messages/s', o.n / (t1 - t0))
elseif loops.id == 2 then
	local receive, size = loops.receive, o.size
	for i = 1, o.n do
		local from, k, s = receive()
		if from ~= 1 or k ~= i or #s ~= size then
			error(('message %d: got %s from %s'):format(i, tostring(k), tostring(from)))
		end
	end
	assert(loops.send(1, 'done'))
end
