/* pcall.c: pcall and xpcall that a lem suspension can cross, for PUC Lua 5.1.
 *
 * PUC Lua 5.1 cannot yield across a C function, and its pcall is one. These versions run
 * the protected function in a coroutine of its own and pass lem's suspensions (and plain
 * coroutine.yield calls) up through the caller, which may itself be such a coroutine.
 * Error values come back unchanged. LuaJIT's own pcall and xpcall can be yielded across,
 * so that build keeps them. */
#include "loop.h"

#ifndef LEM_LUAJIT
static const char wrappers[] =
	"local step, yield = ...\n"
	"local function loop(h, co, done, ...)\n"
	"  if done then return ... end\n"
	"  return loop(h, step(h, co, yield(...)))\n"
	"end\n"
	"local select, error = select, error\n"
	"function pcall(...)\n"
	"  if select('#', ...) == 0 then error(\"bad argument #1 to 'pcall' (value expected)\", 2) end\n"
	"  return loop(nil, step(nil, nil, ...))\n"
	"end\n"
	"function xpcall(f, h)\n"
	"  if h == nil then error(\"bad argument #2 to 'xpcall' (value expected)\", 2) end\n"
	"  return loop(h, step(h, nil, f))\n"
	"end\n";
#endif

void lem_pcall_open(lua_State *L)
{
#ifdef LEM_LUAJIT
	(void)L;
#else
	if (luaL_loadbuffer(L, wrappers, sizeof wrappers - 1, "=[lem pcall]") != 0)
		lua_error(L);
	lua_pushcfunction(L, lem_sched_nested);
	lua_getglobal(L, "coroutine");
	lua_getfield(L, -1, "yield");
	lua_remove(L, -2);
	lua_call(L, 2, 0);
#endif
}
