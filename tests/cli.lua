-- The lem command: options, arg, exit statuses, messages, shebang, stdin, LUA_INIT.
local t = require 'tap'
local lem = t.lem
local tmpdir = t.tmpdir()
local function script(name, text, mode) return t.file(tmpdir, name, text, mode) end

local st, out, err

-- arg and ...
local args = script('args.lua', [[
print(arg[0], arg[1], arg[2], #arg, select('#', ...), ...)
print(arg[-1], arg[-2], arg[-3])
]])
st, out = t.run(lem .. ' -e "x=1" ' .. args .. ' a "b c"')
t.is(st, 0, 'a script runs, status 0')
local l1, l2 = out:match('([^\n]*)\n([^\n]*)\n')
t.is(l1, args .. '\ta\tb c\t2\t2\ta\tb c', 'arg[0] is the script, arg[1..] and ... the arguments')
t.like(l2, '^x=1\t%-e\t.*lem', 'the interpreter and its options sit at negative indices')

-- -e, -l, order of steps, LUA_INIT
st, out = t.run(lem .. [[ -e "io.write('e1 ')" -l lem.utils -e "io.write(package.loaded['lem.utils'] and 'loaded ' or 'no ')" -e "print('e3')"]])
t.is(out, 'e1 loaded e3\n', '-e and -l run in order')
st, out = t.run([[LUA_INIT="io.write('init ')" ]] .. lem .. [[ -e "print('e')"]])
t.is(out, 'init e\n', 'LUA_INIT runs first')
local initf = script('init.lua', "io.write('initfile ')")
st, out = t.run('LUA_INIT=@' .. initf .. ' ' .. lem .. [[ -e "print('e')"]])
t.is(out, 'initfile e\n', 'LUA_INIT=@file runs the file')
st, out, err = t.run([[LUA_INIT="syntax error here" ]] .. lem .. [[ -e "print('e')"]])
t.is(st, 1, 'a bad LUA_INIT exits 1')
t.like(err, '^lem: LUA_INIT:1:', 'and says why')
st, out, err = t.run([[LUA_INIT="error('in init')" ]] .. lem .. [[ -e "print('e')"]])
t.ok(st == 1 and out == '' and err:find("^lem: LUA_INIT:1: in init\nstack traceback:\n"),
	'an error raised by LUA_INIT is an uncaught error, named LUA_INIT; nothing runs after it', err)
st, out, err = t.run(lem, "error('piped')")
t.ok(st == 1 and err:find("^lem: stdin:1: piped\nstack traceback:\n"), 'standard input is named stdin in messages', err)
st, out = t.run(lem .. [[ -e"print('attached')"]])
t.is(out, 'attached\n', '-e with its chunk attached')
st, out = t.run(lem .. [[ -llem.utils -e "print(package.loaded['lem.utils'] ~= nil)"]])
t.is(out, 'true\n', '-l with its name attached')

-- the steps are coroutines: they can suspend
st, out = t.run(lem .. [[ -e "local u = require 'lem.utils'; u.sleeper():sleep(0.01); print('slept')"]])
t.is(out, 'slept\n', '-e chunks run in a coroutine and may suspend')

-- -v, -h
st, out = t.run(lem .. ' -v')
t.is(st, 0, '-v exits 0')
t.like(out, '^lem %d+%.%d+%.%d+ %((Lua[^,]*), libev %d+%.%d+%)\n$', '-v prints the version')
st, out = t.run(lem .. ' --version -e "print(1)"')
t.like(out, '^lem .*\n1\n$', '--version then runs the rest')
st, out, err = t.run(lem .. ' -h')
t.is(st, 0, '-h exits 0')
t.like(out, '^usage: lem %[options%] %[script %[args%]%]', '-h prints usage on stdout')
t.is(err, '', '... and nothing on stderr')
st, out, err = t.run(lem .. [[ -e "print('ran')" -h]])
t.ok(st == 0 and out:find('^usage: lem') and not out:find('ran') and err == '', '-h after a chunk: usage, nothing runs')
st, out = t.run(lem .. ' --help')
t.like(out, '^usage:', '--help too')
t.like(out, '%-%-shutdown%-timeout S\n +seconds the loops have to end', '--help names --shutdown-timeout')
t.like(out, "%-%-mailbox N +messages a loop's mailbox holds before send says 'full'\n +%(1 to 16777216; default 65536%)\n",
	"--help gives --mailbox's range, as it gives the others'")

-- bad command lines: usage on stderr, status 1
st, out, err = t.run(lem .. ' -x')
t.is(st, 1, 'unknown option exits 1')
t.like(err, "^lem: unrecognized option '%-x'\nusage: lem", 'and prints the reason and usage on stderr')
t.is(out, '', 'nothing on stdout')
st, out, err = t.run(lem .. ' -ve')
t.ok(st == 1 and err:find("^lem: unrecognized option '%-ve'\nusage: lem"), 'options cannot be combined: -ve is unknown', err)
st, out, err = t.run(lem .. ' -i')
t.is(st, 1, '-i (no REPL) exits 1')
t.like(err, "^lem: '%-i': lem has no interactive mode\nusage: lem", '... saying why, not just that it is unknown')
st, out, err = t.run(lem .. ' -e')
t.is(st, 1, '-e without a chunk exits 1')
t.like(err, "^lem: '%-e' needs an argument\nusage:", 'and says so')
st, out, err = t.run(lem .. ' -l')
t.like(err, "^lem: '%-l' needs an argument", '-l without a name')
for _, o in ipairs { '--loops', '--mailbox', '--shutdown-timeout', '--warn-blocking' } do
	st, out, err = t.run(lem .. ' ' .. o)
	t.ok(st == 1 and err:find("^lem: '" .. o:gsub('%-', '%%-') .. "' needs an argument\nusage: lem"),
		o .. ' at the end of the command line needs an argument, as -e does: the usage, status 1', err)
end
st, out, err = t.run(lem .. ' --loopz 3')
t.is(st, 1, 'unknown long option exits 1')
for _, v in ipairs { 'x', '-1', '', '1e7', 'inf', 'nan', '2s' } do
	st, out, err = t.run(lem .. " --shutdown-timeout '" .. v .. "' -e 'print(1)'")
	t.ok(st == 1 and out == '' and err == "lem: --shutdown-timeout expects a number of seconds from 0 to 1000000, got '" .. v .. "'\n",
		("--shutdown-timeout '%s' is refused, status 1"):format(v), err)
end
for _, v in ipairs { '0', '0.5', '30', '=2.5' } do
	st, out = t.run(lem .. ' --shutdown-timeout' .. (v:find('^=') and v or ' ' .. v) .. " -e 'print(1)'")
	t.ok(st == 0 and out == '1\n', ('--shutdown-timeout%s%s is taken'):format(v:find('^=') and '' or ' ', v))
end

-- missing, unreadable, syntax error
st, out, err = t.run(lem .. ' ' .. tmpdir .. '/nonexistent.lua')
t.is(st, 1, 'a missing script exits 1')
t.like(err, '^lem: cannot open .*nonexistent%.lua', 'lem: <message>')
local unreadable = script('unreadable.lua', 'print(1)', '000')
if os.execute('test -r ' .. unreadable) ~= 0 then
	st, out, err = t.run(lem .. ' ' .. unreadable)
	t.is(st, 1, 'an unreadable script exits 1')
	t.like(err, '^lem: cannot .*unreadable%.lua', 'and says so')
else
	t.skip('an unreadable script exits 1', 'running as root reads any file')
	local dir = script('dir.lua', '')
	os.remove(dir); os.execute('mkdir ' .. dir)
	st, out, err = t.run(lem .. ' ' .. dir)
	t.ok(st == 1 and err:find('^lem: cannot read'), 'a directory as script: ' .. err)
end
local bad = script('syntax.lua', 'x = = 1')
st, out, err = t.run(lem .. ' ' .. bad)
t.is(st, 1, 'a syntax error exits 1')
t.like(err, "^lem: .*syntax%.lua:1: unexpected symbol near '='\n$", 'lem: <message>, no traceback')
st, out, err = t.run(lem .. ' -e "x = = 1"')
t.like(err, "^lem: %(command line%):1:", 'syntax error in -e')
st, out, err = t.run(lem .. ' -l no.such.module')
t.is(st, 1, '-l of a missing module exits 1')
t.like(err, "^lem: module 'no%.such%.module' not found", 'and says which')
-- every chunk is compiled before the first step runs; a -l fails when its step runs
st, out, err = t.run(lem .. [[ -e "print('ran')" ]] .. bad)
t.ok(st == 1 and out == '' and err:find("^lem: .*syntax%.lua:1: unexpected symbol"), 'a syntax error in the script: the -e before it does not run', err)
st, out, err = t.run(lem .. [[ -e "print('ran')" ]] .. tmpdir .. '/nonexistent.lua')
t.ok(st == 1 and out == '' and err:find('^lem: cannot open'), 'a missing script: the -e before it does not run', err)
st, out, err = t.run(lem .. [[ -e "print('before')" -l no.such.module -e "print('after')"]])
t.ok(st == 1 and out == 'before\n' and err:find("^lem: module 'no%.such%.module' not found"),
	'a missing -l fails in its step: the steps before it ran, those after not', err)
st, out, err = t.run('LUA_INIT=@' .. tmpdir .. [[/nonexistent-init.lua ]] .. lem .. [[ -e "print('ran')"]])
t.ok(st == 1 and out == '' and err:find('^lem: cannot open .*nonexistent%-init%.lua'), 'a missing LUA_INIT file: status 1, nothing runs', err)
st, out, err = t.run(lem .. [[ --loops 3 -e "x = = 1"]])
t.ok(st == 1 and err == "lem: (command line):1: unexpected symbol near '='\n", 'a syntax error with --loops 3: reported once, as lem:', err)

-- uncaught errors: message, traceback, status 1, from any coroutine
st, out, err = t.run(lem .. [[ -e "error('top')"]])
t.is(st, 1, 'an uncaught error exits 1')
t.like(err, "^lem: %(command line%):1: top\nstack traceback:\n", 'lem: <message> and a traceback')
local spawned = script('spawned.lua', [[
local utils = require 'lem.utils'
local function deep() error('in a spawned coroutine') end
utils.spawn(function() utils.yield(); deep() end)
utils.sleeper():sleep(5)
print('never')
]])
st, out, err = t.run(lem .. ' ' .. spawned)
t.is(st, 1, 'an error in a spawned coroutine exits 1 at once')
t.is(out, '', 'nothing else ran')
t.like(err, "^lem: .*spawned%.lua:2: in a spawned coroutine\nstack traceback:\n.*in function 'deep'", 'traceback names the function')
st, out, err = t.run(lem .. [[ -e "error(42)"]])
t.like(err, '^lem: %(command line%):1: 42\nstack traceback:\n', 'a number as the error value')
st, out, err = t.run(lem .. [[ -e "error({})"]])
t.like(err, '^lem: %(error object is a table value%)', 'a non-string error value')
st, out, err = t.run(lem .. [[ -e "error(setmetatable({}, {__tostring = function() return 'custom' end}))"]])
t.like(err, '^lem: custom', 'an error object with __tostring')
st, out, err = t.run(lem .. [[ -e "require('lem.utils').timer(0.01, function() error('from a timer') end)"]])
t.ok(st == 1 and err:find('from a timer'), 'an error in a timer coroutine exits 1')

-- exit statuses
st = t.run(lem .. [[ -e "require('lem.utils').exit(7)"]])
t.is(st, 7, 'utils.exit(7) exits 7')
st = t.run(lem .. [[ -e "require('lem.utils').exit()"]])
t.is(st, 0, 'utils.exit() exits 0')
st = t.run(lem .. [[ -e "require('lem.utils').exit(false)"]])
t.is(st, 1, 'utils.exit(false) exits 1')
-- the system keeps the low 8 bits; a fraction is truncated
for _, c in ipairs { { 'true', 0 }, { 'nil', 0 }, { '256', 0 }, { '-1', 255 }, { '2.7', 2 }, { '-2.7', 254 } } do
	st = t.run(lem .. [[ -e "require('lem.utils').exit(]] .. c[1] .. [[)"]])
	t.is(st, c[2], ('utils.exit(%s) exits %d'):format(c[1], c[2]))
end
for _, v in ipairs { '1e300', '-1e300' } do   -- whole multiples of 256
	st, out, err = t.run(lem .. [[ -e "require('lem.utils').exit(]] .. v .. [[)"]])
	t.ok(st == 0 and err == '', ('utils.exit(%s) exits 0: its low 8 bits'):format(v), err)
end
for _, v in ipairs { '0/0', '1/0', '-1/0' } do
	st, out, err = t.run(lem .. [[ -e "require('lem.utils').exit(]] .. v .. [[)"]])
	t.ok(st == 1 and err:find("^lem: %(command line%):1: bad argument #1 to 'exit' %(status is not a finite number%)\n"),
		('utils.exit(%s): no status, a bad argument'):format(v), err)
end
st, out, err = t.run(lem .. [[ -e "require('lem.utils').exit({})"]])
t.ok(st == 1 and err:find("^lem: %(command line%):1: bad argument #1 to 'exit' %(number expected, got table%)\n"),
	'utils.exit({}) raises a bad argument', err)
st, out = t.run(lem .. [[ -e "local u = require('lem.utils'); u.spawn(function() print('other') end); u.timer(1, function() print('late') end); u.exit(3); print('after')"]])
t.is(st, 3, 'exit stops the loop with pending work')
t.is(out, '', 'nothing runs after exit: not the rest, not the spawned, not the timer')
local gc = script('gc.lua', [[
local utils = require 'lem.utils'
local p = newproxy(true)
getmetatable(p).__gc = function() io.write('finalized\n') end
keep = p
utils.spawn(function() utils.exit(4) end)
]])
st, out = t.run(lem .. ' ' .. gc)
t.is(st, 4, 'exit from a spawned coroutine')
t.is(out, 'finalized\n', '__gc metamethods run at exit')
st, out = t.run(lem .. [[ -e "local u = require('lem.utils'); u.spawn(function() u.exit(5) end); u.spawn(function() u.exit(6) end)"]])
t.is(st, 5, 'the first exit wins')
st, out = t.run(lem .. [[ -e "local u = require('lem.utils'); u.spawn(function() u.sleeper():sleep(0.02); print('waited') end)"]])
t.is(out, 'waited\n', 'the process waits while a watcher is active')
t.is(st, 0, '... and exits 0 when nothing is left')
st, out = t.run(lem .. [[ -e "local u = require('lem.utils'); u.spawn(function() u.sleeper():sleep(); print('never') end); print('main')"]])
t.ok(st == 0 and out == 'main\n', 'a coroutine that can never be woken does not keep the process alive')

-- no script, no -e, and standard input a terminal: the usage on stderr, no reason, status 1
if os.execute('script -qec true /dev/null > /dev/null 2>&1 < /dev/null') == 0 then
	st, out = t.run("script -qec '" .. lem .. " 2>&1 >/dev/null; echo \"status $?\"' /dev/null < /dev/null")
	out = out:gsub('\r', '')
	t.ok(out:find('^usage: lem %[options%]') and out:find('\nstatus 1\n$'),
		'no script with a terminal for standard input: the usage on stderr, status 1', out)
else
	t.skip('no script with a terminal for standard input', 'no script(1) to make a terminal')
end
-- shebang and stdin
local exe = script('exe.lua', '#!/usr/bin/env lem\nprint("shebang", ...)\n', '755')
local bindir = os.getenv('LEM'):match('^(.*)/[^/]*$')
st, out = t.run('PATH=' .. tmpdir .. ':$PATH; ln -sf ' .. os.getenv('LEM') .. ' ' .. tmpdir .. '/lem; ' .. exe .. ' x')
t.is(out, 'shebang\tx\n', 'an executable script starting with #!/usr/bin/env lem runs')
st, out = t.run(lem .. ' - a b', 'print("stdin", arg[0], ...)')
t.is(out, 'stdin\t-\ta\tb\n', '- runs standard input with arguments')
st, out = t.run(lem, 'print("piped")')
t.is(out, 'piped\n', 'no script and a piped stdin: runs stdin')
st, out = t.run(lem .. ' -- ' .. args .. ' -x')
t.like(out, '^' .. args:gsub('%p', '%%%0') .. '\t%-x\t', '-- ends the options')
script('-', 'print("the file named -", ...)')
st, out = t.run('cd ' .. tmpdir .. ' && ' .. lem .. ' -- - a', 'print("stdin", ...)')
t.is(out, 'the file named -\ta\n', 'after --, - is the name of a file, as in lua')

-- modules: LUA_PATH, LUA_CPATH and Debian's paths
local moddir = tmpdir .. '/mods'
os.execute('mkdir -p ' .. moddir)
local mf = assert(io.open(moddir .. '/mymod.lua', 'w')); mf:write('return { v = 42 }'); mf:close()
st, out = t.run('LUA_PATH="' .. moddir .. '/?.lua;;" ' .. lem .. [[ -e "print(require('mymod').v)"]])
t.is(out, '42\n', 'LUA_PATH is honoured')
if os.execute('test -e /usr/lib/x86_64-linux-gnu/lua/5.1/lpeg.so -o -e /usr/lib/aarch64-linux-gnu/lua/5.1/lpeg.so') == 0 then
	st, out, err = t.run('env -u LUA_CPATH -u LUA_PATH ' .. lem .. [[ -e "print(type(require('lpeg').match))"]])
	t.is(out, 'function\n', "require 'lpeg' loads Debian's lua-lpeg: " .. err)
else
	t.skip("require 'lpeg' loads Debian's lua-lpeg", 'lua-lpeg is not installed')
end

-- SIGPIPE is caught: writing to a pipe whose reader has gone is an error, not a dead process
local sf = tmpdir .. '/pipe-status'
st, out = t.run(lem .. [[ -e "local f = io.popen('exec true', 'w'); f:setvbuf('no'); require('lem.utils').sleeper():sleep(0.1); local ok, err = f:write('x'); print(ok, err)"]])
t.is(out, 'nil\tBroken pipe\n', 'a write to a closed pipe returns an error (lem was not killed by SIGPIPE)')

-- ...except on standard output and error, as in lua: `lem gen.lua | head -1` ends
for _, w in ipairs { 'print(i)', 'io.write(i, string.char(10))', 'io.stderr:write(i, string.char(10))' } do
	local redir = w:find('stderr') and ' 2>&1 >/dev/null' or ''
	st, out = t.run('(timeout 20 ' .. lem .. ' -e "local i = 0 while true do i = i + 1 ' .. w .. ' end"' .. redir ..
		'; echo $? > ' .. sf .. ') | head -1; cat ' .. sf)
	t.is(out, '1\n141\n', w .. ' to a pipe whose reader has gone: killed by SIGPIPE (128 + 13), as lua is')
end
st, out = t.run('(timeout 20 ' .. lem .. ' --loops 2 -e "while true do print(1) end"; echo $? > ' .. sf .. ') | head -1; cat ' .. sf)
t.is(out, '1\n141\n', '... from a loop thread too')

-- ...but commands it starts get SIGPIPE as usual
st, out, err = t.run(lem .. [[ -e "os.execute('yes | head -1')"]])
t.is(out .. err, 'y\n', "os.execute('yes | head -1'): yes dies of SIGPIPE quietly, as from a shell")

-- closed standard descriptors: lem's own descriptors never take 0, 1 or 2
st, out, err = t.run('(' .. lem .. [[ -e "print('lost') io.stdout:flush() require('lem.utils').sleeper():sleep(0.1) io.stderr:write('on stderr\\n')" <&- >&-; echo "status $?")]])
t.is(out, 'status 0\n', 'stdout closed: print writes nowhere, lem exits 0')
t.is(err, 'on stderr\n', '... and stderr still works')
-- (the signal once lem runs the script: before, SIGTERM's default action gives 143 too)
local started = tmpdir .. '/started'
st, out = t.run('(' .. lem .. [[ --shutdown-timeout 0 -e "io.open(']] .. started .. [[', 'w'):close() require('lem.utils').sleeper():sleep(10)" <&- >&- & p=$!; ]] ..
	'i=0; while [ ! -e ' .. started .. ' ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; kill -TERM $p; wait $p; echo "status $?")')
t.is(out, 'status 143\n', 'stdin and stdout closed: SIGTERM still stops lem (143)')

-- a loop blocked in a call that no interrupt reaches (open of a FIFO without a writer)
-- does not keep the process alive once the others are stopped
local nowriter = tmpdir .. '/nowriter'
os.execute('mkfifo ' .. nowriter)
st, out, err = t.run('timeout -k 1 20 ' .. lem .. [[ --loops 2 -e "local u = require 'lem.utils'
	if require('lem.loops').id == 2 then io.open(']] .. nowriter .. [[') else u.sleeper():sleep(0.2) u.exit(3) end"]])
t.is(st, 3, 'utils.exit while another loop is blocked in C: lem exits with its status')
t.is(err, 'lem: loop 2 did not stop within 2 s (a call that no interrupt reaches); lem exits without it\n', '... and says which loop it left')
local blocked = tmpdir .. '/blocked'
st, out, err = t.run('(' .. lem .. [[ --shutdown-timeout 0 -e "io.open(']] .. blocked .. [[', 'w'):close() io.open(']] .. nowriter .. [[')" & p=$!; ]] ..
	'(sleep 20; kill -KILL $p) >/dev/null 2>&1 & k=$!; ' ..
	'i=0; while [ ! -e ' .. blocked .. ' ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; sleep 0.1; kill -TERM $p; wait $p; echo "status $?"; kill $k)')
t.is(out, 'status 143\n', 'SIGTERM while the main chunk is blocked in C: 143 once the deadline and the grace passed')
t.like(err, '^lem: loop 1 did not stop within 2 s', '... saying so')

-- the script is read once, in the main thread: every loop runs the same bytes
local each = 'local l = require "lem.loops"; io.write(l.id .. ":" .. tostring((...)) .. "\\n")'
local function ids(text)
	local got = {}
	for id, a in text:gmatch('(%d+):([^\n]*)') do got[#got + 1] = id .. a end
	table.sort(got)
	return table.concat(got, ' ')
end
st, out, err = t.run(lem .. ' --loops 4 - x', each)
t.is(ids(out), '1x 2x 3x 4x', '--loops 4 with the script on stdin: every loop runs it (' .. err .. ')')
st, out = t.run(lem .. ' --loops 3', each)
t.is(ids(out), '1nil 2nil 3nil', '--loops 3 with a piped stdin and no script')
local fifo = tmpdir .. '/fifo.lua'
os.execute('mkfifo ' .. fifo)
st, out, err = t.run('cat ' .. script('each.lua', each) .. ' > ' .. fifo .. ' & ' .. lem .. ' --loops 3 ' .. fifo .. ' y')
t.is(ids(out), '1y 2y 3y', '--loops 3 with a FIFO as the script: read once, every loop runs it (' .. err .. ')')
st, out, err = t.run('bash -c \'' .. lem .. ' --loops 2 <(echo "print(#arg)")\'')
t.is(out, '0\n0\n', 'a script from a process substitution (a pipe), in two loops')
st, out, err = t.run(lem .. ' ' .. tmpdir)
t.is(st, 1, 'a directory as the script exits 1')
t.like(err, '^lem: cannot read .*: Is a directory\n$', '... and says why')
local sheb = script('shebang-loops.lua', '#!/usr/bin/env lem\nlocal l = require "lem.loops"; if l.id == 2 then error("line 2") end')
st, out, err = t.run(lem .. ' --loops 2 ' .. sheb)
t.like(err, '^lem%[2%]: .*shebang%-loops%.lua:2: line 2', 'a shebang line is skipped and line numbers hold')

-- descriptors run out: a loop that cannot be made is a clear error, not an abort
st, out, err = t.run('ulimit -n 64 && ' .. lem .. ' --loops 40 -e "print(1)"')
t.is(st, 1, '--loops 40 with 64 descriptors exits 1')
t.like(err, '^lem: cannot start loop %d+: Too many open files\n$', '... naming the loop and the reason')
t.is(out, '', '... before any loop ran')
st, out, err = t.run('ulimit -n 64 && ' .. lem .. ' --loops 19 -e "print(1)"')
t.is(#out, 38, '3 descriptors a loop, 2 for the process: --loops 19 fits in 64 (' .. err .. ')')

t.done()
