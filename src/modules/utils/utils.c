/* utils.c: lem.utils: spawn, yield, exit, now, sleepers and timers. */
#include <stdlib.h>
#include "../../loop/loop.h"

/* Upvalues of every function here. */
#define SLEEPER  lua_upvalueindex(1)   /* the sleepers' metatable */
#define TIMER    lua_upvalueindex(2)   /* the timers' metatable */

static lem_loop *getloop(lua_State *T)
{
	(void)T;
	return lem_current;
}

/* utils.spawn(func, ...) --> true */
static int utils_spawn(lua_State *T)
{
	lem_loop *loop = getloop(T);
	int n = lua_gettop(T);
	lua_State *co;

	luaL_checktype(T, 1, LUA_TFUNCTION);
	if (n == 1) {             /* no arguments: its coroutine is made when it runs */
		lem_sched_push_func(loop, T);
		lua_pushboolean(T, 1);
		return 1;
	}
	co = lem_sched_thread(loop);
	lua_checkstack(co, n + 1);
	lua_xmove(T, co, n);
	lem_sched_push(loop, co, 0, n - 1);
	lua_pop(loop->L, 1);
	lua_pushboolean(T, 1);
	return 1;
}

/* utils.yield() --> nothing, after the coroutines queued before it ran */
static int utils_yield(lua_State *T)
{
	return lem_sched_self(T, getloop(T), 0);
}

/* utils.exit([status]): status a number, or true (success) / false (failure) */
static int utils_exit(lua_State *T)
{
	lem_loop *loop = getloop(T);
	int status;

	if (lua_isboolean(T, 1))
		status = lua_toboolean(T, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
	else
		status = (int)luaL_optinteger(T, 1, EXIT_SUCCESS);
	lem_exit(loop, status);
	if (T != loop->yielder)   /* cannot suspend: the loop stops when control returns */
		return 0;
	loop->suspended = 1;      /* never resumed */
	return lua_yield(T, 0);
}

/* utils.now() --> the loop's time in seconds */
static int utils_now(lua_State *T)
{
	lua_pushnumber(T, ev_now(getloop(T)->ev));
	return 1;
}

/* ---- sleepers ----
 * A sleeper is a table, the cheapest object that can keep a coroutine alive; its [1] is
 * the sleeping coroutine. That coroutine's own stack says which sleep it is in: it
 * suspends with the sleeper, then (timed) the light userdata of its struct lem_wait, then
 * its token. A wakeup believes [1] only if that stack points back at the sleeper, so a
 * stale [1] (its coroutine resumed by hand meanwhile) wakes nothing. A suspension on a
 * sleeper can be ended only through [1], which its end clears, so it needs no mark
 * against a second wake.
 * An untimed sleeper is anchored by nothing: once no one can reach the sleeper, its
 * coroutine is garbage too. A timed one is anchored in the loop until it wakes. Sleeps
 * register after their lua_yield succeeded, so nothing stays registered when it fails. */

static void checksleeper(lua_State *T, lem_loop *loop)
{
	if (!lua_getmetatable(T, 1) || lua_topointer(T, -1) != loop->sleeper_mt)
		luaL_typerror(T, 1, "sleeper");
}

/* utils.sleeper() --> sleeper */
static int utils_sleeper(lua_State *T)
{
	lua_createtable(T, 1, 0);
	lua_pushvalue(T, SLEEPER);
	lua_setmetatable(T, -2);
	return 1;
}

/* The token of co's sleep on the sleeper at index 1 of T, co read from its [1]; 0 if [1]
 * is stale. *tw is the timer of a timed sleep, or NULL. */
static uintptr_t sleeps_on(lua_State *T, lua_State *co, struct lem_wait **tw)
{
	int n;

	if (lua_status(co) != LUA_YIELD || lua_topointer(co, 1) != lua_topointer(T, 1))
		return 0;
	n = lua_gettop(co);
	*tw = n == 3 ? lua_touserdata(co, 2) : NULL;
	if (n == 3 ? !*tw || lua_touserdata(co, 3) != (*tw)->w.data : n != 2)
		return 0;
	return (uintptr_t)lua_touserdata(co, n);
}

static void timed_release(lem_loop *loop, struct lem_wait *tw)
{
	ev_timer_stop(loop->ev, &tw->w);
	lem_unanchor(loop, tw->anchor);
	lem_wait_put(loop, tw);
}

static void sleeper_timeout(struct ev_loop *ev, ev_timer *t, int revents)
{
	struct lem_wait *tw = (struct lem_wait *)t;
	lem_loop *loop = tw->loop;
	lua_State *L = loop->L;
	lem_waiter w;

	(void)ev; (void)revents;
	lem_anchor_push(loop, L, tw->anchor);        /* the sleeper */
	lua_rawgeti(L, -1, 1);
	w.co = lua_tothread(L, -1);
	w.token = (uintptr_t)tw->w.data;
	timed_release(loop, tw);
	if (lem_sched_valid(&w)) {                   /* else it was resumed by hand */
		lua_pushnil(L);
		lua_rawseti(L, -3, 1);
		lua_pushnil(L);
		lua_pushliteral(L, "timeout");
		lua_pushvalue(L, -3);
		lem_sched_wake(loop, w.co, w.token, L, 2);
	}
	lua_pop(L, 2);
}

/* sleeper:wakeup(...) --> true | nil, 'not sleeping'
 * Its self is checked to be a sleeper only when nobody sleeps on it: a coroutine whose
 * stack points back at a table got there by a sleep on it, which checked. */
static int sleeper_wakeup(lua_State *T)
{
	lem_loop *loop = getloop(T);
	int n = lua_gettop(T) - 1;
	lua_State *co;
	struct lem_wait *tw;
	uintptr_t token = 0;

	if (!lua_istable(T, 1))
		luaL_typerror(T, 1, "sleeper");
	lua_rawgeti(T, 1, 1);
	co = lua_tothread(T, -1);
	if (co && (token = sleeps_on(T, co, &tw)) != 0) {
		lua_pushnil(T);
		lua_rawseti(T, 1, 1);
		if (tw)
			timed_release(loop, tw);
		lem_sched_wake(loop, co, token, T, n);
		lua_pushboolean(T, 1);
		return 1;
	}
	checksleeper(T, loop);
	if (co) {                                /* stale */
		lua_pushnil(T);
		lua_rawseti(T, 1, 1);
	}
	lua_pushnil(T);
	lua_pushliteral(T, "not sleeping");
	return 2;
}

/* sleeper:sleep([seconds]) --> wakeup's arguments | nil, 'timeout' | nil, 'busy' */
static int sleeper_sleep(lua_State *T)
{
	lem_loop *loop = getloop(T);
	lua_Number timeout = 0;
	int timed;
	lem_waiter w;

	timed = !lua_isnoneornil(T, 2);
	checksleeper(T, loop);                   /* pushes its metatable */
	if (timed) {
		timeout = luaL_checknumber(T, 2);
		if (timeout != timeout)   /* NaN: it would never fire */
			luaL_argerror(T, 2, "timeout is not a number");
	}
	lua_rawgeti(T, 1, 1);
	if (!lua_isnil(T, -1)) {
		struct lem_wait *tw;
		lua_State *co = lua_tothread(T, -1);
		if (co && sleeps_on(T, co, &tw)) {
			lua_pushnil(T);
			lua_pushliteral(T, "busy");
			return 2;
		}
	}
	lua_settop(T, 1);                        /* [1] is free, or stale */
	if (timed && timeout <= 0) {
		lua_pushnil(T);
		lua_pushliteral(T, "timeout");
		return lem_sched_self(T, loop, 2);
	}
	lem_sched_suspend(T, loop, &w, 1);       /* T: sleeper, token */
	if (w.co == T) {                         /* suspended: register */
		lua_pushthread(T);
	} else {                                 /* inside a yield-safe pcall (PUC) */
		lua_pushthread(w.co);
		lua_xmove(w.co, T, 1);
	}
	lua_rawseti(T, 1, 1);
	if (timed) {
		struct lem_wait *tw = lem_wait_get(loop);
		ev_timer_init(&tw->w, sleeper_timeout, timeout, 0);
		lem_loop_deadline(loop, ev_now(loop->ev) + timeout);
		tw->w.data = (void *)w.token;
		lua_pushvalue(T, 1);
		tw->anchor = lem_anchor(loop, T);
		ev_timer_start(loop->ev, &tw->w);
		lua_pushlightuserdata(T, tw);
		lua_insert(T, 2);                    /* T: sleeper, timer, token */
	}
	return lem_sched_suspended(T, loop);
}

/* ---- timers ----
 * A pending timer costs its userdata and two anchor slots (itself and its function); the
 * coroutine is made only when it fires. */


struct timer {
	ev_timer w;
	lem_loop *loop;
	int self, func;           /* anchor slots while pending */
};

static void timer_release(struct timer *t)
{
	lem_unanchor(t->loop, t->self);
	lem_unanchor(t->loop, t->func);
	t->self = t->func = 0;
}

static void timer_fire(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct timer *t = (struct timer *)w;
	lem_loop *loop = t->loop;

	(void)revents;
	lem_anchor_push(loop, loop->L, t->func);
	timer_release(t);
	lem_sched_push_func(loop, loop->L);
}

/* utils.timer(seconds, func) --> timer */
static int utils_timer(lua_State *T)
{
	lem_loop *loop = getloop(T);
	lua_Number delay = luaL_checknumber(T, 1);
	struct timer *t;

	if (delay != delay)
		luaL_argerror(T, 1, "delay is not a number");   /* NaN: it would never fire */
	luaL_checktype(T, 2, LUA_TFUNCTION);
	lua_settop(T, 2);
	t = lua_newuserdata(T, sizeof *t);
	t->loop = loop;
	t->self = t->func = 0;
	ev_timer_init(&t->w, timer_fire, delay, 0);
	lua_pushvalue(T, TIMER);
	lua_setmetatable(T, -2);
	if (delay <= 0) {         /* as utils.spawn, but still a timer (expired) */
		lua_pushvalue(T, 2);
		lem_sched_push_func(loop, T);
		return 1;
	}
	lua_pushvalue(T, -1);
	t->self = lem_anchor(loop, T);
	lua_pushvalue(T, 2);
	t->func = lem_anchor(loop, T);
	ev_timer_start(loop->ev, &t->w);
	lem_loop_deadline(loop, ev_now(loop->ev) + delay);
	return 1;
}

static struct timer *checktimer(lua_State *T)
{
	struct timer *t = lua_touserdata(T, 1);

	if (!t || !lua_getmetatable(T, 1) || lua_topointer(T, -1) != lem_current->timer_mt)
		luaL_typerror(T, 1, "timer");
	lua_pop(T, 1);
	return t;
}

/* timer:cancel() --> true | nil, 'expired' */
static int timer_cancel(lua_State *T)
{
	struct timer *t = checktimer(T);

	if (!ev_is_active(&t->w)) {
		lua_pushnil(T);
		lua_pushliteral(T, "expired");
		return 2;
	}
	ev_timer_stop(t->loop->ev, &t->w);
	timer_release(t);
	lua_pushboolean(T, 1);
	return 1;
}

int luaopen_lem_utils(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "spawn", utils_spawn },
		{ "yield", utils_yield },
		{ "exit", utils_exit },
		{ "now", utils_now },
		{ "sleeper", utils_sleeper },
		{ "timer", utils_timer },
		{ NULL, NULL }
	};
	static const luaL_Reg sleeper[] = {
		{ "sleep", sleeper_sleep },
		{ "wakeup", sleeper_wakeup },
		{ NULL, NULL }
	};
	static const luaL_Reg timer[] = {
		{ "cancel", timer_cancel },
		{ NULL, NULL }
	};
	const luaL_Reg *r;

	/* The timers' metatable. No __gc: a pending timer is anchored, so only lua_close can
	 * free one, and the ev_loop then goes without looking at its watchers (as with the
	 * timers of timed sleeps, lem_anchor_free). A finalizer per timer cost a quarter of
	 * what making one does. */
	lua_newtable(L);
	lem_current->timer_mt = lua_topointer(L, -1);
	lua_pushliteral(L, "timer");
	lua_setfield(L, -2, "__metatable");
	lua_newtable(L);
	for (r = timer; r->name; r++) {
		lua_pushcfunction(L, r->func);
		lua_setfield(L, -2, r->name);
	}
	lua_setfield(L, -2, "__index");

	lua_newtable(L);                        /* the sleepers' metatable */
	lem_current->sleeper_mt = lua_topointer(L, -1);
	lua_pushliteral(L, "sleeper");
	lua_setfield(L, -2, "__metatable");
	lua_newtable(L);                        /* module; stack: timer mt, sleeper mt, module */
	lua_newtable(L);                        /* sleeper methods */
	for (r = sleeper; r->name; r++) {
		lua_pushvalue(L, -3);
		lua_pushvalue(L, -5);
		lua_pushcclosure(L, r->func, 2);
		lua_setfield(L, -2, r->name);
	}
	lua_setfield(L, -3, "__index");
	for (r = funcs; r->name; r++) {
		lua_pushvalue(L, -2);
		lua_pushvalue(L, -4);
		lua_pushcclosure(L, r->func, 2);
		lua_setfield(L, -2, r->name);
	}
	return 1;
}
