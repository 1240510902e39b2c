-- api.lua: a small JSON API on lem.http, with a router and Debian's lua-cjson.
--   lem examples/api.lua [port [host]]       (default 8080 on 127.0.0.1)
--   curl http://127.0.0.1:8080/items
--   curl -X POST -d '{"name":"tea"}' http://127.0.0.1:8080/items
--   curl http://127.0.0.1:8080/items/1
--   curl -X PUT -d '{"name":"green tea"}' http://127.0.0.1:8080/items/1
--   curl -X DELETE http://127.0.0.1:8080/items/1
-- The items live in this process's memory (per loop with --loops N).
local http = require 'lem.http'
local cjson = require 'cjson'       -- apt-get install lua-cjson

local port = tonumber(arg[1]) or 8080
local host = arg[2] or '127.0.0.1'

-- The router: routes by method, each a path pattern whose captures (':name' segments)
-- become the handler's arguments after req and res.
local routes = {}
local function route(method, path, handler)
	local pattern = '^' .. path:gsub('[%-%.]', '%%%0'):gsub(':%w+', '([^/]+)') .. '$'
	routes[#routes + 1] = { method = method, pattern = pattern, handler = handler }
end

local function reply(res, status, value)
	res.headers['content-type'] = 'application/json'
	res:send(status, cjson.encode(value))
end

local function dispatch(req, res)
	local allowed = {}
	for _, r in ipairs(routes) do
		local captures = { req.path:match(r.pattern) }
		if captures[1] then
			-- HEAD is answered as GET: lem.http sends the head only
			if r.method == req.method or (r.method == 'GET' and req.method == 'HEAD') then
				return r.handler(req, res, unpack(captures))
			end
			allowed[#allowed + 1] = r.method
		end
	end
	if #allowed > 0 then
		res.headers.allow = table.concat(allowed, ', ')
		return reply(res, 405, { error = 'method not allowed' })
	end
	reply(res, 404, { error = 'not found' })
end

-- A JSON object from the request body, or nil after answering 400.
local function decode(req, res)
	local body = req:body()
	if not body then return nil end       -- lem.http answered already (413, 408, 400)
	local ok, value = pcall(cjson.decode, body)
	if not ok or type(value) ~= 'table' or type(value.name) ~= 'string' then
		reply(res, 400, { error = 'a JSON object with a "name" string expected' })
		return nil
	end
	return value
end

local items, next_id = {}, 1

route('GET', '/items', function(req, res)
	local list = {}
	for id = 1, next_id - 1 do
		if items[id] then list[#list + 1] = items[id] end
	end
	-- cjson encodes an empty table as {}: an empty list must still be one
	if #list == 0 then
		res.headers['content-type'] = 'application/json'
		return res:send(200, '[]')
	end
	reply(res, 200, list)
end)

route('POST', '/items', function(req, res)
	local v = decode(req, res)
	if not v then return end
	local item = { id = next_id, name = v.name }
	items[next_id], next_id = item, next_id + 1
	res.headers.location = '/items/' .. item.id
	reply(res, 201, item)
end)

route('GET', '/items/:id', function(req, res, id)
	local item = items[tonumber(id)]
	if not item then return reply(res, 404, { error = 'no item ' .. id }) end
	reply(res, 200, item)
end)

route('PUT', '/items/:id', function(req, res, id)
	local item = items[tonumber(id)]
	if not item then return reply(res, 404, { error = 'no item ' .. id }) end
	local v = decode(req, res)
	if not v then return end
	item.name = v.name
	reply(res, 200, item)
end)

route('DELETE', '/items/:id', function(req, res, id)
	if not items[tonumber(id)] then return reply(res, 404, { error = 'no item ' .. id }) end
	items[tonumber(id)] = nil
	res:send(204)
end)

local server = assert(http.listen(host, port, dispatch))
print(('api: listening on http://%s:%d/items'):format(host, server:port()))
io.stdout:flush()
