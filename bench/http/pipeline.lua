-- pipeline.lua: a wrk script that sends requests 16 at a time in one write (as
-- TechEmpower's pipelined plaintext test does); wrk counts each answer.
--   wrk -t1 -c256 -s bench/http/pipeline.lua http://127.0.0.1:8080/
local depth = 16

init = function(args)
	local r = {}
	for i = 1, depth do r[i] = wrk.format(nil, nil) end
	req = table.concat(r)
end

request = function()
	return req
end
