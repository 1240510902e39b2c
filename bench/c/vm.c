/* vm.c: the VM limit: the same workloads driven by lua_resume from C, with no event loop
 * and no runqueue beyond a ring of coroutines: what the Lua VM's own switch, spawn and
 * parked coroutine cost. Built against the same Lua library as lem.
 *   vm switch [k=100] [m=100000]     k coroutines each yield m times, resumed in a ring
 *   vm spawn [n=1000000] [batch=100] n empty functions in coroutines, batch at a time,
 *                                     finished coroutines reused
 *   vm parked [n=100000]             n coroutines resumed to a yield, anchored in a table
 *   vm pingpong [n=1000000]          bench/lem/pingpong.lua's two loops, with sleepers whose
 *                                     methods do no more than yield and mark the other
 *                                     coroutine runnable
 * Prints its phases and "result" lines like the Lua programs (bench/common.lua). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "common.h"

/* Worker bodies, compiled once; the coroutines call them with their arguments. */
static const char chunk[] =
	"local yield = coroutine.yield\n"
	"local ran = 0\n"
	"return function(m) for _ = 1, m do yield() end end,\n"  /* switch */
	"       function() ran = ran + 1 end,\n"                 /* spawn: counts, as lem's */
	"       function() yield() end,\n"                       /* parked */
	"       function() return ran end,\n"
	"       function(ping, pong, n)\n"                     /* pingpong: as lem's */
	"         for _ = 1, n do pong:sleep() ping:wakeup() end end,\n"
	"       function(ping, pong, n)\n"
	"         for _ = 1, n do pong:wakeup() ping:sleep() end end\n";

static lua_State *open(void)
{
	lua_State *L = luaL_newstate();

	if (!L) {
		fprintf(stderr, "vm: out of memory\n");
		exit(1);
	}
	luaL_openlibs(L);
	if (luaL_loadstring(L, chunk) != 0 || lua_pcall(L, 0, 6, 0) != 0) {
		fprintf(stderr, "vm: %s\n", lua_tostring(L, -1));
		exit(1);
	}
	return L;   /* stack: switch, spawn, parked, ran, pong body, ping body */
}

static void resume_ok(lua_State *co, int nargs, int want)
{
	int status = lua_resume(co, nargs);

	if (status != want) {
		fprintf(stderr, "vm: resume: %s\n", status > LUA_YIELD ? lua_tostring(co, -1) : "?");
		exit(1);
	}
}

static void bench_switch(long k, long m)
{
	lua_State *L = open();
	lua_State **ring = malloc(k * sizeof *ring);
	long i, live = k;
	double t0, c0, c1;

	lua_createtable(L, (int)k, 0);                  /* anchors the ring */
	t0 = now(); c0 = cpu();
	for (i = 0; i < k; i++) {
		ring[i] = lua_newthread(L);
		lua_rawseti(L, -2, (int)i + 1);
		lua_pushvalue(L, 1);
		lua_pushnumber(L, (lua_Number)m);
		lua_xmove(L, ring[i], 2);
	}
	/* The first resume starts each coroutine with its argument; each later one is a
	 * switch. Dead coroutines leave the ring. */
	for (i = 0; i < k; i++)
		if (lua_resume(ring[i], 1) != LUA_YIELD)
			ring[i] = NULL;
	while (live > 0) {
		live = 0;
		for (i = 0; i < k; i++) {
			if (!ring[i])
				continue;
			if (lua_resume(ring[i], 0) == LUA_YIELD)
				live++;
			else
				ring[i] = NULL;
		}
	}
	c1 = cpu();
	phase("run", now() - t0, c1 - c0);
	result("switches/s", (double)k * m / (c1 - c0));
	free(ring);
	lua_close(L);
}

static void bench_spawn(long n, long batch)
{
	lua_State *L = open();
	lua_State **pool = malloc(batch * sizeof *pool), **run = malloc(batch * sizeof *run);
	long i, j, npool = 0, nrun = 0;
	double t0, c0, c1;

	lua_newtable(L);                               /* 7: anchors every coroutine made */
	t0 = now(); c0 = cpu();
	for (i = 1; i <= n; i++) {
		lua_State *co;

		if (npool > 0) {
			co = pool[--npool];
		} else {
			co = lua_newthread(L);
			lua_rawseti(L, 7, (int)lua_objlen(L, 7) + 1);
		}
		lua_pushvalue(L, 2);
		lua_xmove(L, co, 1);
		run[nrun++] = co;
		if (i % batch == 0 || i == n) {
			for (j = 0; j < nrun; j++) {
				resume_ok(run[j], 0, 0);
				lua_settop(run[j], 0);     /* finished: as good as new */
				pool[npool++] = run[j];
			}
			nrun = 0;
		}
	}
	c1 = cpu();
	phase("run", now() - t0, c1 - c0);
	result("spawns/s", n / (c1 - c0));
	lua_pushvalue(L, 4);
	lua_call(L, 0, 1);
	if (lua_tonumber(L, -1) != n) {
		fprintf(stderr, "vm: not every spawned coroutine ran\n");
		exit(1);
	}
	free(pool);
	free(run);
	lua_close(L);
}

static void bench_parked(long n)
{
	lua_State *L = open();
	long i;
	double c0;

	lua_createtable(L, 0, 0);
	c0 = cpu();
	for (i = 1; i <= n; i++) {
		lua_State *co = lua_newthread(L);

		lua_rawseti(L, -2, (int)i);
		lua_pushvalue(L, 3);
		lua_xmove(L, co, 1);
		resume_ok(co, 0, LUA_YIELD);
	}
	phase("park", -1, cpu() - c0);
	result("rss", rss());
	lua_close(L);
}

/* pingpong: a sleeper is a table with a metatable, as lem's; [1] is the index of the
 * coroutine sleeping on it. The runqueue holds at most the two coroutines. */
static lua_State *pp_co[2];
static int pp_queue[2], pp_len;

static int pp_sleep(lua_State *T)
{
	lua_pushinteger(T, T == pp_co[1]);
	lua_rawseti(T, 1, 1);
	return lua_yield(T, 0);
}

static int pp_wakeup(lua_State *T)
{
	lua_rawgeti(T, 1, 1);
	if (!lua_isnil(T, -1)) {
		pp_queue[pp_len++] = (int)lua_tointeger(T, -1);
		lua_pushnil(T);
		lua_rawseti(T, 1, 1);
	}
	return 0;
}

static void bench_pingpong(long n)
{
	lua_State *L = open();
	double t0, c0, c1;

	lua_createtable(L, 0, 1);                      /* 7: the sleepers' metatable */
	lua_createtable(L, 0, 2);
	lua_pushcfunction(L, pp_sleep);
	lua_setfield(L, -2, "sleep");
	lua_pushcfunction(L, pp_wakeup);
	lua_setfield(L, -2, "wakeup");
	lua_setfield(L, -2, "__index");
	for (int i = 0; i < 2; i++) {
		pp_co[i] = lua_newthread(L);               /* 8, 9: pong, ping */
		lua_pushvalue(L, 5 + i);
		lua_xmove(L, pp_co[i], 1);
	}
	for (int i = 0; i < 2; i++) {                   /* 10, 11: the sleepers ping, pong */
		lua_createtable(L, 1, 0);
		lua_pushvalue(L, 7);
		lua_setmetatable(L, -2);
	}
	for (int i = 0; i < 2; i++) {
		lua_pushvalue(L, 10);
		lua_pushvalue(L, 11);
		lua_pushnumber(L, (lua_Number)n);
		lua_xmove(L, pp_co[i], 3);
	}
	t0 = now(); c0 = cpu();
	resume_ok(pp_co[0], 3, LUA_YIELD);              /* pong sleeps first */
	pp_queue[pp_len++] = 1;
	while (pp_len > 0) {
		lua_State *co = pp_co[pp_queue[0]];
		int first = co == pp_co[1] && lua_gettop(co) == 4;

		pp_queue[0] = pp_queue[1];
		pp_len--;
		if (lua_resume(co, first ? 3 : 0) > LUA_YIELD) {
			fprintf(stderr, "vm: resume: %s\n", lua_tostring(co, -1));
			exit(1);
		}
	}
	c1 = cpu();
	phase("run", now() - t0, c1 - c0);
	result("roundtrips/s", n / (c1 - c0));
	lua_close(L);
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "";

	if (strcmp(what, "switch") == 0) {
		long k = arg(argc, argv, "k", 100), m = arg(argc, argv, "m", 100000);
		printf("# switch (VM limit): k=%ld m=%ld\n", k, m);
		bench_switch(k, m);
	} else if (strcmp(what, "spawn") == 0) {
		long n = arg(argc, argv, "n", 1000000), batch = arg(argc, argv, "batch", 100);
		printf("# spawn (VM limit): batch=%ld n=%ld\n", batch, n);
		bench_spawn(n, batch);
	} else if (strcmp(what, "parked") == 0) {
		long n = arg(argc, argv, "n", 100000);
		printf("# parked (VM limit): n=%ld\n", n);
		bench_parked(n);
	} else if (strcmp(what, "pingpong") == 0) {
		long n = arg(argc, argv, "n", 1000000);
		printf("# pingpong (VM limit): n=%ld\n", n);
		bench_pingpong(n);
	} else {
		fprintf(stderr, "usage: vm switch|spawn|parked|pingpong [name=value...]\n");
		return 2;
	}
	return 0;
}
