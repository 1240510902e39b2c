/* delay.c: a minimal lem module in C, the example of docs/c-api.md.
 *
 *   local delay = require 'delay'
 *   delay.after(0.5, 'x')      -- suspends the calling coroutine 0.5 s, returns 'x'
 *   delay.spawn(f, ...)        -- runs f(...) in a new coroutine, like utils.spawn
 *
 * Build: cc -shared -fPIC $(pkg-config --cflags lem) delay.c -o delay.so */
#include <stdlib.h>
#include <lem.h>

struct delay {
	ev_timer w;            /* first: the callback gets it back as a struct delay */
	lem_loop *loop;
	lem_waiter waiter;
	int ref;               /* keeps the value to return alive */
};

static void delay_done(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct delay *d = (struct delay *)w;
	lua_State *L = lem_state(d->loop);   /* callbacks build values here, not on co */

	(void)ev; (void)revents;
	lua_rawgeti(L, LUA_REGISTRYINDEX, d->ref);    /* the value, as resume value */
	luaL_unref(L, LUA_REGISTRYINDEX, d->ref);
	lem_wake(d->loop, &d->waiter, L, 1);          /* stale: pops it, returns 0 */
	lem_forget(d->loop, d->waiter.co);
	free(d);
}

/* delay.after(seconds, value) --> value, after that long */
static int delay_after(lua_State *T)
{
	lua_Number seconds = luaL_checknumber(T, 1);
	struct delay *d;
	lem_waiter w;

	luaL_checkany(T, 2);
	lem_wait(T, &w);            /* raises where T cannot suspend: nothing to undo yet */
	d = malloc(sizeof *d);
	if (!d)
		return luaL_error(T, "out of memory");
	d->waiter = w;
	d->loop = lem_loop_of(T);
	lua_settop(T, 2);
	d->ref = luaL_ref(T, LUA_REGISTRYINDEX);
	lem_hold(d->loop, d->waiter.co);   /* the timer alone refers to it now */
	ev_timer_init(&d->w, delay_done, seconds, 0);
	ev_timer_start(lem_ev(d->loop), &d->w);
	return lem_yield(T, &d->waiter);
}

/* delay.spawn(f, ...) --> true */
static int delay_spawn(lua_State *T)
{
	lem_loop *loop = lem_loop_of(T);
	int n = lua_gettop(T);
	lua_State *co;

	luaL_checktype(T, 1, LUA_TFUNCTION);
	co = lem_newthread(loop);
	lua_xmove(T, co, n);
	lem_queue(loop, co, n - 1);   /* the runqueue anchors it now */
	lem_forget(loop, co);
	lua_pushboolean(T, 1);
	return 1;
}

int luaopen_delay(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "after", delay_after },
		{ "spawn", delay_spawn },
		{ NULL, NULL }
	};
	lua_newtable(L);
	luaL_register(L, NULL, funcs);
	return 1;
}
