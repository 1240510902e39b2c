-- The HTTP/1.1 head parser and chunked decoder (src/modules/http/parser.c): the C test
-- program (tests/c/http_parser_test.c, built by make test) prints TAP, relayed here. It
-- runs the unit tests, then every case of the smuggling corpus tests/http-corpus, then a
-- small benchmark whose figures come out as comments.
local t = require 'tap'

t.ctest('http_parser_test', "'" .. (os.getenv('LEM_SOURCE') or '.') .. "/tests/http-corpus'")
t.done()
