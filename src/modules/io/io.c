/* io.c: lem.io, non-blocking TCP, TLS and Unix streams: the module table, error messages and
 * the bookkeeping of suspended callers shared by streams, listeners and connects. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include "io.h"

/* ---- errors ----
 * Runtime failures come back as nil, message: strerror's text with a lower-case first
 * letter ("connection refused"), except where a word of our own says more. */

_Static_assert(EAI_NONAME < 0, "io_eai expects getaddrinfo's codes to be negative");

/* getaddrinfo's failure gai (an EAI_ code) as an error: EAI_SYSTEM's errno, or the code
 * moved past IO_EAI. */
int io_eai(int gai, int syserr)
{
	if (gai == EAI_SYSTEM)
		return syserr ? -syserr : -EIO;
	return -(IO_EAI - gai);
}

/* The message of err, a negative errno or IO_E*. */
const char *io_strerror(int err, char buf[128])
{
	const char *msg;

	switch (-err) {
	case EPIPE:
		return "closed";                  /* the peer is gone: as a read would say */
	case ETIMEDOUT:
		return "timeout";                 /* as our own timers and utils' sleepers say */
	case EBUSY:
		return "busy";                    /* someone else waits on the object */
	case ENOMEM:
		return "not enough memory";       /* as Lua says, and a string it keeps made */
	case IO_ELINE:
		return "line too long";
	case IO_ETOOLONG:
		return "too long";
	}
	if (-err >= IO_EVERIFY) {
		return io_tls_strerror(err, buf);
	} else if (-err > IO_EAI) {
		snprintf(buf, 128, "%s", gai_strerror(IO_EAI + err));
	} else {
		msg = strerror_r(-err, buf, 128);
		if (msg != buf) {
			strncpy(buf, msg, 127);
			buf[127] = '\0';
		}
	}
	/* "Connection refused" but not "IO error" or "TCP..." */
	if (isupper((unsigned char)buf[0]) && !isupper((unsigned char)buf[1]))
		buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}

int io_error(lua_State *T, int err)
{
	char buf[128];

	lua_pushnil(T);
	lua_pushstring(T, io_strerror(err, buf));
	return 2;
}

/* ---- arguments ---- */

/* A timeout argument: -1 when none (wait as long as it takes), 0 for a negative one. */
lua_Number io_opttimeout(lua_State *T, int idx)
{
	lua_Number t;

	if (lua_isnoneornil(T, idx))
		return -1;
	t = luaL_checknumber(T, idx);
	if (t != t)
		luaL_argerror(T, idx, "timeout is not a number");
	return t < 0 ? 0 : t;
}

const struct io_type io_stream_type = {
	"stream", offsetof(struct io_stream, peer), offsetof(struct io_stream, type)
};
const struct io_type io_listener_type = {
	"listener", sizeof(struct io_listener), offsetof(struct io_listener, type)
};

/* [-0, +0, v] A method's self: raises "stream expected" (t's name) unless it is an
 * object of type t. A light userdata's length is 0: only a full userdata of the type's
 * size is looked into. */
void *io_check(lua_State *T, const struct io_type *t)
{
	char *p = lua_touserdata(T, 1);

	if (!p || lua_objlen(T, 1) < t->size || *(const struct io_type **)(p + t->at) != t)
		luaL_typerror(T, 1, t->name);
	return p;
}

void *io_check_open(lua_State *T, const struct io_type *t, size_t fd)
{
	char *p = io_check(T, t);

	if (*(int *)(p + fd) < 0)
		luaL_argerror(T, 1, lua_pushfstring(T, "closed %s", t->name));
	return p;
}

/* ---- values made in a watcher's callback ----
 * A callback runs outside every coroutine: an error raised there (out of memory while a
 * string is made on the loop's main state) finds no protected call and ends the process.
 * So callbacks make their values under lem_protect, and when that fails the waiting
 * coroutine gets nil and the error instead. */

static const char io_state_key = 0;     /* registry[&io_state_key]: the struct io_state */

struct io_state *io_state(lua_State *T)
{
	struct io_state *st;

	lua_pushlightuserdata(T, (void *)&io_state_key);
	lua_rawget(T, LUA_REGISTRYINDEX);
	st = lua_touserdata(T, -1);
	lua_pop(T, 1);
	return st;
}

/* ---- suspended callers ----
 * A method that waits calls io_suspend, then starts the watchers of its io_wait; the
 * callback that ends the wait calls io_wake (or io_wake_error). Values are never pushed on
 * the suspended coroutine itself: they are made on `from` (lem_state in a callback, the
 * running coroutine in a method) and lem_wake moves them. */

void io_wait_init(struct io_wait *iw, struct io_state *st, ev_io *io, ev_timer *timer)
{
	memset(iw, 0, sizeof *iw);
	iw->io = io;
	iw->timer = timer;
	iw->st = st;
}

/* Whether iw's caller is still in the suspension it began there: one resumed by other
 * means (coroutine.resume by hand, which lem does not support) has moved on, and lem's
 * mark is no longer on top of its stack (lem.h). */
static int io_suspended(const struct io_wait *iw)
{
	lua_State *co = iw->w.co;

	return co && lua_status(co) == LUA_YIELD && lua_gettop(co) > 0 &&
	       lua_touserdata(co, -1) == (void *)iw->w.token;
}

/* Whether someone waits in iw, so that another caller gets nil, 'busy'. A caller that
 * has moved on (see io_suspended) is forgotten. */
int io_busy(lem_loop *loop, struct io_wait *iw)
{
	if (!iw->w.co)
		return 0;
	if (io_suspended(iw))
		return 1;
	io_wait_end(loop, iw);
	return 0;
}

/* [-val, +0, v] Suspends T, which runs a method of iw's object, as iw's caller: return
 * io_suspend(...). With val, the value on top of T stays alive while it waits. Raises
 * where T cannot suspend, and iw is then as it was, but for the slots taken: they stay
 * for the next wait. The method starts iw's watchers after, where nothing may raise. */
int io_wait_slots(lem_loop *loop, lua_State *T, struct io_wait *iw, int val)
{
	if (!iw->co_slot) {
		lua_pushnil(T);
		iw->co_slot = lem_anchor(loop, T);
	}
	if (val && !iw->val_slot) {
		lua_pushnil(T);
		iw->val_slot = lem_anchor(loop, T);
	}
	return iw->co_slot && (!val || iw->val_slot);
}

int io_suspend(lem_loop *loop, lua_State *T, struct io_wait *iw, int val)
{
	int r;

	io_wait_slots(loop, T, iw, val);
	r = lem_suspend(T, &iw->w, val);
	iw->st->waits++;
	lua_pushthread(iw->w.co);
	lua_xmove(iw->w.co, T, 1);
	lem_anchor_set(loop, T, iw->co_slot);
	if (val) {
		lua_pushvalue(T, -2);               /* the kept value, under lem's mark */
		lem_anchor_set(loop, T, iw->val_slot);
	}
	return r;
}

/* Ends iw's wait without waking its caller: stops its watchers, lets go of its values. */
void io_wait_end(lem_loop *loop, struct io_wait *iw)
{
	lua_State *L = lem_state(loop);
	struct ev_loop *ev = lem_ev(loop);

	if (iw->w.co)
		iw->st->waits--;
	if (iw->io)
		ev_io_stop(ev, iw->io);
	if (iw->timer)
		ev_timer_stop(ev, iw->timer);
	lua_pushnil(L);
	lem_anchor_set(loop, L, iw->co_slot);
	if (iw->val_slot) {
		lua_pushnil(L);
		lem_anchor_set(loop, L, iw->val_slot);
	}
	iw->w.co = NULL;
}

/* [-nargs, +0, -] on from. Wakes iw's caller with the nargs values on top of from and
 * ends the wait. Returns 0 when nobody waits or the suspension was stale (see lem_wake):
 * the values are dropped. */
int io_wake(lem_loop *loop, struct io_wait *iw, lua_State *from, int nargs)
{
	int woken = lem_wake(loop, &iw->w, from, nargs);

	io_wait_end(loop, iw);                  /* after: the runqueue anchors it now */
	return woken;
}

static int io_push_error(lua_State *S, void *err)
{
	return io_error(S, *(int *)err);
}

/* Wakes iw's caller with nil and the message of err (made under lem_protect). */
int io_wake_error(lem_loop *loop, struct io_wait *iw, lua_State *from, int err)
{
	lem_protect(loop, from, io_push_error, &err);   /* two values, whatever happens */
	return io_wake(loop, iw, from, 2);
}

/* The object closes: its caller returns nil, 'closed' (made on from), or, from NULL (a
 * finalizer), is forgotten; the slots are freed. */
void io_wait_free(lem_loop *loop, struct io_wait *iw, lua_State *from)
{
	if (from && iw->w.co)
		io_wake_error(loop, iw, from, -EPIPE);
	else
		io_wait_end(loop, iw);
	lem_unanchor(loop, iw->co_slot);
	lem_unanchor(loop, iw->val_slot);
	iw->co_slot = iw->val_slot = 0;
}

/* ---- the module ---- */

/* In the shutdown, listeners close; at its deadline lem asks what still waits. */
static int io_signal_hook(lem_loop *loop, int event, void *ud)
{
	struct io_state *st = ud;

	if (event == LEM_DEADLINE)
		return st->waits + st->idle - st->weak;
	if (event == LEM_SHUTDOWN) {
		st->shutdown = 1;
		io_listener_shutdown(st, lem_state(loop));
	}
	return 0;
}

/* The module's figures, in utils.stats(). */
static void io_stats_hook(lem_loop *loop, lua_State *T, void *ud)
{
	struct io_state *st = ud;
	int n = 0;

	(void)loop;
	for (struct io_listener *l = st->listeners; l; l = l->next)
		n++;
	lua_pushinteger(T, st->waits);
	lua_setfield(T, -2, "parked_io");
	lua_pushinteger(T, st->idle);
	lua_setfield(T, -2, "idle_streams");
	lua_pushinteger(T, st->streams);
	lua_setfield(T, -2, "streams");
	lua_pushinteger(T, n);
	lua_setfield(T, -2, "listeners");
}

/* io.stats() --> utils.stats()'s table: the loop's figures, these among them */
static int io_stats(lua_State *T)
{
	lem_stats(lem_loop_of(T), T);
	return 1;
}

/* The state goes with its Lua state (lua_close): the spare read buffers with it. */
static int io_state_gc(lua_State *L)
{
	struct io_state *st = lua_touserdata(L, 1);

	while (st->nspare > 0)
		free(st->spare[--st->nspare]);
	return 0;
}

/* [-0, +0, m] lem.io's state in L's loop, made on first use, with its signal hook. */
static void io_open_state(lua_State *L)
{
	struct io_state *st;
	int r;

	if (io_state(L))
		return;
	lua_pushlightuserdata(L, (void *)&io_state_key);
	st = lua_newuserdata(L, sizeof *st);
	memset(st, 0, sizeof *st);
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, io_state_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	st->loop = lem_loop_of(L);
	lua_rawset(L, LUA_REGISTRYINDEX);          /* first: the hook outlives no state */
	if ((r = lem_signal_hook_add(st->loop, io_signal_hook, st)) < 0 ||
	    lem_stats_hook_add(st->loop, io_stats_hook, st) < 0)
		luaL_error(L, "not enough memory");
	st->shutdown = r;
}

/* What __gc and __tostring need of an object: upvalue 1 of both. */
struct io_ops {
	void (*shut)(void *self, lua_State *from);
	size_t fd;                /* offset of the object's descriptor (-1: closed) */
	const char *label;
};

static int io_gc(lua_State *T)
{
	const struct io_ops *ops = lua_touserdata(T, lua_upvalueindex(1));

	ops->shut(lua_touserdata(T, 1), NULL);
	return 0;
}

/* "stream (fd 5): 0x...", or "stream (closed): 0x..." */
static int io_tostring(lua_State *T)
{
	const struct io_ops *ops = lua_touserdata(T, lua_upvalueindex(1));
	const char *p = lua_touserdata(T, 1);
	int fd = *(const int *)(p + ops->fd);

	if (fd < 0)
		lua_pushfstring(T, "%s (closed): %p", ops->label, (const void *)p);
	else
		lua_pushfstring(T, "%s (fd %d): %p", ops->label, fd, (const void *)p);
	return 1;
}

void io_class(lua_State *L, const char *name, const char *label,
              void (*shut)(void *self, lua_State *from), size_t fd, const luaL_Reg *methods)
{
	struct io_ops *ops;

	luaL_newmetatable(L, name);
	ops = lua_newuserdata(L, sizeof *ops);
	ops->shut = shut;
	ops->fd = fd;
	ops->label = label;            /* a literal */
	lua_pushvalue(L, -1);
	lua_pushcclosure(L, io_gc, 1);
	lua_setfield(L, -3, "__gc");
	lua_pushcclosure(L, io_tostring, 1);
	lua_setfield(L, -2, "__tostring");
	lua_newtable(L);
	luaL_register(L, NULL, methods);
	lua_setfield(L, -2, "__index");
	lua_pushstring(L, label);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
}

int luaopen_lem_io(lua_State *L)
{
	static const luaL_Reg tcp[] = {
		{ "listen", io_listen_tcp },
		{ "connect", io_connect_tcp },
		{ NULL, NULL }
	};
	static const luaL_Reg unx[] = {
		{ "listen", io_listen_unix },
		{ "connect", io_connect_unix },
		{ NULL, NULL }
	};

	io_open_state(L);                     /* once per loop: objects keep a pointer to it */
	io_stream_open(L);
	io_listener_open(L);
	lua_newtable(L);                      /* the module */
	lua_newtable(L);
	luaL_register(L, NULL, tcp);
	lua_setfield(L, -2, "tcp");
	lua_newtable(L);
	luaL_register(L, NULL, unx);
	lua_setfield(L, -2, "unix");
	io_tls_open(L);
	io_std_open(L);
	lua_pushcfunction(L, io_stats);
	lua_setfield(L, -2, "stats");
	return 1;
}
