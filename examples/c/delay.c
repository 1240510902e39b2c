/* delay.c: a minimal lem module in C, the example of docs/c-api.md.
 *
 *   local delay = require 'delay'
 *   delay.after(0.5, 'x')      -- suspends the calling coroutine 0.5 s, returns 'x'
 *   delay.spawn(f, ...)        -- runs f(...) in a new coroutine, like utils.spawn
 *
 * Build: cc -shared -fPIC $(pkg-config --cflags lem) delay.c -o delay.so */
#include <lem.h>

/* A pending delay: a userdata, so that the collector frees it whatever happens. */
struct delay {
	ev_timer w;            /* first: the callback gets it back as a struct delay */
	lem_loop *loop;
	lem_waiter waiter;
	int slot;              /* anchors the waiting coroutine, which nothing else refers to */
};

static int delay_gc(lua_State *L)
{
	struct delay *d = lua_touserdata(L, 1);

	lem_unanchor(d->loop, d->slot);
	return 0;
}

static void delay_done(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct delay *d = (struct delay *)w;
	lua_State *L = lem_state(d->loop), *co = d->waiter.co;

	(void)ev; (void)revents;
	/* the value to return is the second value kept on co's stack: copy it to L, where
	 * callbacks build values (lem_suspend keeps the stack as it is, with room to read) */
	lua_checkstack(co, 1);
	lua_pushvalue(co, 2);
	lua_xmove(co, L, 1);
	lem_wake(d->loop, &d->waiter, L, 1);          /* stale: pops it, returns 0 */
	lem_unanchor(d->loop, d->slot);               /* the runqueue holds co now */
	d->slot = 0;
}

/* delay.after(seconds, value) --> value, after that long */
static int delay_after(lua_State *T)
{
	lem_loop *loop = lem_loop_of(T);
	lua_Number seconds = luaL_checknumber(T, 1);
	struct delay *d;
	int r;

	luaL_checkany(T, 2);
	/* What can fail comes before the suspension, and is collected if the suspension
	 * raises: the userdata, and a slot for the coroutine that its __gc frees. */
	d = lua_newuserdata(T, sizeof *d);
	d->loop = loop;
	d->slot = 0;
	lua_pushvalue(T, lua_upvalueindex(1));
	lua_setmetatable(T, -2);
	lua_pushnil(T);
	d->slot = lem_anchor(loop, T);
	lua_pushvalue(T, 2);                          /* T: delay, value: kept while it waits */
	r = lem_suspend(T, &d->waiter, 2);
	lua_pushthread(d->waiter.co);                 /* nothing may raise from here on */
	lua_xmove(d->waiter.co, T, 1);
	lem_anchor_set(loop, T, d->slot);
	ev_timer_init(&d->w, delay_done, seconds, 0);
	ev_timer_start(lem_ev(loop), &d->w);
	lem_deadline(loop, ev_now(lem_ev(loop)) + seconds);
	return r;
}

/* delay.spawn(f, ...) --> true */
static int delay_spawn(lua_State *T)
{
	luaL_checktype(T, 1, LUA_TFUNCTION);
	lem_spawn(lem_loop_of(T), T, lua_gettop(T) - 1);
	lua_pushboolean(T, 1);
	return 1;
}

int luaopen_delay(lua_State *L)
{
	lua_newtable(L);
	lua_newtable(L);                               /* the delays' metatable */
	lua_pushcfunction(L, delay_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcclosure(L, delay_after, 1);
	lua_setfield(L, -2, "after");
	lua_pushcfunction(L, delay_spawn);
	lua_setfield(L, -2, "spawn");
	return 1;
}
