-- The layers, proved from the objects' symbols and the modules' includes:
-- runtime (src/runtime) -> modules (src/modules/*) -> include/lem.h <- loop core (src/loop).
local t = require 'tap'

local source = os.getenv('LEM_SOURCE') or '.'
local objs = (os.getenv('LEM') or 'lem'):gsub('/lem$', '') .. '/src'   -- beside the binary

-- The calls of lem.h, as tests/capi.lua reads them.
local api = {}
local header = assert(io.open(source .. '/include/lem.h')):read('*a')
for name in header:gmatch('\nLEM_API [^(]-([%w_]+)%(') do api[name] = true end

-- The layer of an object or a source file: 'loop', 'runtime' or 'modules/<m>'.
local function layer(path)
	return path:match('^(modules/[^/]+)/') or path:match('^([^/]+)/')
end

local function exists(path)
	local f = io.open(path)
	if f then f:close() end
	return f ~= nil
end

-- Every object's global symbols: defined[name] = its object, and each object's
-- undefined ones. Objects whose source is gone (a stale build) do not count.
local defined, undefined, layers = {}, {}, {}
local _, out = t.run('cd ' .. objs .. " && find loop runtime modules -name '*.o' | sort | xargs nm -A -g")
for obj, kind, name in out:gmatch('([^\n:]+%.o):%x*%s+(%a)%s+([^\n]+)') do
	if exists(source .. '/src/' .. obj:gsub('%.o$', '.c')) then
		layers[layer(obj)] = true
		if kind == 'U' or kind == 'w' or kind == 'v' then
			undefined[#undefined + 1] = { obj = obj, name = name }
		else
			defined[name] = obj
		end
	end
end
t.ok(layers.loop and layers.runtime and layers['modules/utils'],
	"lem's objects are found beside it, in each layer")

-- The object:symbol pairs where obj (of a layer matching pattern) uses a symbol of lem's
-- own objects that allowed(obj, where) refuses.
local function offending(pattern, allowed)
	local bad = {}
	for _, u in ipairs(undefined) do
		local where = defined[u.name]
		if layer(u.obj):find(pattern) and where and not allowed(u, where) then
			bad[#bad + 1] = u.obj .. ':' .. u.name .. ' (' .. where .. ')'
		end
	end
	return bad
end

local function none(bad, name, what)
	return t.ok(#bad == 0, name, (what or 'offending object:symbol (defined in)') .. ':\n' ..
		table.concat(bad, '\n'))
end

none(offending('^loop$', function(_, where) return layer(where) == 'loop' end),
	'src/loop uses no symbol of src/modules or src/runtime')

none(offending('^modules/', function(u, where)
	return api[u.name] or layer(where) == layer(u.obj)
end), "src/modules/<m> uses only its own symbols, lem.h's calls and outside libraries")

-- (src/runtime may use anything: it is the top.)

-- The modules' sources include lem.h, headers of their own folder, and system headers.
local _, files = t.run('cd ' .. source .. "/src && find modules -name '*.[ch]' | sort")
local bad, seen = {}, 0
for file in files:gmatch('[^\n]+') do
	local dir = file:match('^(.*)/')
	local n = 0
	for line in io.lines(source .. '/src/' .. file) do
		n = n + 1
		local open, name = line:match('^%s*#%s*include%s*([<"])([^>"]+)')
		local ok
		if open == '"' then
			ok = name == 'lem.h' or (not name:find('/') and exists(source .. '/src/' .. dir .. '/' .. name))
		elseif open == '<' then
			ok = not name:find('%.%.') and not name:find('^src/')
		else
			ok = true   -- not an include
		end
		if not ok then bad[#bad + 1] = file .. ':' .. n .. ': ' .. line end
		seen = seen + (open and 1 or 0)
	end
end
t.ok(seen > 0, "the modules' include lines are found")
none(bad, 'src/modules/<m> includes only "lem.h", its own headers and system headers',
	'offending file:line')
t.done()
