-- lem.postgres against a real PostgreSQL, started here in a temporary folder: a Unix
-- socket only (no TCP), as nobody when the tests run as root. A server that cannot start
-- fails the test with the reason.
local t = require 'tap'
local utils = require 'lem.utils'
local postgres = require 'lem.postgres'
local null = postgres.null

local function sleep(s) utils.sleeper():sleep(s) end

-- ---- the server ----
local function sh(cmd)
	local status, out, err = t.run(cmd)
	return status == 0, out .. err
end

local bin = select(2, sh("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1")):match('[^\n]+')
if not bin or not sh('test -x ' .. bin .. '/initdb') then
	local ok, path = sh('command -v initdb')
	bin = ok and path:match('(.*)/initdb') or nil
end
local dir = t.tmpdir()
local data, log = dir .. '/data', dir .. '/log'
local as = ''
if select(2, sh('id -u')):match('^0') then
	assert(sh('chown nobody ' .. dir))
	as = 'runuser -u nobody -- '
end
local function pg(cmd) return sh(as .. "sh -c '" .. cmd .. "'") end
local function start()
	return pg(bin .. '/pg_ctl -D ' .. data .. ' -l ' .. log .. ' -w -t 30' ..
		[[ -o "-k ]] .. dir .. [[ -c listen_addresses= -c fsync=off -c max_connections=20" start]])
end

local ok, why = bin ~= nil, 'no initdb (is postgresql installed?)'
if ok then
	ok, why = pg(bin .. '/initdb -D ' .. data .. ' -A trust -U postgres -E UTF8 --locale=C --no-sync')
end
if ok then ok, why = start() end
if ok then
	-- should this process die before it stops the server, a watchdog stops it
	os.execute(('(while kill -0 %s 2>/dev/null; do sleep 1; done; %s) >/dev/null 2>&1 &'):format(
		t.pid, as .. bin .. '/pg_ctl -D ' .. data .. ' -m immediate stop'))
end
if not ok then
	t.ok(false, 'the server starts', why .. t.slurp(log))
	t.done()
	return
end
t.ok(true, 'the server starts')

-- The tests run in a protected call, so that the server stops whatever happens.
local main = function()
local conninfo = 'host=' .. dir .. ' user=postgres dbname=postgres'
-- (30 s: a bound only; a loaded machine starts a backend slowly)
local function connect() return postgres.connect(conninfo, 30) end

-- ---- connecting ----
local db, err = connect()
t.ok(db, 'connect', err)
t.like(tostring(db), '^postgres connection %(open%)', 'tostring')
local nodb, msg = postgres.connect('host=' .. dir .. ' user=postgres dbname=nosuchdb', 5)
t.is(nodb, nil, 'connect to a missing database fails')
t.like(msg, 'nosuchdb', 'with the server\'s message')
t.ok(not msg:find('\n'), '... its first line only', msg)
nodb, msg = postgres.connect('host=' .. dir .. '/nowhere user=postgres', 5)
t.is(nodb, nil, 'connect to a missing socket fails')
t.like(msg, 'No such file', 'with libpq\'s message')
nodb, msg = postgres.connect('nonsense', 5)
t.is(msg, 'invalid connection string', 'an invalid connection string')
nodb, msg = postgres.connect('host=name.invalid user=postgres', 5)
t.like(msg, 'could not translate host name', 'a name that does not resolve (looked up off the loop)')
do   -- a "server" that never answers: the connect's timeout
	local mute = t.tmpdir()
	local l = assert(require('lem.io').unix.listen(mute .. '/.s.PGSQL.5432'))
	local t0 = t.now()
	nodb, msg = postgres.connect('host=' .. mute .. ' user=postgres', 0.2)
	t.is(msg, 'timeout', 'a connect times out')
	t.ok(utils.now() - t0 < 1, 'on time')
	l:close()
end
t.error(function() postgres.connect() end, "bad argument #1 to 'connect'", 'connect without a string')
t.error(function() postgres.connect(conninfo, 'x') end, "bad argument #2 to 'connect'", 'connect with a string timeout')

-- ---- types both ways ----
local rows, status = db:query([[select 1::int2 as a, 2::int4 as b, 9007199254740993::int8 as c,
	1.5::float4 as d, 2.25::float8 as e, 3.125::numeric as f, true as g, false as h,
	'text'::text as i, null::int as j, 'NaN'::float8 as k, 'Infinity'::float8 as l,
	'{1,2}'::int[] as m, '2024-01-02'::date as n, 42::oid as o]])
t.ok(rows, 'a select of many types', status)
local r = rows[1]
t.is(status, 'SELECT 1', 'the command status')
t.is(#rows, 1, 'one row')
t.is(r.a, 1, 'int2'); t.is(r.b, 2, 'int4'); t.is(r.c, 9007199254740992, 'int8 (rounded to a double)')
t.is(r.d, 1.5, 'float4'); t.is(r.e, 2.25, 'float8'); t.is(r.f, 3.125, 'numeric')
t.is(r.g, true, 'bool true'); t.is(r.h, false, 'bool false'); t.is(r.i, 'text', 'text')
t.is(r.j, null, 'NULL is postgres.null'); t.ok(r.k ~= r.k, 'NaN'); t.is(r.l, math.huge, 'Infinity')
t.is(r.m, '{1,2}', 'an array as text'); t.is(r.n, '2024-01-02', 'a date as text'); t.is(r.o, 42, 'oid')
t.is(type(null), 'userdata', 'postgres.null is a light userdata')

rows = db:query('select $1::int4 as a, $2::float8 as b, $3::text as c, $4::bool as d, $5::bool as e, ' ..
	'$6::int as f, $7::int as g, $8::int8 as h, $9::float8 as i, $10::numeric as j',
	42, 0.1, 'héllo', true, false, nil, null, 2^53, -1e300, 1/0)
r = rows and rows[1] or {}
t.is(r.a, 42, 'integer parameter'); t.is(r.b, 0.1, 'float parameter reads back the same')
t.is(r.c, 'héllo', 'string parameter'); t.is(r.d, true, 'true parameter'); t.is(r.e, false, 'false parameter')
t.is(r.f, null, 'nil parameter is NULL'); t.is(r.g, null, 'postgres.null parameter is NULL')
t.is(r.h, 2^53, 'a large whole number goes without exponent'); t.is(r.i, -1e300, 'a large float')
t.is(r.j, math.huge, 'infinity parameter')
t.error(function() db:query('select $1', {}) end, 'table cannot be a parameter', 'a table parameter raises')
t.error(function() db:query('select $1', print) end, 'function cannot be a parameter', 'a function parameter raises')
t.error(function() db:query() end, "bad argument #1 to 'query'", 'query without sql')
-- text goes to libpq as C strings: a zero byte in it raises rather than cutting it short
t.error(function() db:query('select $1::text', 'a\0b') end,
	"postgres%.lua:%d+: bad argument #2 to 'query' %(zero byte in a text parameter; use postgres%.binary%)",
	'a zero byte in a text parameter raises at the caller')
t.error(function() db:query('select $1::int, $2::text', 1, 'x\0') end, "bad argument #3 to 'query'",
	'the argument it is in')
t.error(function() db:query('select 1 as a\0; select 2 as b') end,
	"postgres%.lua:%d+: bad argument #1 to 'query' %(zero byte in SQL%)", 'a zero byte in SQL raises')
t.error(function() db:prepare('z', 'select 1\0') end, "postgres%.lua:%d+: bad argument #2 to 'prepare' %(zero byte",
	'in the SQL of a prepare')
t.error(function() db:prepare('z\0y', 'select 1') end, "postgres%.lua:%d+: bad argument #1 to 'prepare' %(zero byte",
	'in a statement\'s name')
t.error(function() db:run('z\0y') end, "postgres%.lua:%d+: bad argument #1 to 'run' %(zero byte", 'in the name of a run')
t.error(function() db:run('byid', 'a\0') end, "postgres%.lua:%d+: bad argument #2 to 'run' %(zero byte",
	'in a parameter of a run')
t.error(function() db:pipeline(function(p) p:query('select $1::text', 'x\0y') end) end,
	"postgres%.lua:%d+: bad argument #2 to 'query' %(zero byte in a text parameter", 'in a pipeline\'s parameter')
t.error(function() db:pipeline(function(p) p:query('select 1\0') end) end,
	"postgres%.lua:%d+: bad argument #1 to 'query' %(zero byte in SQL%)", 'in a pipeline\'s SQL')
t.error(function() db:pipeline(function(p) p:run('by\0id') end) end,
	"postgres%.lua:%d+: bad argument #1 to 'run' %(zero byte", 'in a pipeline\'s statement name')
t.error(function() postgres.connect(conninfo .. '\0 port=1') end,
	"postgres%.lua:%d+: bad argument #1 to 'connect' %(zero byte", 'in a connection string')
rows = db:query('select $1::text as t, length($2::bytea) as n', 'ab', postgres.binary('a\0b'))
t.same(rows and { rows[1].t, rows[1].n }, { 'ab', 3 }, 'postgres.binary sends a zero byte')
-- a connection reuses its last result's strings and its ended requests
rows = db:query('select $1::int4 as x, -7::int8 as y', 1)
t.ok(rows and rows[1].x == 1 and rows[1].y == -7, 'two columns, a negative int8')
rows = db:query('select 2 as y, 3 as x')
t.ok(rows and rows[1].y == 2 and rows[1].x == 3 and rows[1][1] == nil, 'other names in the same places')
rows = db:query('select 1 as a, 2 as a')
t.is(rows and rows[1].a, 2, 'two columns of the same name: the later one is kept')
rows = db:query('select $1::text as n, $2::text as m', 0 / 0, -1 / 0)
t.same(rows and { rows[1].n, rows[1].m }, { 'NaN', '-Infinity' }, 'NaN and -Infinity parameters: sent as such')
rows = db:query('select length($1::text) as n', string.rep('x', 100000))
t.is(rows and rows[1].n, 100000, 'a request larger than the kept ones')
rows = db:query('select $1::int8 as n, 123456789012345678::int8 as m', -999999999999999)
t.is(rows and rows[1].n, -999999999999999, 'a 15-digit integer')
t.is(rows and rows[1].m, 123456789012345678, 'an 18-digit one (rounded to a double)')
local ok, e = pcall(coroutine.wrap(function() return db:query('select 1') end))
t.ok(not ok and tostring(e):match('suspend'), 'a query where its caller cannot wait raises', e)
for i = 1, 3 do rows = db:query('select $1::int4 as z', i) end
t.is(rows and rows[1].z, 3, 'the request of that caller serves the next ones')

-- binary strings: bytea comes back as its bytes; postgres.binary sends bytes as they are
local bytes = {}
for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
bytes = table.concat(bytes)
rows = db:query('select $1::bytea as b, length($1::bytea) as n', postgres.binary(bytes))
t.is(rows and rows[1].b, bytes, 'bytea round trip of every byte')
t.is(rows and rows[1].n, 256, 'the server saw 256 bytes')
rows = db:query([[select '\x00ff41'::bytea as b]])
t.is(rows and rows[1].b, '\0\255A', 'a bytea literal')

-- ---- commands, counts, transactions ----
local n, st = db:query('create table t (id serial primary key, v text, x float8)')
t.is(n, 0, 'create table: no rows'); t.is(st, 'CREATE TABLE', 'create table: its status')
n, st = db:query("insert into t (v, x) values ('a', 1), ('b', 2), ('c', null)")
t.is(n, 3, 'insert: the rows affected'); t.is(st, 'INSERT 0 3', 'insert: its status')
n = db:query("update t set x = x * 2 where x is not null")
t.is(n, 2, 'update: the rows affected')
t.is(db:query('begin'), 0, 'begin')
t.is(db:status(), 'transaction', 'status inside a transaction: transaction')
db:query("insert into t (v) values ('rolled back')")
t.is(select(3, db:query('select 1/0')), '22012', 'an error inside it')
t.is(db:status(), 'failed', '... status: failed, until the rollback')
t.is(db:query('rollback'), 0, 'rollback')
t.is(db:status(), 'idle', 'status after it: idle')
do
	local ended
	utils.spawn(function() ended = db:query('select pg_sleep(0.1)') end)
	utils.yield()
	t.is(db:status(), 'busy', 'status while a query runs: busy')
	t.eventually(function() return ended end, 5)
end
rows = db:query('select v, x from t order by id')
t.same(rows, { { v = 'a', x = 2 }, { v = 'b', x = 4 }, { v = 'c', x = null } }, 'the rows after the rollback')
n, st = db:query('select 1; select 2 as two')
t.is(n and n[1].two, 2, 'several statements without parameters: the last result')
n, st = db:query('')
t.is(n, 0, 'an empty query')

-- ---- errors ----
n, msg, st = db:query('select * from nosuchtable')
t.is(n, nil, 'an error: nil'); t.like(msg, 'nosuchtable', 'the message'); t.is(st, '42P01', 'the SQLSTATE')
n, msg, st = db:query('select 1/0')
t.is(st, '22012', 'division by zero'); t.like(msg, 'division by zero', 'its message')
n, msg, st = db:query("insert into t (id, v) values (1, 'dup')")
t.is(st, '23505', 'unique violation')
n, msg, st = db:query('select $1::int', 'x')
t.is(st, '22P02', 'a bad parameter')
n, msg, st = db:query('select $1::int')
t.is(n, nil, 'a missing parameter fails'); t.ok(msg, 'with a message')
t.is(db:query('select 1 as one')[1].one, 1, 'the connection works after errors')
n, msg, st = db:query('begin; select 1/0; commit')
t.is(st, '22012', 'an error in a multi-statement query')
t.is(db:query('rollback'), 0, 'rollback after it')
n, msg = db:query('copy t to stdout')
t.ok(n == nil or type(n) == 'number', 'copy out does not hang the connection')
n, msg = db:query('copy t from stdin')
t.is(n, nil, 'copy in fails'); t.like(msg, 'not supported', 'with a message saying so')
t.is(db:query('select 2 as two')[1].two, 2, 'the connection works after copy')
do   -- copy from stdin with statements after it in a pipeline: the server ends the session
	local lost = assert(connect())
	local res, why = lost:pipeline(function(p)
		p:query('create temp table z (a int)')
		p:query('copy z from stdin')
		p:query('select 1')
	end)
	t.ok(res == nil and why, 'copy from stdin before other statements of a pipeline: nil, message', why)
	t.is(lost:status(), 'lost', '... the connection is lost')
	lost:close()
end
do   -- COPY TO STDOUT of any size: its rows are dropped as they come. A loop that spun
	-- would not answer even SIGTERM: the copies run in a child killed after 60 s.
	local script = t.file(dir, 'copy.lua', ([[
local postgres = require 'lem.postgres'
local db = assert(postgres.connect(%q, 30))
for _, n in ipairs { 5000, 200000 } do
	print(db:query(('copy (select generate_series(1, %%d)) to stdout'):format(n)))
end
print(db:query('select 3 as x')[1].x)
local res, err = db:pipeline(function(p)
	p:query('copy (select generate_series(1, 50000)) to stdout')
	p:query('select 4 as x')
end)
print(res and res[1], res and res[2][1].x, err)
print(db:query('copy t from stdin'))
print(db:query('select 5 as x')[1].x)
]]):format(conninfo))
	local t0 = t.now()
	local status, out, err = t.run('timeout -s KILL 60 ' .. t.lem .. ' ' .. script)
	t.is(status, 0, 'copies to stdout of 5,000 and 200,000 rows end', err)
	local lines = {}
	for l in out:gmatch('[^\n]+') do lines[#lines + 1] = l end
	t.is(lines[1], '5000\tCOPY 5000', 'copy out of 5,000 rows: its count')
	t.is(lines[2], '200000\tCOPY 200000', 'copy out of 200,000 rows: its count')
	t.is(lines[3], '3', 'the connection works after them')
	t.is(lines[4], '50000\t4\tnil', 'a copy out inside a pipeline')
	t.like(lines[5], 'not supported', 'copy in fails')
	t.is(lines[6], '5', 'the connection works after it')
	t.ok(utils.now() - t0 < 30, 'in bounded time')
end

-- ---- prepared statements ----
n, st = db:prepare('byid', 'select v from t where id = $1')
t.is(n, 0, 'prepare'); t.is(st, '', 'prepare: no command status')
rows = db:run('byid', 2)
t.is(rows and rows[1].v, 'b', 'run a prepared statement')
rows = db:run('byid', 99)
t.is(rows and #rows, 0, 'run with no row found')
n, msg, st = db:run('nosuch', 1)
t.is(st, '26000', 'run an unknown statement')
n, msg, st = db:prepare('bad', 'select from where')
t.is(st, '42601', 'prepare a syntax error')
n, msg, st = db:prepare('byid', 'select 1')
t.is(st, '42P05', 'prepare a name twice')

-- ---- large results ----
local t0 = utils.now()
rows = db:query('select g as id, md5(g::text) as h from generate_series(1, 100000) g')
t.is(rows and #rows, 100000, '100k rows')
t.is(rows and rows[100000].id, 100000, 'the last of them')
t.is(rows and #rows[1].h, 32, 'with their text')
t.ok(utils.now() - t0 < 10, '100k rows in less than 10 s')
print(('# 100k rows of two columns in %.3f s'):format(utils.now() - t0))
rows = nil
collectgarbage()

-- ---- a query timeout: statement_timeout ----
db:query('set statement_timeout = 100')
t0 = t.now()
n, msg, st = db:query('select pg_sleep(5)')
t.is(st, '57014', 'statement_timeout cancels a long query'); t.like(msg, 'statement timeout', 'and says why')
t.ok(utils.now() - t0 < 3, 'on time')
db:query('set statement_timeout = 0')
t.is(db:query('select 3 as x')[1].x, 3, 'the connection works after a cancel')

-- ---- several coroutines on one connection: in order ----
local order, results, left = {}, {}, 20
local others = 0
for i = 1, 20 do
	utils.spawn(function()
		local rows = db:query('select $1::int as i, pg_sleep(0.01 * (($1::int) % 3))', i)
		results[i] = rows and rows[1].i
		order[#order + 1] = i
		left = left - 1
	end)
end
-- the loop runs other coroutines meanwhile
utils.spawn(function() while left > 0 do others = others + 1 sleep(0.005) end end)
while left > 0 do sleep(0.01) end
local inorder, allok = true, true
for i = 1, 20 do
	if order[i] ~= i then inorder = false end
	if results[i] ~= i then allok = false end
end
t.ok(allok, '20 coroutines on one connection get their own results')
t.ok(inorder, 'served in the order they came')
t.ok(others > 3, 'the loop ran other coroutines meanwhile')

-- ---- pipeline mode ----
local res, perr, pst, idx = db:pipeline(function(p)
	p:query('select $1::int as a', 1)
	p:query("insert into t (v) values ($1)", 'piped')
	p:run('byid', 1)
	p:query('select count(*)::int as n from t')
end)
t.ok(res, 'a pipeline', perr)
if res then
	t.is(res[1][1].a, 1, 'its first result'); t.is(res[2], 1, 'its insert')
	t.is(res[3][1].v, 'a', 'a prepared statement in it'); t.is(res[4][1].n, 4, 'it saw its insert')
end
res, perr, pst, idx = db:pipeline(function(p)
	p:query('select 1')
	p:query('select 1/0')
	p:query('select 2')
end)
t.is(res, nil, 'a failing pipeline'); t.is(pst, '22012', 'its SQLSTATE'); t.is(idx, 2, 'the failing index')
db:query('create temp table undone (v int)')
res, perr, pst, idx = db:pipeline(function(p)
	p:query('insert into undone values (1)')
	p:query('select 1/0')
	p:query('insert into undone values (2)')
end)
t.same({ res, pst, idx }, { nil, '22012', 2 }, 'a pipeline that fails at its second statement')
t.is(db:query('select count(*)::int as n from undone')[1].n, 0,
	'... what the one before did is rolled back, the one after skipped')
local waited, werr = pcall(db.pipeline, db, function(p) p:query('select 1') sleep(0.01) end)
t.ok(not waited and tostring(werr):find('attempt to yield across'), 'a recording function that waits raises', werr)
t.is(db:query('select 4 as x')[1].x, 4, '... and the connection goes on')
t.same(db:pipeline(function() end), {}, 'an empty pipeline')
t.error(function() db:pipeline(function(p) p:query('select $1', {}) end) end, 'cannot be a parameter',
	'a bad parameter in a pipeline raises')
t.is(db:query('select 5 as x')[1].x, 5, 'the connection after pipelines')
do
	local big = db:pipeline(function(p)
		for i = 1, 1000 do p:run('byid', i % 3 + 1) end
	end)
	t.is(big and #big, 1000, '1000 statements in one pipeline')
end
res = db:pipeline(function(p) p:query('select $1::int as a, $2::text as b, $3::int as c', nil, 'x', null) end)
t.same(res and { res[1][1].a, res[1][1].b, res[1][1].c }, { null, 'x', null }, 'nil and null parameters in a pipeline')
do   -- what the recorder keeps of each kind of parameter, and of a recording that raised
	res = db:pipeline(function(p)
		p:query('select $1::text as s, $2::float8 as f, $3::bool as b, $4::int8 as i, $5::bytea as y',
			'it\'s', 0.25, false, -2^53, postgres.binary('a\0b'))
		p:run('byid', '2')
	end)
	local r = res and res[1][1]
	t.same(r and { r.s, r.f, r.b, r.i, r.y, res[2][1].v }, { "it's", 0.25, false, -2^53, 'a\0b', 'b' },
		'a pipeline\'s parameters of every kind')
	t.error(function() db:pipeline(function(p) p:query('select 1 as x') error('stop') end) end, 'stop',
		'an error of the recording function goes on')
	res = db:pipeline(function(p) p:query('select 2 as x') end)
	t.same(res and { #res, res[1][1].x }, { 1, 2 }, 'the next pipeline has none of its statements')
	local kept
	db:pipeline(function(p) kept = p p:query('select 1') end)
	t.error(function() kept:query('select 1') end, 'outside its pipeline', 'a recorder kept after its pipeline raises')
	local inner, innerr
	res = db:pipeline(function(p)
		p:query('select 3 as x')
		inner, innerr = pcall(db.pipeline, db, function(q)
			q:query('select 4 as x')
			p:query('select 5 as x')
		end)
		p:query('select 6 as x')
	end)
	t.same(res and { #res, res[1][1].x, res[2][1].x }, { 2, 3, 6 },
		'a pipeline recorded inside a recording function: the outer one keeps its own')
	t.like(tostring(innerr), 'outside its pipeline', 'the outer recorder inside the inner function raises')
end
do   -- pipelines from several coroutines go on the wire together: each gets its own results
	local got, done = {}, 0
	local wake = utils.sleeper()
	for k = 1, 6 do
		utils.spawn(function()
			for i = 1, 20 do
				local r, e, st, at = db:pipeline(function(p)
					p:query('select $1::int as k, $2::int as i', k, i)
					if k == 3 and i == 10 then p:query('select 1/0') end
					p:query('select $1::int * 2 as d', i)
				end)
				if k == 3 and i == 10 then
					if not (r == nil and st == '22012' and at == 2) then got[#got + 1] = 'failing: ' .. tostring(e) end
				elseif not (r and r[1][1].k == k and r[1][1].i == i and r[2][1].d == 2 * i) then
					got[#got + 1] = ('%d/%d: %s'):format(k, i, tostring(e))
				end
			end
			done = done + 1
			if done == 7 then wake:wakeup() end
		end)
	end
	utils.spawn(function()   -- a plain query queued behind pipelines
		utils.yield()
		local r = db:query('select 7 as x')
		if not (r and r[1].x == 7) then got[#got + 1] = 'the query between pipelines' end
		done = done + 1
		if done == 7 then wake:wakeup() end
	end)
	wake:sleep(30)
	t.is(done, 7, '6 coroutines sending pipelines, and a query among them, finished')
	t.same(got, {}, 'each got its own results; the failing pipeline alone failed')
end

-- ---- LISTEN/NOTIFY between two connections ----
local db2 = assert(connect())
t.is(db:query('listen chan'), 0, 'listen')
local got
utils.spawn(function() got = { db:notification(5) } end)
sleep(0.05)
db2:query("select pg_notify('chan', 'hello')")
for _ = 1, 100 do if got then break end sleep(0.01) end
t.is(got and got[1], 'chan', 'a notification: its channel')
t.is(got and got[2], 'hello', 'its payload')
t.is(got and got[3], db2:query('select pg_backend_pid() as p')[1].p, 'the pid of its sender')
db2:query('notify chan')
t.same({ db:notification(1) }, { 'chan', '', db2:query('select pg_backend_pid() as p')[1].p },
	'a notification without a payload: \'\'')
db2:query("notify chan, 'queued'")
sleep(0.05)
local c, p = db:notification(1)
t.is(p, 'queued', 'a notification that came before the call')
t0 = t.now()
c, p = db:notification(0.1)
t.is(p, 'timeout', 'notification times out'); t.ok(utils.now() - t0 < 1, 'on time')
c, p = db:notification(0)
t.is(p, 'timeout', 'notification(0) only looks')
-- a notification that comes while a query runs on the listening connection
got = nil
utils.spawn(function() got = { db:notification(5) } end)
utils.spawn(function() sleep(0.05) db2:query("notify chan, 'during'") end)
db:query('select pg_sleep(0.2)')
for _ = 1, 100 do if got then break end sleep(0.01) end
t.is(got and got[2], 'during', 'a notification during a query')
utils.spawn(function() db:notification(0.2) end)
sleep(0.01)
c, p = db:notification(0.2)
t.is(p, 'busy', 'a second waiter is busy')
sleep(0.3)

-- LISTEN/NOTIFY across two loops of one process, each with its own connection
do
	local script = t.file(dir, 'loops.lua', ([[
local postgres, loops = require 'lem.postgres', require 'lem.loops'
local db = assert(postgres.connect(%q, 30))
if loops.id == 1 then
	db:query('listen across')
	loops.send(2, 'listening')
	local c, p = db:notification(5)
	print(c, p)
else
	loops.receive()
	db:query("notify across, 'from loop 2'")
end
]]):format(conninfo))
	local status, out, err = t.run(t.lem .. ' --loops 2 ' .. script)
	t.ok(out == 'across\tfrom loop 2\n', 'a notification from another loop',
		'status ' .. tostring(status) .. ', out: ' .. out .. ', err: ' .. err)
end

-- ---- close and garbage ----
local function backends()
	return db2:query("select count(*)::int as n from pg_stat_activity where backend_type = 'client backend'")[1].n
end
-- (the backends of the two-loop child may still be on their way out)
for _ = 1, 100 do if backends() == 2 then break end sleep(0.02) end
local before = backends()
t.is(before, 2, 'two connections have backends')
do
	local lost = assert(connect())
	t.is(backends(), before + 1, 'a new connection has a backend')
end
collectgarbage(); collectgarbage()
for _ = 1, 100 do if backends() == before then break end sleep(0.02) end
t.is(backends(), before, 'an unclosed connection is closed by the collector')
local fds = t.nfds()
local function five() for _ = 1, 5 do assert(connect()) end end
five()
-- (lem's yield-safe pcall, which these tests run in, keeps the values of the last wake
-- until the next one: one more, so that the collector sees the fifth as garbage)
db2:query('select 1')
collectgarbage(); collectgarbage()
t.is(t.nfds(), fds, 'no descriptor leaks')


local db3 = assert(connect())
local closed
utils.spawn(function() closed = { db3:query('select pg_sleep(5)') } end)
utils.spawn(function() db3:notification(5) end)
sleep(0.05)
t.is(db3:close(), true, 'close while a query runs')
sleep(0.01)
t.is(closed and closed[2], 'closed', 'the query returns nil, closed')
t.ok(closed and closed[1] == nil and closed[3] == nil and #closed == 2, '... with no SQLSTATE: the client failed')
t.error(function() db3:query('select 1') end, "postgres%.lua:%d+: calling 'query' on bad self %(closed connection%)",
	'query on a closed connection raises')
t.error(function() db3.prepare(db3, 'x', 'select 1') end,
	"postgres%.lua:%d+: bad argument #1 to 'prepare' %(closed connection%)", '... and so does prepare, called as a function')
t.like(tostring(db3), '%(closed%)', 'tostring of a closed connection')
t.is(db3:close(), true, 'close twice')
t.is(db3:cancel(), false, 'cancel on a closed connection: false')

-- ---- db:cancel() ----
do
	local cancelled
	t0 = t.now()
	utils.spawn(function() sleep(0.2) cancelled = { db:cancel() } end)
	n, msg, st = db:query('select pg_sleep(10)')
	t.is(st, '57014', 'a query cancelled from another coroutine: 57014')
	t.like(msg, 'cancel', 'and the server\'s message')
	t.near(utils.now() - t0, 0.2, 0.5, 'it returns soon after the cancel')
	for _ = 1, 100 do if cancelled then break end sleep(0.01) end
	t.same(cancelled, { true }, 'cancel returns true once the server has the request')
	t.is(db:query('select 6 as x')[1].x, 6, 'the connection works after a cancel')
	t.is(db:cancel(), false, 'cancel with nothing running: false')
	utils.spawn(function() db:notification(0.2) end)
	utils.yield()
	t.is(db:cancel(), false, 'cancel while the connection only waits for a notification: false')
	sleep(0.25)
	-- the server cannot be reached for the cancel (its socket moved away meanwhile)
	local sock = dir .. '/.s.PGSQL.5432'
	local slept
	utils.spawn(function() slept = { db:query('select pg_sleep(0.3) as s') } end)
	utils.yield()
	assert(os.rename(sock, sock .. '.away'))
	local c1, c2 = db:cancel()
	assert(os.rename(sock .. '.away', sock))
	t.ok(c1 == nil and type(c2) == 'string' and c2:find('connect'), 'cancel where the server cannot be reached: nil and libpq\'s message', c2)
	t.eventually(function() return slept end, 5)
	t.ok(slept and slept[1] and slept[1][1], '... and the query runs on', slept and slept[2])
	-- only the request on the wire is cancelled, not those queued behind it
	local first, second
	utils.spawn(function() first = { db:query('select pg_sleep(10)') } end)
	utils.spawn(function() second = { db:query('select 7 as x') } end)
	sleep(0.1)
	t.is(db:cancel(), true, 'cancel with a request queued behind')
	for _ = 1, 200 do if second then break end sleep(0.01) end
	t.is(first and first[3], '57014', 'the running one is cancelled')
	t.is(second and second[1] and second[1][1].x, 7, 'the queued one runs')
	-- a client-side timeout: a timer that cancels
	t0 = t.now()
	local timer = utils.timer(0.2, function() db:cancel() end)
	n, msg, st = db:query('select pg_sleep(10)')
	timer:cancel()
	t.is(st, '57014', 'a timer cancels a query: a client-side timeout')
	t.ok(utils.now() - t0 < 2, 'on time')
	t.error(function() db.cancel() end, 'bad argument', 'cancel without a connection raises')
end

-- ---- postgres.pool ----
do
	local pool = postgres.pool(conninfo, { size = 3, timeout = 5 })
	t.like(tostring(pool), '^postgres pool %(0/3, open%)', 'a pool: tostring')
	local busy, most, done, pids = 0, 0, 0, {}
	for _ = 1, 10 do
		utils.spawn(function()
			pool:with(function(db)
				busy = busy + 1
				if busy > most then most = busy end
				local rows = db:query('select pg_backend_pid() as p, pg_sleep(0.1)')
				pids[rows[1].p] = true
				busy = busy - 1
			end)
			done = done + 1
		end)
	end
	for _ = 1, 500 do if done == 10 then break end sleep(0.01) end
	local npids = 0
	for _ in pairs(pids) do npids = npids + 1 end
	t.is(done, 10, '10 coroutines on a pool of 3: all done')
	t.is(most, 3, 'at most 3 at a time')
	t.is(npids, 3, 'on 3 connections')
	t.same({ pool:count() }, { 3, 3, 0 }, 'three connections idle after')
	rows = pool:query('select $1::int as x', 8)
	t.is(rows and rows[1].x, 8, 'pool:query')
	t.is(select(3, pool:query('select 1/0')), '22012', 'pool:query: an error')
	rows = pool:pipeline(function(p) p:query('select 1 as a') p:query('select 2 as b') end)
	t.is(rows and rows[2][1].b, 2, 'pool:pipeline')

	-- errors inside with
	local ok, e = pcall(pool.with, pool, function(db) db:query('select 1') error('boom') end)
	t.ok(not ok and tostring(e):find('boom'), 'an error inside with goes on', tostring(e))
	t.same({ pool:count() }, { 3, 3, 0 }, 'and its connection came back')
	local obj = {}
	ok, e = pcall(pool.with, pool, function() error(obj) end)
	t.is(e, obj, 'an error value that is not a string goes on as it is')
	t.same({ pool.with(pool, function(db, a, b) return a + b, 'x' end, 1, 2) }, { 3, 'x' },
		'with passes its arguments and returns the results')
	pool:with(function(db) db:query('begin') end)
	t.same({ pool:count() }, { 2, 2, 0 }, 'a connection left in a transaction is closed')

	-- a connection killed while idle is replaced; one killed while lent is dropped
	local function pid(db)
		local rows, err = db:query('select pg_backend_pid() as p')
		return rows and rows[1].p or err
	end
	local victim = pool:get()
	local vpid = pid(victim)
	t.is(victim:status(), 'idle', 'status: idle')
	pool:put(victim)                        -- the next get takes it first
	db2:query('select pg_terminate_backend($1)', vpid)
	t.eventually(function() return victim:status() ~= 'idle' end, 10)   -- the backend ends soon
	local got = pool:get()
	t.isnt(pid(got), vpid, 'a connection killed while idle is not handed out')
	t.is(victim:status(), 'closed', 'the pool closed it')
	vpid = pid(got)
	db2:query('select pg_terminate_backend($1)', vpid)
	t.eventually(function() return got:status() ~= 'idle' end, 10)
	n, msg = got:query('select 1')
	t.is(n, nil, 'a lent connection killed: its query fails')
	t.is(got:status(), 'lost', 'status: lost')
	-- a connection ended by an administrator while it runs a query: the server's word
	local ended = pool:get()
	local epid = pid(ended)
	local killed
	utils.spawn(function() killed = { ended:query('select pg_sleep(5)') } end)
	sleep(0.1)
	db2:query('select pg_terminate_backend($1)', epid)
	t.eventually(function() return killed end, 5)
	t.same(killed, { nil, 'terminating connection due to administrator command', '57P01' },
		'the query on a connection ended by pg_terminate_backend: the server\'s message and 57P01')
	t.is(ended:status(), 'lost', '... and the connection is lost')
	pool:put(ended)
	local before = pool:count()
	pool:put(got)
	t.is(pool:count(), before - 1, 'put drops it')
	rows = pool:query('select 9 as x')
	t.is(rows and rows[1].x, 9, 'the pool works on')

	-- waiters: first come, first served, each with its timeout
	local small = postgres.pool(conninfo, { size = 1 })
	local held = small:get()
	local order = {}
	for i = 1, 3 do
		utils.spawn(function()
			local db = small:get(5)
			order[#order + 1] = db and i or 'none'
			sleep(0.01)
			if db then small:put(db) end
		end)
	end
	sleep(0.01)
	t0 = t.now()
	n, msg = small:get(0.1)
	t.same({ n, msg }, { nil, 'timeout' }, 'a waiter times out')
	t.near(utils.now() - t0, 0.1, 0.08, 'on time')
	t.same({ small:count() }, { 1, 0, 3 }, 'and leaves the queue')
	held:query('begin')
	small:put(held)                         -- dropped: the first waiter connects anew
	for _ = 1, 200 do if #order == 3 then break end sleep(0.01) end
	t.same(order, { 1, 2, 3 }, 'waiters are served in order, a dropped connection replaced')
	utils.spawn(function() order = { small:get(5) } end)
	held = small:get()
	utils.spawn(function() small:close() end)
	sleep(0.05)
	t.same({ order[1], order[2] }, { nil, 'closed' }, 'close: the waiters get nil, closed')
	t.same({ small:get() }, { nil, 'closed' }, 'a closed pool gives nothing')
	small:put(held)
	t.same({ small:count() }, { 0, 0, 0 }, 'a connection put back to a closed pool is closed')
	t.is(held:status(), 'closed', 'closed indeed')

	-- connect failures and init
	t.like(tostring(postgres.pool(conninfo)), '^postgres pool %(0/4, open%)', 'a pool\'s size by default: 4')
	local refusing = postgres.pool(conninfo, { init = function() return nil, 'not this one' end })
	t.same({ refusing:get() }, { nil, 'not this one' }, 'an init that returns nil, message: get returns them')
	t.same({ refusing:count() }, { 0, 0, 0 }, '... the connection closed, its place free')
	refusing:close()
	local bad = postgres.pool('host=' .. dir .. ' user=postgres dbname=nosuchdb', { size = 2 })
	n, msg = bad:query('select 1')
	t.is(n, nil, 'a pool that cannot connect: nil'); t.like(msg, 'nosuchdb', 'and why')
	t.same({ bad:count() }, { 0, 0, 0 }, 'and no place is taken')
	local inits = 0
	local prepared = postgres.pool(conninfo, { size = 2, init = function(db)
		inits = inits + 1
		return db:prepare('twice', 'select $1::int * 2 as y')
	end })
	rows = prepared:run('twice', 21)
	t.is(rows and rows[1].y, 42, 'init prepares a statement on each new connection')
	prepared:run('twice', 1)
	t.is(inits, 1, 'once per connection')
	prepared:close()
	-- an init that raises: its connection is closed, its place given back, the error goes on
	local inits2, thrown, first = 0, {}, nil
	local raising = postgres.pool(conninfo, { size = 1, timeout = 5, init = function(db)
		inits2 = inits2 + 1
		if inits2 == 1 then first = db assert(db:query('select * from no_such_table')) end
		if inits2 == 2 then error(thrown) end
		return true
	end })
	local waited
	utils.spawn(function() waited = { pcall(raising.get, raising) } end)   -- waits for the place
	ok, e = pcall(raising.get, raising)
	t.like(tostring(e), 'no_such_table', 'an init that raises: get raises its error')
	t.is(first:status(), 'closed', 'the connection it ran on is closed')
	t.same({ raising:count() }, { 1, 0, 0 }, 'its place goes to the waiter')
	for _ = 1, 500 do if waited then break end sleep(0.01) end
	t.ok(waited and waited[1] == false and waited[2] == thrown,
		'whose init raises a value that is not a string: it goes on as it is')
	t.same({ raising:count() }, { 0, 0, 0 }, 'and gives the place back')
	local again = raising:get(5)
	t.is(again and again:query('select 1 as x')[1].x, 1, 'the next get connects in it')
	t.same({ raising:count() }, { 1, 0, 0 }, 'one connection, lent')
	raising:put(again)
	raising:close()
	t.error(function() postgres.pool(conninfo, { size = 0 }) end, 'size', 'a bad size raises')
	t.error(function() postgres.pool() end, "bad argument #1 to 'pool'", 'a pool without conninfo raises')
	local counts = { pool:count() }
	t.error(function() postgres.pool(conninfo .. '\0') end, "postgres%.lua:%d+: bad argument #1 to 'pool' %(zero byte",
		'a pool\'s connection string with a zero byte raises')
	t.error(function() pool:query('select $1::text', 'a\0') end,
		"postgres%.lua:%d+: bad argument #2 to 'query' %(zero byte in a text parameter", 'pool:query with a zero byte')
	t.error(function() pool:query('select 1\0') end, "postgres%.lua:%d+: bad argument #1 to 'query' %(zero byte in SQL",
		'pool:query: in its SQL')
	t.error(function() pool:run('by\0id') end, "postgres%.lua:%d+: bad argument #1 to 'run' %(zero byte",
		'pool:run: in its name')
	t.same({ pool:count() }, counts, 'no connection taken by them')
	local busy = pool:get()
	local running
	utils.spawn(function() running = { busy:query('select pg_sleep(0.3)') } end)
	utils.yield()
	local lent = pool:count()
	pool:put(busy)
	t.is(busy:status(), 'closed', 'a connection put back while it runs a request is closed')
	t.is(pool:count(), lent - 1, '... its place free')
	t.eventually(function() return running end, 2)
	t.same(running, { nil, 'closed' }, '... and its request returns nil, closed')
	pool:close()
	t.same({ pool:count() }, { 0, 0, 0 }, 'close closes the idle connections')
	t.same({ pool:with(function() return 1 end) }, { nil, 'closed' }, 'with on a closed pool: nil, closed')
	t.same({ pool:query('select 1') }, { nil, 'closed' }, 'query on a closed pool: nil, closed')
	t.same({ pool:pipeline(function() end) }, { nil, 'closed' }, 'pipeline on a closed pool: nil, closed')
end

-- ---- the server killed mid-query, then back ----
local killed
local idle = assert(connect())
utils.spawn(function() killed = { db:query('select pg_sleep(10)') } end)
utils.spawn(function() db2:notification(10) end)   -- a listener sees it too
sleep(0.1)
t0 = utils.now()
pg(bin .. '/pg_ctl -D ' .. data .. ' -m immediate -w stop')
for _ = 1, 300 do if killed then break end sleep(0.01) end
t.ok(killed, 'the query returns when the server dies')
t.is(killed and killed[1], nil, 'with nil')
local why = killed and killed[2] or ''
t.ok(why:find('server closed the connection') or why:find('terminat'), 'and a clear message: ' .. why)
n, msg = db:query('select 1')
t.is(n, nil, 'a query on the lost connection fails')
t.ok(msg, 'with a message: ' .. tostring(msg))
n, msg = idle:query('select 1')
t.is(n, nil, 'a query on a connection that was idle when the server died fails')
t.ok(msg, 'with a message: ' .. tostring(msg))
n, msg = idle:pipeline(function(p) p:query('select 1') end)
t.is(n, nil, 'so does a pipeline'); t.ok(msg, 'with a message: ' .. tostring(msg))
n, msg = idle:notification(1)
t.is(n, nil, 'and a notification'); t.ok(msg, 'with a message: ' .. tostring(msg))
n, msg = connect()
t.is(n, nil, 'connect while the server is down fails')
ok, why = start()
t.ok(ok, 'the server starts again', why)
db = connect()
t.ok(db, 'reconnect after the restart')
t.is(db and db:query('select count(*)::int as n from t')[1].n, 4, 'the data is there')
db:close()

end
local ran, failure = pcall(main)
t.ok(ran, 'the tests ran to their end', tostring(failure))
pg(bin .. '/pg_ctl -D ' .. data .. ' -m fast -w stop')
t.done()
