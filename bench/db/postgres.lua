-- bench/db/postgres.lua: lem.postgres's side of make bench-db: pgbench's select-only
-- transaction (one row of pgbench_accounts by its primary key, a random one) as a
-- prepared statement on one connection (bench/db/run runs it).
--   lem bench/db/postgres.lua conninfo='host=/run/pg dbname=postgres' mode=prepared n=20000
-- mode=prepared: one coroutine, db:run after db:run, as pgbench -S -M prepared -c 1.
-- mode=pipeline: db:pipeline of `batch` db:run each, by `inflight` coroutines on the
-- connection, each sending its next pipeline once its last one's results came: with 2,
-- the server runs one pipeline while lem converts the results of the other.
-- scale: pgbench -i's scale (100,000 accounts each).
package.path = (arg[0]:match('^(.*)/db/postgres%.lua$') or 'bench') .. '/?.lua;' .. package.path
local common = require 'common'
local utils = require 'lem.utils'
local postgres = require 'lem.postgres'

local o = common.args('postgres (lem)', { conninfo = '', mode = 'prepared', n = 20000,
	batch = 16, inflight = 1, scale = 1 })
assert(o.mode == 'prepared' or o.mode == 'pipeline', 'mode=prepared or mode=pipeline')
local db = assert(postgres.connect(o.conninfo, 5))
assert(db:prepare('select', 'SELECT abalance FROM pgbench_accounts WHERE aid = $1'))
local accounts, random = 100000 * o.scale, math.random

local t0, c0 = common.now(utils), os.clock()   -- the time of a poll after the start-up
if o.mode == 'prepared' then
	for _ = 1, o.n do
		local rows, err = db:run('select', random(accounts))
		if not rows or #rows ~= 1 then error(err or 'no row') end
	end
else
	local batch, left, done = o.batch, math.ceil(o.n / o.batch), 0
	local finished = utils.sleeper()
	local function record(p)
		for _ = 1, batch do p:run('select', random(accounts)) end
	end
	local function client()
		while left > 0 do
			left = left - 1
			local results, err = db:pipeline(record)
			if not results or #results[batch] ~= 1 then error(err or 'no row') end
		end
		done = done + 1
		if done == o.inflight then finished:wakeup() end
	end
	for _ = 1, o.inflight do utils.spawn(client) end
	finished:sleep()
	o.n = math.ceil(o.n / batch) * batch
end
local wall, cpu = common.now(utils) - t0, os.clock() - c0
common.phase('run', wall, cpu)
common.result('queries/s', o.n / wall)
db:close()
