-- client.lua: keep-alive GETs with lem.http's client (http.request) for bench/http/run.
--   lem bench/http/client.lua url [connections [seconds]]
-- Runs `connections` coroutines that each ask for url again and again, reading every
-- body, for `seconds`; prints "requests <n> seconds <s> errors <e>".
local http = require 'lem.http'
local utils = require 'lem.utils'

local url = assert(arg[1], 'usage: lem bench/http/client.lua url [connections [seconds]]')
local conns = tonumber(arg[2]) or 50
local seconds = tonumber(arg[3]) or 5
http.max_idle_per_host = conns   -- one kept-alive connection per coroutine

local n, errors, stop, running = 0, 0, false, conns
local t0 = utils.now()
for _ = 1, conns do
	utils.spawn(function()
		while not stop do
			local r = http.request(url)
			if r and r.status == 200 and r:body() then n = n + 1 else errors = errors + 1 end
		end
		running = running - 1
	end)
end
utils.timer(seconds, function() stop = true end)
utils.spawn(function()
	while running > 0 do utils.sleeper():sleep(0.01) end
	print(('requests %d seconds %.3f errors %d'):format(n, utils.now() - t0, errors))
	http.close_idle()
end)
