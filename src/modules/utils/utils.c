/* utils.c: lem.utils: spawn, yield, exit, now, and the module's table. */
#include <math.h>
#include <stdlib.h>
#include "utils.h"

int utils_typeerror(lua_State *T, int idx, const char *name)
{
	return luaL_typerror(T, idx, name);
}

/* utils.spawn(func, ...) --> true */
static int utils_spawn(lua_State *T)
{
	luaL_checktype(T, 1, LUA_TFUNCTION);
	lem_spawn(lem_loop_of(T), T, lua_gettop(T) - 1);
	lua_pushboolean(T, 1);
	return 1;
}

/* utils.yield() --> nothing, after the coroutines queued before it ran */
static int utils_yield(lua_State *T)
{
	return lem_yield(T, 0);
}

/* utils.onerror(f [, value]) | utils.onerror(): f(message, value) runs should the running
 * coroutine fail (lem_onerror) */
static int utils_onerror(lua_State *T)
{
	if (!lua_isnoneornil(T, 1))
		luaL_checktype(T, 1, LUA_TFUNCTION);
	lua_settop(T, 2);
	lem_onerror(T);
	return 0;
}

/* utils.exit([status]): status a number, or true (success) / false (failure). The system
 * keeps a number's low 8 bits, taken here without converting it to an integer type (a
 * double past its range would be undefined behaviour); NaN and infinities have none. */
static int utils_exit(lua_State *T)
{
	int status = EXIT_SUCCESS;
	lem_waiter w;

	if (lua_isboolean(T, 1))
		status = lua_toboolean(T, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
	else if (!lua_isnoneornil(T, 1)) {
		lua_Number n = luaL_checknumber(T, 1);

		if (!isfinite(n))
			luaL_argerror(T, 1, "status is not a finite number");
		status = (int)fmod(n, 256);   /* truncated toward 0, as a cast would */
	}
	lem_exit(lem_loop_of(T), status);
	if (!lem_suspendable(T))   /* the loop stops when control returns */
		return 0;
	return lem_suspend(T, &w, 0);   /* never woken */
}

/* utils.shutdown([seconds]) --> true | false (a shutdown or a stop began already)
 * Begins the shutdown of every loop, with its deadline in seconds (by default the
 * command line's --shutdown-timeout). */
static int utils_shutdown(lua_State *T)
{
	lua_Number seconds = -1;

	if (!lua_isnoneornil(T, 1)) {
		seconds = luaL_checknumber(T, 1);
		if (!(seconds >= 0))   /* NaN too */
			luaL_argerror(T, 1, "seconds must be a number, 0 or more");
	}
	lua_pushboolean(T, lem_shutdown(lem_loop_of(T), seconds));
	return 1;
}

/* utils.now() --> the loop's time in seconds */
static int utils_now(lua_State *T)
{
	lua_pushnumber(T, ev_now(lem_ev(lem_loop_of(T))));
	return 1;
}

/* Tells lem, at the shutdown's deadline, what the module still waits for. */
static int utils_hook(lem_loop *loop, int event, void *ud)
{
	struct utils *u = ud;

	(void)loop;
	return event == LEM_DEADLINE ? u->waits : 0;
}

/* utils.stats() --> a table of the loop's figures */
static int utils_stats(lua_State *T)
{
	lem_stats(lem_loop_of(T), T);
	return 1;
}

/* The module's figures, in utils.stats(). */
static void utils_stats_hook(lem_loop *loop, lua_State *T, void *ud)
{
	struct utils *u = ud;

	(void)loop;
	lua_pushinteger(T, u->sleeping);
	lua_setfield(T, -2, "parked_sleep");
	lua_pushinteger(T, u->timers);
	lua_setfield(T, -2, "timers");
}

/* The state's __gc, at lua_close: the ev_loop runs no more, its timers can go. */
static int utils_gc(lua_State *L)
{
	sleeper_free_timers(lua_touserdata(L, 1));
	return 0;
}

/* Sets name = a closure of f with the module's three upvalues, in the table at -4. */
static void setfuncs(lua_State *L, const luaL_Reg *r)
{
	for (; r->name; r++) {
		for (int i = 0; i < 3; i++)
			lua_pushvalue(L, -3);
		lua_pushcclosure(L, r->func, 3);
		lua_setfield(L, -5, r->name);
	}
}

/* A metatable for objects called name, with __index = a table of methods. */
static void newclass(lua_State *L, const char *name)
{
	lua_newtable(L);
	lua_pushstring(L, name);
	lua_setfield(L, -2, "__metatable");
	lua_newtable(L);
	lua_setfield(L, -2, "__index");
}

int luaopen_lem_utils(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "spawn", utils_spawn },
		{ "yield", utils_yield },
		{ "onerror", utils_onerror },
		{ "exit", utils_exit },
		{ "now", utils_now },
		{ "shutdown", utils_shutdown },
		{ "sleeper", sleeper_new },
		{ "timer", timer_new },
		{ "stats", utils_stats },
		{ NULL, NULL }
	};
	static const luaL_Reg sleeper[] = {
		{ "sleep", sleeper_sleep }, { "wakeup", sleeper_wakeup }, { NULL, NULL }
	};
	static const luaL_Reg timer[] = { { "cancel", timer_cancel }, { NULL, NULL } };
	struct utils *u;

	lua_newtable(L);                          /* the module */
	newclass(L, "sleeper");
	/* Timers have no __gc: a pending timer is anchored, so only lua_close can free one,
	 * and the ev_loop then goes without looking at its watchers. A finalizer per timer
	 * cost a quarter of what making one does. */
	newclass(L, "timer");
	u = lua_newuserdata(L, sizeof *u);        /* module, sleeper mt, timer mt, state */
	u->loop = lem_loop_of(L);
	u->free = u->all = u->spare = NULL;
	u->closed = 0;
	u->waits = 0;
	u->timers = u->sleeping = 0;
	u->sleeper_mt = lua_topointer(L, -3);
	u->timer_mt = lua_topointer(L, -2);
	lua_newtable(L);
	lua_pushcfunction(L, utils_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	/* The signal hook keeps u: it lives as long as the Lua state (once per opening). */
	lua_pushvalue(L, -1);
	luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushliteral(L, "timeout");
	u->timeout = luaL_ref(L, LUA_REGISTRYINDEX);
	if (lem_signal_hook_add(u->loop, utils_hook, u) < 0 ||
	    lem_stats_hook_add(u->loop, utils_stats_hook, u) < 0)
		return luaL_error(L, "not enough memory");

	setfuncs(L, funcs);
	lua_getfield(L, -3, "__index");           /* the sleepers' methods */
	lua_insert(L, -4);
	setfuncs(L, sleeper);
	lua_remove(L, -4);
	lua_getfield(L, -2, "__index");           /* the timers' methods */
	lua_insert(L, -4);
	setfuncs(L, timer);
	lua_remove(L, -4);
	lua_pop(L, 3);
	return 1;
}
