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

const char *io_strerror(int err, char buf[128])
{
	const char *msg;

	switch (err) {
	case EPIPE:
		return "closed";                  /* the peer is gone: as a read would say */
	case ETIMEDOUT:
		return "timeout";                 /* as our own timers and utils' sleepers say */
	case ENOMEM:
		return "not enough memory";       /* as Lua says, and a string it keeps made */
	case IO_ELINE:
		return "line too long";
	case IO_ETOOLONG:
		return "too long";
	}
	msg = strerror_r(err, buf, 128);
	if (msg != buf) {
		strncpy(buf, msg, 127);
		buf[127] = '\0';
	}
	/* "Connection refused" but not "IO error" or "TCP..." */
	if (isupper((unsigned char)buf[0]) && !isupper((unsigned char)buf[1]))
		buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}

void io_pusherror(lua_State *T, int err)
{
	char buf[128];

	lua_pushstring(T, io_strerror(err, buf));
}

int io_error(lua_State *T, int err)
{
	lua_pushnil(T);
	io_pusherror(T, err);
	return 2;
}

/* ---- values made in a watcher's callback ----
 * A callback runs outside every coroutine: an error raised there (out of memory while a
 * string is made on the loop's main state) finds no protected call and ends the process.
 * So callbacks make their values in a protected call on a thread of lem.io's own, one
 * per loop, which never runs Lua, and move them to where they go. When that fails the
 * waiting coroutine gets nil and the error instead: 'not enough memory', a string Lua
 * keeps made, which moving never allocates. */

static const char scratch_key = 0;   /* registry[&scratch_key]: the scratch thread */
static const char protect_key = 0;   /* registry[&protect_key]: protect_call */

lua_State *io_scratch(lua_State *T)
{
	lua_State *S;

	lua_pushlightuserdata(T, (void *)&scratch_key);
	lua_rawget(T, LUA_REGISTRYINDEX);
	S = lua_tothread(T, -1);
	lua_pop(T, 1);
	return S;
}

struct protect {
	int (*push)(lua_State *S, void *ud);
	void *ud;
};

static int protect_call(lua_State *S)
{
	struct protect *p = lua_touserdata(S, 1);

	return p->push(S, p->ud);
}

/* [-0, +n|+2, -] Runs push(S, ud), which pushes n values on S, in protected mode, and
 * moves them onto `to`, another thread of the loop (loop->L, a coroutine). Returns n; or -1
 * when push raised, with nil and the error message (two values) on `to`. protect_call
 * is made once and called with lua_pcall: lua_cpcall would make a closure every time. */
int io_protect(lua_State *S, lua_State *to, int (*push)(lua_State *S, void *ud), void *ud)
{
	struct protect p = { push, ud };
	int top = lua_gettop(S), n;

	lua_pushlightuserdata(S, (void *)&protect_key);
	lua_rawget(S, LUA_REGISTRYINDEX);
	lua_pushlightuserdata(S, &p);
	if (lua_pcall(S, 1, LUA_MULTRET, 0) == 0) {
		n = lua_gettop(S) - top;
		lua_xmove(S, to, n);             /* moving allocates nothing */
		return n;
	}
	lua_pushnil(to);
	lua_xmove(S, to, 1);                 /* the error message */
	return -1;
}

static int push_msg(lua_State *S, void *msg)
{
	lua_pushnil(S);
	lua_pushstring(S, msg);
	return 2;
}

/* Wakes the caller with nil, msg (made protected). Returns what io_wake does. */
int io_wake_msg(lem_loop *loop, lua_State *S, struct io_wait *iw, const char *msg)
{
	io_protect(S, loop->L, push_msg, (void *)msg);
	return io_wake(loop, iw, 2);
}

/* Wakes the caller with nil and the message of err, an errno or IO_E*. */
int io_wake_error(lem_loop *loop, lua_State *S, struct io_wait *iw, int err)
{
	char buf[128];

	return io_wake_msg(loop, S, iw, io_strerror(err, buf));
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
	if (!io_scratch(L)) {                 /* once per loop: streams keep a pointer to it */
		lua_pushlightuserdata(L, (void *)&protect_key);
		lua_pushcfunction(L, protect_call);
		lua_rawset(L, LUA_REGISTRYINDEX);
		lua_pushlightuserdata(L, (void *)&scratch_key);
		lua_newthread(L);
		lua_rawset(L, LUA_REGISTRYINDEX);
	}
	io_stream_open(L);
	lua_newtable(L);                      /* module */
	io_socket_open(L);
	io_std_open(L);
	return 1;
}
