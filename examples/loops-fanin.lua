-- loops-fanin.lua: fan-in. Every loop, loop 1 included, counts the lines and words of
-- its share of a file and reports to loop 1, which adds the reports up as they come
-- and stops when receive says 'closed': every other loop has finished.
--   lem --loops 4 examples/loops-fanin.lua [file]
local loops = require 'lem.loops'

local name = arg[1] or arg[0]   -- by default, this script itself

-- The longer word; of two as long, the first in alphabetical order.
local function longer(a, b)
	if #a ~= #b then return #a > #b and a or b end
	return a < b and a or b
end

-- Line i belongs to loop (i - 1) % count + 1.
local lines, words, longest, i = 0, 0, '', 0
for line in io.lines(name) do
	i = i + 1
	if (i - 1) % loops.count + 1 == loops.id then
		lines = lines + 1
		for word in line:gmatch('%a+') do
			words = words + 1
			longest = longer(longest, word)
		end
	end
end
assert(loops.send(1, { lines = lines, words = words, longest = longest }))

if loops.id ~= 1 then return end   -- a worker has finished: its mailbox closes

local reports, total = {}, { lines = 0, words = 0, longest = '' }
while true do
	local from, report = loops.receive()
	if not from then break end   -- nil, 'closed': no loop is left to report
	reports[from] = report
	total.lines = total.lines + report.lines
	total.words = total.words + report.words
	total.longest = longer(total.longest, report.longest)
end
for id = 1, loops.count do
	local r = reports[id]
	print(('loop %d: %3d lines %4d words, longest %s'):format(id, r.lines, r.words, r.longest))
end
print(('%s: %d lines, %d words, longest %s'):format(name, total.lines, total.words, total.longest))
