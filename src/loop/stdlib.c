/* stdlib.c: the functions of Lua's standard library that several loops, one per thread,
 * cannot share as they are.
 *
 * print writes each line in one call, so that the lines of loops printing at once never
 * cut into one another. PUC Lua's os.date formats through gmtime and localtime, whose
 * result lives in one static buffer for the whole process: two loops asking the date at
 * once may read each other's. This one uses gmtime_r and localtime_r (as LuaJIT's
 * does) and otherwise behaves as Lua 5.1's. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "loop.h"

static int lem_print(lua_State *L)
{
	int n = lua_gettop(L), i;
	luaL_Buffer b;

	lua_getglobal(L, "tostring");
	luaL_buffinit(L, &b);
	for (i = 1; i <= n; i++) {
		if (i > 1)    /* before the value is on the stack: a full buffer pushes a piece */
			luaL_addchar(&b, '\t');
		lua_pushvalue(L, n + 1);
		lua_pushvalue(L, i);
		lua_call(L, 1, 1);
		if (!lua_isstring(L, -1))
			return luaL_error(L, LUA_QL("tostring") " must return a string to " LUA_QL("print"));
		luaL_addvalue(&b);
	}
	luaL_addchar(&b, '\n');
	luaL_pushresult(&b);
	fwrite(lua_tostring(L, -1), 1, lua_objlen(L, -1), stdout);
	return 0;
}

#ifdef LEM_LUAJIT
/* Whether the deepest frame of T is the xpcall that runs the body of a coroutine of lem's
 * (sched.c): a frame of lem's, which tracebacks do not show. */
static int body_frame(lua_State *L, lua_State *T)
{
	lua_Debug ar;
	int lo = 0, hi = 1, r;

	if (!lua_getstack(T, 0, &ar))
		return 0;
	while (lua_getstack(T, hi, &ar))
		lo = hi, hi *= 2;
	while (hi - lo > 1) {          /* lo exists, hi does not */
		int mid = lo + (hi - lo) / 2;
		if (lua_getstack(T, mid, &ar))
			lo = mid;
		else
			hi = mid;
	}
	lua_getstack(T, lo, &ar);
	lua_getinfo(T, "f", &ar);
	lua_pushvalue(lem_current->H, LEM_XPCALL);
	lua_xmove(lem_current->H, T, 1);
	r = lua_rawequal(T, -1, -2);
	lua_pop(T, 2);
	return r;
}

/* debug.traceback([thread,] [message [, level]]), as LuaJIT's, without the frame of
 * lem's body xpcall at the bottom. */
static int traceback(lua_State *L)
{
	int arg = lua_isthread(L, 1);
	lua_State *T = arg ? lua_tothread(L, 1) : L;
	const char *msg = lua_tostring(L, arg + 1), *tb, *end;

	if (msg == NULL && lua_gettop(L) > arg) {
		lua_pushvalue(L, arg + 1);     /* a message that is not a string is returned */
		return 1;
	}
	luaL_traceback(L, T, msg, luaL_optint(L, arg + 2, T == L ? 1 : 0));
	if (body_frame(L, T)) {
		tb = lua_tostring(L, -1);
		if ((end = strrchr(tb, '\n')) != NULL && strstr(tb, "stack traceback:") < end)
			lua_pushlstring(L, tb, (size_t)(end - tb));
	}
	return 1;
}
#endif

#ifndef LEM_LUAJIT
static void setfield(lua_State *L, const char *key, int value)
{
	lua_pushinteger(L, value);
	lua_setfield(L, -2, key);
}

/* os.date([format [, time]]) */
static int os_date(lua_State *L)
{
	const char *s = luaL_optstring(L, 1, "%c");
	time_t t = luaL_opt(L, (time_t)luaL_checknumber, 2, time(NULL));
	struct tm tm, *stm;

	if (*s == '!') {
		stm = gmtime_r(&t, &tm);
		s++;
	} else {
		stm = localtime_r(&t, &tm);
	}
	if (stm == NULL) {                      /* a time that cannot be represented */
		lua_pushnil(L);
	} else if (strcmp(s, "*t") == 0) {
		lua_createtable(L, 0, 9);
		setfield(L, "sec", stm->tm_sec);
		setfield(L, "min", stm->tm_min);
		setfield(L, "hour", stm->tm_hour);
		setfield(L, "day", stm->tm_mday);
		setfield(L, "month", stm->tm_mon + 1);
		setfield(L, "year", stm->tm_year + 1900);
		setfield(L, "wday", stm->tm_wday + 1);
		setfield(L, "yday", stm->tm_yday + 1);
		lua_pushboolean(L, stm->tm_isdst);
		lua_setfield(L, -2, "isdst");
	} else {                                /* each conversion on its own, as 5.1 does */
		char cc[3] = { '%', 0, 0 };
		luaL_Buffer b;

		luaL_buffinit(L, &b);
		for (; *s; s++) {
			if (*s != '%' || s[1] == '\0') {
				luaL_addchar(&b, *s);
			} else {
				char buf[200];
				size_t n;

				cc[1] = *++s;
				n = strftime(buf, sizeof buf, cc, stm);
				luaL_addlstring(&b, buf, n);
			}
		}
		luaL_pushresult(&b);
	}
	return 1;
}
#endif

void lem_stdlib_open(lua_State *L)
{
	lua_register(L, "print", lem_print);
#ifdef LEM_LUAJIT
	lua_getglobal(L, "debug");
	lua_pushcfunction(L, traceback);
	lua_setfield(L, -2, "traceback");
	lua_pop(L, 1);
#else
	lua_getglobal(L, "os");
	lua_pushcfunction(L, os_date);
	lua_setfield(L, -2, "date");
	lua_pop(L, 1);
#endif
}
