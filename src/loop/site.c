/* site.c: where coroutines come from and what they do, for the report of an uncaught
 * error.
 *
 * lem_spawn records where the Lua code that called it was, and the report of an error
 * that ends the spawned coroutine says "spawned at file.lua:42". By default a site is a
 * number: the chunk's name, as an index into a table of the names seen (LEM_SOURCES),
 * and the line. Taking it costs a lua_getstack and a lua_getinfo("fl"); the name is
 * looked up only when the calling function is not one of the last seen (a small cache of
 * functions, which LEM_SOURCES anchors so that an address seen is never another
 * function's). With --debug a site is the place's traceback, and that of the coroutine
 * that spawned from there, up the chain: a string, anchored until its coroutine runs.
 *
 * A coroutine's site travels with it: in its runqueue entry while it is queued to start
 * or after a yield, in loop->site while it runs, and from its first suspension in
 * LEM_SITES, a table with weak keys (coroutine -> site). Most coroutines end without
 * suspending and never reach the table.
 *
 * What a coroutine does (lem_note: "handling a message from loop 3") holds for the run in
 * which a module said it, until the coroutine suspends. */
#include <string.h>
#include "loop.h"

#define SITE_DEBUG  LEM_SITE_DEBUG
#define LINE_BITS   LEM_SITE_LINE_BITS
#define MAX_SOURCES (1 << 16)   /* chunk names kept; a site past them is none */

/* [-0, +2, m] on H at start-up: LEM_SITES and LEM_SOURCES. */
void lem_site_open(lua_State *H)
{
	lua_newtable(H);
	lua_createtable(H, 0, 1);
	lua_pushliteral(H, "k");
	lua_setfield(H, -2, "__mode");
	lua_setmetatable(H, -2);
	lua_newtable(H);
}

/* The index of ar's chunk name in LEM_SOURCES (added if new), or 0 when there are too
 * many or no room on T; the function at ar is on top of T, and anchored in the cache
 * slot c. */
unsigned lem_site_learn(lem_loop *loop, lua_State *T, lua_Debug *ar, unsigned c)
{
	lua_State *H = loop->H;
	unsigned id;

	if (!lua_checkstack(T, 4))
		return 0;
	lua_pushvalue(T, -1);
	lua_getinfo(T, ">S", ar);
	lua_pushvalue(H, LEM_SOURCES);
	lua_xmove(H, T, 1);                       /* T: f, sources */
	lua_getfield(T, -1, ar->short_src);
	id = (unsigned)lua_tointeger(T, -1);
	lua_pop(T, 1);
	if (!id) {
		if (loop->nsources >= MAX_SOURCES) {
			lua_pop(T, 1);
			return 0;
		}
		id = ++loop->nsources;
		lua_pushstring(T, ar->short_src);
		lua_pushvalue(T, -1);
		lua_rawseti(T, -3, (int)id);
		lua_pushinteger(T, (lua_Integer)id);
		lua_rawset(T, -3);
	}
	lua_pushvalue(T, -2);
	lua_rawseti(T, -2, -(int)c - 1);         /* the cache's function, anchored */
	lua_pop(T, 1);
	loop->site_cache[c].fn = lua_topointer(T, -1);
	loop->site_cache[c].src = id;
	return id;
}

/* --debug: "spawned at file:line", the traceback from there and the spawning coroutine's
 * own site, anchored. */
lem_site lem_site_debug(lem_loop *loop, lua_State *T)
{
	int top = lua_gettop(T), slot;

	lua_checkstack(T, 8);
	lua_pushliteral(T, "spawned at ");
	luaL_where(T, 1);
	if (lua_objlen(T, -1) > 2) {              /* without its ": " */
		lua_pushlstring(T, lua_tostring(T, -1), lua_objlen(T, -1) - 2);
		lua_remove(T, -2);
	} else {
		lua_pop(T, 1);
		lua_pushliteral(T, "?");
	}
	lua_pushliteral(T, "\n");
#ifdef LEM_LUAJIT
	lem_loop_traceback(T, T, NULL, 1);
#else
	lua_pushcfunction(T, lem_pcall_traceback);
	lua_pushliteral(T, "");
	lua_pushinteger(T, 2);                    /* from the caller of T's C function */
	lua_call(T, 2, 1);
	lua_pushstring(T, lua_tostring(T, -1) + 1);
	lua_remove(T, -2);
#endif
	if (loop->running && lem_site_describe(loop, loop->running, T)) {
		lua_pushliteral(T, "\n");
		lua_insert(T, -2);
	}
	lua_concat(T, lua_gettop(T) - top);
	slot = lem_anchor(loop, T);
	return slot ? SITE_DEBUG | (lem_site)slot : 0;
}

void lem_site_push(lua_State *T)
{
	lem_loop *loop = lem_current;
	lem_site site = lem_site_at(loop, T);

	if (!site)
		lua_pushnil(T);
	else if (site & SITE_DEBUG) {
		lem_anchor_push(loop, T, (int)(site & ~SITE_DEBUG));
		lem_site_drop(loop, site);
	} else
		lua_pushlightuserdata(T, (void *)site);
}

/* [-0, +0, m] The site that lem_site_push's value at idx of T stands for. */
lem_site lem_site_of(lem_loop *loop, lua_State *T, int idx)
{
	int slot;

	if (lua_type(T, idx) == LUA_TLIGHTUSERDATA)
		return (lem_site)lua_touserdata(T, idx);
	if (lua_type(T, idx) != LUA_TSTRING)
		return 0;
	lua_pushvalue(T, idx);
	slot = lem_anchor(loop, T);
	return slot ? SITE_DEBUG | (lem_site)slot : 0;
}

/* [-0, +0, m] on T: the running coroutine is about to suspend: its site (loop->site) goes
 * to LEM_SITES, where a coroutine reused since then may have left another. */
void lem_site_keep(lem_loop *loop, lua_State *T)
{
	lem_site site = loop->site;

	lua_checkstack(T, 4);
	lua_checkstack(loop->running, 1);        /* T's caller, when T runs a pcall's body */
	lua_pushvalue(loop->H, LEM_SITES);
	lua_xmove(loop->H, T, 1);
	lua_pushthread(loop->running);
	lua_xmove(loop->running, T, 1);
	if (!site)
		lua_pushnil(T);
	else if (site & SITE_DEBUG)
		lem_anchor_push(loop, T, (int)(site & ~SITE_DEBUG));
	else
		lua_pushlightuserdata(T, (void *)site);
	lua_rawset(T, -3);
	lua_pop(T, 1);
	lem_site_drop(loop, site);
	loop->site = LEM_SITE_KEPT;
}

void lem_note(lua_State *T, const char *note, int arg)
{
	lem_loop *loop = lem_current;

	(void)T;
	loop->note = note;
	loop->note_arg = arg;
}

/* [-0, +(0|1), m] Pushes on L the description of where co was started ("spawned at ..."),
 * and returns 1; or returns 0 if lem does not know. co is the coroutine running now, or
 * the one run last (its site is loop->site unless kept), or a suspended one. */
int lem_site_describe(lem_loop *loop, lua_State *co, lua_State *L)
{
	lem_site site = loop->site;

	if (co != loop->site_co || site == LEM_SITE_KEPT) {
		lua_pushvalue(loop->H, LEM_SITES);
		lua_xmove(loop->H, L, 1);
		lua_pushthread(co);
		lua_xmove(co, L, 1);
		lua_rawget(L, -2);
		lua_remove(L, -2);
		if (lua_type(L, -1) == LUA_TSTRING)
			return 1;
		site = (lem_site)lua_touserdata(L, -1);
		lua_pop(L, 1);
	}
	if (!site)
		return 0;
	if (site & SITE_DEBUG) {
		lem_anchor_push(loop, L, (int)(site & ~SITE_DEBUG));
		return 1;
	}
	lua_pushvalue(loop->H, LEM_SOURCES);
	lua_xmove(loop->H, L, 1);
	lua_rawgeti(L, -1, (int)(site >> LINE_BITS));
	lua_pushfstring(L, "spawned at %s:%d", lua_tostring(L, -1),
	                (int)(site & ((1 << LINE_BITS) - 1)));
	lua_replace(L, -3);
	lua_pop(L, 1);
	return 1;
}
