-- loops-work.lua: work distribution. Loop 1 hands out jobs (ranges of numbers in which
-- to count the primes) to the other loops in turn; each worker replies with its count,
-- and loop 1 adds them up.
--   lem --loops 4 examples/loops-work.lua [limit [chunk]]
local loops = require 'lem.loops'
local utils = require 'lem.utils'

local limit = tonumber(arg[1]) or 200000
local chunk = tonumber(arg[2]) or 10000

-- Sends; on a full mailbox, lets the other coroutines run and tries again.
local function send(to, ...)
	while true do
		local ok, err = loops.send(to, ...)
		if ok then return end
		if err ~= 'full' then error(('loop %d is %s'):format(to, err)) end
		utils.yield()
	end
end

local function primes(first, last)
	local n = 0
	for i = math.max(first, 2), last do
		local prime = true
		for d = 2, math.floor(math.sqrt(i)) do
			if i % d == 0 then prime = false; break end
		end
		if prime then n = n + 1 end
	end
	return n
end

if loops.count == 1 then   -- nobody to hand jobs to
	print(('%d primes up to %d (one loop did it all)'):format(primes(1, limit), limit))
	return
end

if loops.id ~= 1 then
	-- A worker: jobs until 'stop'; each reply says which job it answers.
	while true do
		local from, what, first, last = loops.receive()
		if what ~= 'job' then return end   -- 'stop', or nil, 'closed'
		send(from, first, primes(first, last))
	end
end

-- Loop 1: the list of jobs; a coroutine that reads the replies; the jobs handed out in
-- turn to loops 2..count, then 'stop' to each. The replies have a coroutine of their
-- own so that they keep flowing while the main chunk waits for room in a full mailbox:
-- a worker that waits for room in loop 1's mailbox reads no jobs.
local jobs = {}
for first = 1, limit, chunk do
	jobs[#jobs + 1] = { first, math.min(first + chunk - 1, limit) }
end

local left, total, done, finished = #jobs, 0, {}, utils.sleeper()
utils.spawn(function()
	while left > 0 do
		local from, first, n = loops.receive()
		if not from then break end   -- nil, 'closed': no worker is left to reply
		left, total = left - 1, total + n
		done[from] = (done[from] or 0) + 1
	end
	finished:wakeup()
end)

for i, job in ipairs(jobs) do
	send((i - 1) % (loops.count - 1) + 2, 'job', job[1], job[2])
end
for id = 2, loops.count do send(id, 'stop') end
if left > 0 then finished:sleep() end

for id = 2, loops.count do print(('loop %d did %d jobs'):format(id, done[id] or 0)) end
print(('%d primes up to %d, in %d jobs'):format(total, limit, #jobs))
