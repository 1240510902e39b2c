-- The HTTP/1.1 head parser and chunked decoder (src/modules/http/parser.c): the C test
-- program (tests/c/http_parser_test.c, built by make test) prints TAP, relayed here. It
-- runs the unit tests, then every case of the smuggling corpus tests/http-corpus, then a
-- small benchmark whose figures come out as comments.
local t = require 'tap'

local bin = (os.getenv('LEM') or ''):match('^(.*)/[^/]*$')
bin = (bin or '.') .. '/tests/http_parser_test'
local corpus = (os.getenv('LEM_SOURCE') or '.') .. '/tests/http-corpus'

local st, out, err = t.run("'" .. bin .. "' '" .. corpus .. "'")
local plan, seen = nil, 0
for line in out:gmatch('[^\n]+') do
	local pass, name = line:match('^(n?o?t? ?ok) %d+ %- (.*)$')
	if pass then
		seen = seen + 1
		t.ok(pass == 'ok', name)
	elseif line:match('^1%.%.%d+$') then
		plan = tonumber(line:match('%d+$'))
	else
		io.write(line, '\n')   -- diagnostics and the benchmark's figures
	end
end
t.is(st, 0, 'the C test program exits 0' .. (err ~= '' and ': ' .. err or ''))
t.is(seen, plan, 'it ran its whole plan')
t.done()
