-- pool.lua: postgres.pool, up to `size` connections shared by the coroutines of one
-- loop. pool.c builds it into lem.postgres and runs it with the module as its argument;
-- it returns postgres.pool.
--
-- A pool counts its connections, idle or lent or being made, in `open`. A coroutine that
-- finds none idle makes one while open < size; else it waits, first come first served,
-- on a sleeper in `waiters`, woken with a connection that comes back, or with `true`:
-- a connection was dropped, and its place is the waiter's to connect in.
local postgres = ...
local utils = require 'lem.utils'

local type, error, pcall, ipairs, select, setmetatable = type, error, pcall, ipairs, select, setmetatable
local remove, find = table.remove, string.find
local sleeper, now = utils.sleeper, utils.now

local Pool = {}
Pool.__index = Pool

local function usable(db)
	return db:status() == 'idle'
end

-- A place is free again: it goes to the first waiter, who connects in it.
local function release(pool)
	pool.open = pool.open - 1
	while pool.waiters[1] do
		if remove(pool.waiters, 1):wakeup(true) then   -- nil: it timed out meanwhile
			pool.open = pool.open + 1
			return
		end
	end
end

-- Connects in a place counted already; gives the place back when that fails, and
-- when init raises, before its error goes on (else the place were lost for good).
local function connect(pool, deadline)
	local db, err = postgres.connect(pool.conninfo, deadline and deadline - now())
	if db and pool.init then
		local ran, ok, why = pcall(pool.init, db)
		if not (ran and ok) then
			db:close()
			db, err = nil, why or 'init failed'
		end
		if not ran then
			release(pool)
			error(ok, 0)
		end
	end
	if db and pool.closed then
		db:close()
		db, err = nil, 'closed'
	end
	if not db then release(pool) end
	return db, err
end

-- pool:get([timeout]) --> db | nil, 'timeout' | nil, 'closed' | nil, message
function Pool:get(timeout)
	if timeout ~= nil and type(timeout) ~= 'number' then
		error("bad argument #1 to 'get' (number expected, got " .. type(timeout) .. ')', 2)
	end
	timeout = timeout or self.timeout
	local deadline = timeout and now() + timeout
	while not self.closed do
		local db = remove(self.idle)        -- the last one back: the warmest
		if db then
			if usable(db) then return db end
			db:close()
			self.open = self.open - 1
		elseif self.open < self.size then
			self.open = self.open + 1
			return connect(self, deadline)
		else
			local s = sleeper()
			self.waiters[#self.waiters + 1] = s
			local got, err = s:sleep(deadline and deadline - now())
			if got == true then return connect(self, deadline) end
			if got then return got end
			if err == 'timeout' then
				for i, w in ipairs(self.waiters) do
					if w == s then remove(self.waiters, i) break end
				end
				return nil, 'timeout'
			end
			-- false: the pool closed
		end
	end
	return nil, 'closed'
end

-- pool:put(db): db comes back; kept if it is idle and healthy, else closed and replaced.
function Pool:put(db)
	if self.closed or not usable(db) then
		db:close()
		release(self)
		return
	end
	while self.waiters[1] do
		if remove(self.waiters, 1):wakeup(db) then return end
	end
	self.idle[#self.idle + 1] = db
end

local function back(pool, db, ok, ...)
	pool:put(db)
	if not ok then error((...), 0) end
	return ...
end

-- pool:with(f, ...) --> f(db, ...)'s results | nil, why no connection came
-- db comes back when f returns or raises (the error goes on).
function Pool:with(f, ...)
	local db, err = self:get()
	if not db then return nil, err end
	return back(self, db, pcall(f, db, ...))
end

-- Raises, at the caller of pool:query or pool:run, what db:query or db:run would for
-- a string with a zero byte: raised inside with, the error would point here.
local function text(name, ...)
	for i = 1, select('#', ...) do
		local v = select(i, ...)
		if type(v) == 'string' and find(v, '\0', 1, true) then
			local what = i > 1 and 'a text parameter; use postgres.binary' or
				name == 'run' and "a statement's name" or 'SQL'
			error(("bad argument #%d to '%s' (zero byte in %s)"):format(i, name, what), 3)
		end
	end
end

function Pool:query(...)
	text('query', ...)
	return self:with(function(db, ...) return db:query(...) end, ...)
end

function Pool:run(...)
	text('run', ...)
	return self:with(function(db, ...) return db:run(...) end, ...)
end

function Pool:pipeline(f)
	return self:with(function(db) return db:pipeline(f) end)
end

-- pool:close(): its idle connections close now, lent ones when they come back; the
-- coroutines waiting get nil, 'closed'.
function Pool:close()
	self.closed = true
	for _, db in ipairs(self.idle) do db:close() end
	self.open = self.open - #self.idle
	self.idle = {}
	while self.waiters[1] do remove(self.waiters, 1):wakeup(false) end
	return true
end

-- pool:count() --> connections (idle, lent or being made), idle ones, waiting coroutines
function Pool:count()
	return self.open, #self.idle, #self.waiters
end

function Pool:__tostring()
	return ('postgres pool (%d/%d, %s)'):format(self.open, self.size,
		self.closed and 'closed' or 'open')
end

-- postgres.pool(conninfo [, { size = 4, timeout = seconds, init = function(db) end }])
return function(conninfo, opts)
	if type(conninfo) ~= 'string' then
		error("bad argument #1 to 'pool' (string expected, got " .. type(conninfo) .. ')', 2)
	end
	if find(conninfo, '\0', 1, true) then   -- (connect would raise in get, the place lost)
		error("bad argument #1 to 'pool' (zero byte in the connection string)", 2)
	end
	opts = opts or {}
	if type(opts) ~= 'table' then
		error("bad argument #2 to 'pool' (table expected, got " .. type(opts) .. ')', 2)
	end
	local size, timeout, init = opts.size or 4, opts.timeout, opts.init
	if type(size) ~= 'number' or size < 1 or size % 1 ~= 0 then
		error("bad argument #2 to 'pool' (size must be a whole number from 1)", 2)
	end
	if timeout ~= nil and (type(timeout) ~= 'number' or timeout ~= timeout) then
		error("bad argument #2 to 'pool' (timeout must be a number)", 2)
	end
	if init ~= nil and type(init) ~= 'function' then
		error("bad argument #2 to 'pool' (init must be a function)", 2)
	end
	return setmetatable({ conninfo = conninfo, size = size, timeout = timeout, init = init,
		open = 0, idle = {}, waiters = {} }, Pool)
end
