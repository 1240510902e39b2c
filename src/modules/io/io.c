/* io.c: lem.io, non-blocking TCP and Unix streams: the module table, error messages and
 * the bookkeeping of suspended callers shared by streams and listeners. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include "io.h"

/* ---- errors ----
 * Runtime failures come back as nil, message: strerror's text with a lower-case first
 * letter ("connection refused"), except where a word of our own says more. */

void io_pusherror(lua_State *T, int err)
{
	char buf[128];
	const char *msg;

	switch (err) {
	case EPIPE:
		lua_pushliteral(T, "closed");     /* the peer is gone: as a read would say */
		return;
	case ETIMEDOUT:
		lua_pushliteral(T, "timeout");    /* as our own timers and utils' sleepers say */
		return;
	}
	msg = strerror_r(err, buf, sizeof buf);
	if (msg != buf) {
		strncpy(buf, msg, sizeof buf - 1);
		buf[sizeof buf - 1] = '\0';
	}
	/* "Connection refused" but not "IO error" or "TCP..." */
	if (isupper((unsigned char)buf[0]) && !isupper((unsigned char)buf[1]))
		buf[0] = (char)tolower((unsigned char)buf[0]);
	lua_pushstring(T, buf);
}

int io_error(lua_State *T, int err)
{
	lua_pushnil(T);
	io_pusherror(T, err);
	return 2;
}

/* ---- suspended callers ----
 * A caller suspends with lem_wait, io_anchor_co, a watcher, then lem_yield. Nothing else
 * refers to its coroutine while it waits, so its anchor slot keeps it (and, through its
 * stack, the object) alive until io_wake or io_release. */

void io_anchor_co(lem_loop *loop, struct io_wait *iw)
{
	lua_pushthread(iw->w.co);
	lua_xmove(iw->w.co, loop->L, 1);
	iw->slot = lem_anchor(loop, loop->L);
	if (iw->slot == 0)            /* the loop is closing: no anchors, nobody to wake */
		iw->w.co = NULL;
}

/* Forgets the caller without waking it. */
void io_release(lem_loop *loop, struct io_wait *iw)
{
	lem_unanchor(loop, iw->slot);
	iw->slot = 0;
	iw->w.co = NULL;
}

/* Wakes the caller with the nargs values on top of loop->L. Returns 0 when the suspension
 * was stale (see lem_wake): the values are gone.
 *
 * The values are made on loop->L and moved, never pushed on the suspended coroutine
 * itself: an allocation there may run a finalizer on that coroutine's stack, and in PUC
 * Lua 5.1 the return from that call puts the stack base back to the suspended C
 * function's frame, which hides the suspension's token and makes the wake look stale. */
int io_wake(lem_loop *loop, struct io_wait *iw, int nargs)
{
	lem_waiter w = iw->w;
	int woken;

	woken = lem_wake(loop, &w, loop->L, nargs);
	io_release(loop, iw);               /* after: the runqueue anchors it now */
	return woken;
}

void io_class(lua_State *L, const char *name, lua_CFunction gc, lua_CFunction tostring,
              const char *label, const luaL_Reg *methods)
{
	luaL_newmetatable(L, name);
	lua_pushcfunction(L, gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, tostring);
	lua_setfield(L, -2, "__tostring");
	lua_newtable(L);
	for (const luaL_Reg *r = methods; r->name; r++) {
		lua_pushvalue(L, -2);
		lua_pushcclosure(L, r->func, 1);
		lua_setfield(L, -2, r->name);
	}
	lua_setfield(L, -2, "__index");
	lua_pushstring(L, label);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
}

int luaopen_lem_io(lua_State *L)
{
	io_stream_open(L);
	lua_newtable(L);                      /* module */
	io_socket_open(L);
	io_std_open(L);
	return 1;
}
