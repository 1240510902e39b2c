-- The allocator of a loop's Lua state (src/loop/alloc.c): its C test program
-- (tests/c/alloc_test.c, built by make test) prints TAP, relayed here.
local t = require 'tap'

t.ctest('alloc_test')
t.done()
