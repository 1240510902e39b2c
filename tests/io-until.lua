-- stream:read('*u', delimiter): the bytes up to and including a delimiter, bounded by
-- the stream's line limit; what follows stays buffered.
local t = require 'tap'
local utils = require 'lem.utils'

local a, b = t.tcp_pair()
a:write('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\n\r\nrest')
t.is(b:read('*u', '\r\n\r\n', 2), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'up to and including the delimiter')
t.is(b:read('u', '\r\n\r\n', 2), 'GET /2 HTTP/1.1\r\n\r\n', 'the next one from the buffer')
t.is(b:read(4, 2), 'rest', 'what follows stays buffered')

-- a delimiter split across writes, found once its last byte comes
utils.spawn(function()
	a:write('ab\nc\r\n\r')
	utils.sleeper():sleep(0.05)
	a:write('\ndef\nghi')
end)
t.is(b:read('*u', '\r\n\r\n', 2), 'ab\nc\r\n\r\n', 'a delimiter split across reads')
t.is(b:read('*l', 2), 'def', "then '*l' finds the next line")
t.is(select(2, b:read('*u', 'XY', 0)), 'timeout', 'no delimiter yet: timeout')
t.is(b:read('*l', 0.05), nil, "a '*l' after it does not skip data ('ghi' has no end yet)")
a:write('\n')
t.is(b:read('*l', 2), 'ghi', '... and finds its line')

-- the line limit bounds the data before the delimiter
b:limit(8)
a:write('12345678||123456789||')
t.is(b:read('*u', '||', 2), '12345678||', 'exactly the limit, then the delimiter')
t.is(select(2, b:read('*u', '||', 2)), 'line too long', 'one byte more: line too long')
t.is(b:read(11, 2), '123456789||', 'the data stays buffered')
a:write('0123456789')
t.is(select(2, b:read('*u', '||', 2)), 'line too long', 'no delimiter within the limit')
b:limit(65536)
t.is(b:read(10, 2), '0123456789', 'the data stays')

-- at the end, the rest without a delimiter, then closed
a:write('tail')
a:close()
t.is(b:read('*u', '\r\n', 2), 'tail', 'the rest at EOF')
t.is(select(2, b:read('*u', '\r\n', 2)), 'closed', 'then closed')
b:close()

local c = t.tcp_pair()
t.error(function() c:read('*u') end, 'string expected', 'a delimiter is needed')
t.error(function() c:read('*u', '') end, '1 to 8 bytes', 'not empty')
t.error(function() c:read('*u', '123456789') end, '1 to 8 bytes', 'at most 8 bytes')
c:close()
t.done()
