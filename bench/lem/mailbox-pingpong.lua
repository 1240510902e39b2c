-- mailbox-pingpong.lua: loops 1 and 2 bounce one message n times; microseconds per
-- round trip.
--   lem --loops 2 bench/lem/mailbox-pingpong.lua [n=100000]
local common = dofile((arg[0]:match('^(.*/)') or './') .. '../common.lua')
local utils = require 'lem.utils'
local loops = require 'lem.loops'
local o = common.args('mailbox-pingpong (lem)', { n = 100000 })
assert(loops.count >= 2, 'run with --loops 2')

local send, receive = loops.send, loops.receive
if loops.id == 1 then
	local t0, c0 = common.now(utils), os.clock()   -- after the start-up
	for i = 1, o.n do
		assert(send(2, i))
		local from, k = receive()
		assert(from == 2 and k == i)
	end
	local c1 = os.clock()
	local t1 = common.now(utils)
	common.phase('run', t1 - t0, c1 - c0)
	common.result('us/roundtrip', (t1 - t0) / o.n * 1e6)
elseif loops.id == 2 then
	for _ = 1, o.n do
		local from, k = receive()
		assert(send(from, k))
	end
end
