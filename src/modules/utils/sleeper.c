/* sleeper.c: lem.utils's sleepers: a coroutine sleeps on one until another wakes it.
 *
 * A sleeper is a table, the cheapest object that can keep a coroutine alive; its [1] is
 * the sleeping coroutine. That coroutine's own stack says which sleep it is in: it
 * suspends keeping the sleeper, then (timed) the light userdata of its struct
 * sleep_timer, and lem's mark (the suspension's token) is above them. A wakeup believes
 * [1] only if that stack points back at the sleeper, so a stale [1] (its coroutine
 * resumed by hand meanwhile) wakes nothing. A suspension on a sleeper can be ended only
 * through [1], which its end clears, so it needs no mark against a second wake.
 * An untimed sleeper is anchored by nothing: once no one can reach the sleeper, its
 * coroutine is garbage too. A timed one is anchored in the loop until it wakes. */
#include <stdlib.h>
#include "utils.h"

/* A timer for a timed sleep; kept for reuse, freed with the module's state. */
struct sleep_timer {
	ev_timer w;               /* w.data: the token of the sleep it times */
	struct utils *u;
	int anchor;               /* anchor slot of the sleeper */
	struct sleep_timer *next_free, *next_all;
};

/* utils.sleeper() --> sleeper */
int sleeper_new(lua_State *T)
{
	lua_createtable(T, 1, 0);
	lua_pushvalue(T, UTILS_SLEEPER);
	lua_setmetatable(T, -2);
	return 1;
}

/* The token of co's sleep on the sleeper at index 1 of T, co read from its [1]; 0 if [1]
 * is stale. *tw is the timer of a timed sleep, or NULL. Called by sleeper methods (for
 * their upvalues). An untimed sleep is checked only for its shape here: lem_wake checks
 * that co is still in that suspension. */
static uintptr_t sleeps_on(lua_State *T, lua_State *co, struct sleep_timer **tw)
{
	int n;

	if (lua_topointer(co, 1) != lua_topointer(T, 1))
		return 0;
	n = lua_gettop(co);
	if (n == 2) {
		*tw = NULL;
	} else {
		if (n != 3 || lua_status(co) != LUA_YIELD || !(*tw = lua_touserdata(co, 2)) ||
		    utils_state(T)->closed || lua_touserdata(co, 3) != (*tw)->w.data)
			return 0;      /* (lua_close frees the timers: nobody sleeps any more) */
	}
	return (uintptr_t)lua_touserdata(co, n);
}

static void timer_put(struct sleep_timer *tw)
{
	struct utils *u = tw->u;

	ev_timer_stop(lem_ev(u->loop), &tw->w);
	u->waits--;
	lem_unanchor(u->loop, tw->anchor);
	tw->anchor = 0;
	tw->next_free = u->free;
	u->free = tw;
}

/* [-0, +0, m] A timer for a sleep: the spare one a raising suspension left, or a new one. */
static struct sleep_timer *timer_get(lua_State *T, struct utils *u)
{
	struct sleep_timer *tw = u->spare;

	if (tw)
		return tw;
	if ((tw = u->free)) {
		u->free = tw->next_free;
	} else {
		if (!(tw = malloc(sizeof *tw)))
			luaL_error(T, "not enough memory");
		tw->u = u;
		tw->anchor = 0;
		tw->next_all = u->all;
		u->all = tw;
	}
	u->spare = tw;
	return tw;
}

void sleeper_free_timers(struct utils *u)
{
	struct sleep_timer *tw, *next;

	for (tw = u->all; tw; tw = next) {
		next = tw->next_all;
		free(tw);
	}
	u->all = u->free = u->spare = NULL;
	u->closed = 1;
}

static void sleeper_timeout(struct ev_loop *ev, ev_timer *t, int revents)
{
	struct sleep_timer *tw = (struct sleep_timer *)t;
	lem_loop *loop = tw->u->loop;
	lua_State *L = lem_state(loop);
	lem_waiter w;

	(void)ev; (void)revents;
	lem_anchor_push(loop, L, tw->anchor);        /* the sleeper */
	lua_rawgeti(L, -1, 1);
	w.co = lua_tothread(L, -1);
	w.token = (uintptr_t)tw->w.data;
	timer_put(tw);
	lua_pushnil(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, tw->u->timeout);   /* no collector step: no finalizer */
	tw->u->sleeping--;
	if (lem_wake(loop, &w, L, 2)) {              /* else it was resumed by hand */
		lua_pushnil(L);
		lua_rawseti(L, -3, 1);
	}
	lua_pop(L, 2);
}

/* sleeper:wakeup(...) --> true | nil, 'not sleeping'
 * Its self is checked to be a sleeper only when nobody sleeps on it: a coroutine whose
 * stack points back at a table got there by a sleep on it, which checked. */
int sleeper_wakeup(lua_State *T)
{
	int n = lua_gettop(T) - 1;
	lem_waiter w;
	struct sleep_timer *tw;

	if (!lua_istable(T, 1))
		luaL_typerror(T, 1, "sleeper");
	lua_rawgeti(T, 1, 1);
	w.co = lua_tothread(T, -1);
	if (n > 0)                /* the values go on top; [1] keeps co alive meanwhile */
		lua_pop(T, 1);
	if (w.co && (w.token = sleeps_on(T, w.co, &tw)) != 0) {
		utils_state(T)->sleeping--;
		if (tw)
			timer_put(tw);
		if (lem_wake(lem_loop_of(T), &w, T, n)) {
			lua_pushnil(T);
			lua_rawseti(T, 1, 1);
			lua_pushboolean(T, 1);
			return 1;
		}
	}
	utils_check(T, 1, utils_state(T)->sleeper_mt, "sleeper");
	if (w.co) {                               /* stale */
		lua_pushnil(T);
		lua_rawseti(T, 1, 1);
	}
	lua_pushnil(T);
	lua_pushliteral(T, "not sleeping");
	return 2;
}

/* sleeper:sleep([seconds]) --> wakeup's arguments | nil, 'timeout' | nil, 'busy' */
int sleeper_sleep(lua_State *T)
{
	struct utils *u = utils_state(T);
	lua_Number timeout = 0;
	int timed = !lua_isnoneornil(T, 2), r;
	struct sleep_timer *tw = NULL;
	lem_waiter w;

	utils_check(T, 1, u->sleeper_mt, "sleeper");
	if (timed) {
		timeout = luaL_checknumber(T, 2);
		if (timeout != timeout)   /* NaN: it would never fire */
			luaL_argerror(T, 2, "timeout is not a number");
	}
	lua_rawgeti(T, 1, 1);
	if (!lua_isnil(T, -1)) {
		lua_State *co = lua_tothread(T, -1);
		if (co && lua_status(co) == LUA_YIELD && sleeps_on(T, co, &tw)) {
			lua_pushnil(T);
			lua_pushliteral(T, "busy");
			return 2;
		}
	}
	lua_settop(T, 1);                        /* [1] is free, or stale */
	if (timed && timeout <= 0) {
		lua_pushnil(T);
		lua_pushliteral(T, "timeout");
		return lem_yield(T, 2);
	}
	if (timed) {
		/* What can fail comes before the suspension: the timer and the sleeper's
		 * anchor. A suspension that raises leaves them as the spare, for the next. */
		tw = timer_get(T, u);
		lua_pushvalue(T, 1);
		if (tw->anchor)
			lem_anchor_set(u->loop, T, tw->anchor);
		else
			tw->anchor = lem_anchor(u->loop, T);
		lua_pushlightuserdata(T, tw);         /* T: sleeper, timer */
	}
	r = lem_suspend(T, &w, timed ? 2 : 1);
	if (w.co == T) {                         /* register: sleeper[1] = its coroutine */
		lua_pushthread(T);
	} else {                                 /* inside a yield-safe pcall (PUC) */
		lua_pushthread(w.co);
		lua_xmove(w.co, T, 1);
	}
	lua_rawseti(T, 1, 1);
	u->sleeping++;
	if (timed) {
		lem_loop *loop = tw->u->loop;
		tw->u->spare = NULL;
		tw->u->waits++;
		ev_timer_init(&tw->w, sleeper_timeout, timeout, 0);
		tw->w.data = (void *)w.token;
		ev_timer_start(lem_ev(loop), &tw->w);
		lem_deadline(loop, ev_now(lem_ev(loop)) + timeout);
	}
	return r;
}
