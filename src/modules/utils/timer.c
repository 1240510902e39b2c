/* timer.c: lem.utils's timers: a function run in a coroutine of its own, later.
 * A pending timer costs its userdata and two anchor slots (itself and its function); the
 * coroutine is made only when it fires. Where utils.timer was called, for the report of
 * an error in the function, is a light userdata kept in the timer, or with lem --debug a
 * string in a third slot. */
#include "utils.h"

struct timer {
	ev_timer w;
	struct utils *u;          /* u->loop: its loop; u->waits counts it while pending */
	int self, func, site;     /* anchor slots while pending (site: --debug only) */
	void *where;              /* lem_site_push's light userdata, or NULL */
};

static void timer_release(struct timer *t)
{
	lem_unanchor(t->u->loop, t->self);
	lem_unanchor(t->u->loop, t->func);
	lem_unanchor(t->u->loop, t->site);
	t->self = t->func = t->site = 0;
	t->u->waits--;
	t->u->timers--;
}

static void timer_fire(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct timer *t = (struct timer *)w;
	lua_State *L = lem_state(t->u->loop);

	(void)ev; (void)revents;
	if (t->site)
		lem_anchor_push(t->u->loop, L, t->site);
	else
		lua_pushlightuserdata(L, t->where);   /* NULL: nowhere, as nil */
	lem_anchor_push(t->u->loop, L, t->func);
	timer_release(t);
	lem_spawn_at(t->u->loop, L, 0);
}

/* utils.timer(seconds, func) --> timer */
int timer_new(lua_State *T)
{
	struct utils *u = utils_state(T);
	lem_loop *loop = u->loop;
	lua_Number delay = luaL_checknumber(T, 1);
	struct timer *t;

	if (delay != delay)
		luaL_argerror(T, 1, "delay is not a number");   /* NaN: it would never fire */
	luaL_checktype(T, 2, LUA_TFUNCTION);
	lua_settop(T, 2);
	lem_site_push(T);                 /* 3: where this is, before what needs undoing */
	t = lua_newuserdata(T, sizeof *t);
	t->u = u;
	t->self = t->func = t->site = 0;
	t->where = NULL;
	ev_timer_init(&t->w, timer_fire, delay, 0);
	lua_pushvalue(T, UTILS_TIMER);
	lua_setmetatable(T, -2);
	if (delay <= 0) {         /* as utils.spawn, but still a timer (expired) */
		lua_pushvalue(T, 2);
		lem_spawn(loop, T, 0);
		return 1;
	}
	lua_pushvalue(T, -1);
	t->self = lem_anchor(loop, T);
	lua_pushvalue(T, 2);
	t->func = lem_anchor(loop, T);
	if (lua_type(T, 3) == LUA_TSTRING) {
		lua_pushvalue(T, 3);
		t->site = lem_anchor(loop, T);
	} else {
		t->where = lua_touserdata(T, 3);
	}
	u->waits++;
	u->timers++;
	ev_timer_start(lem_ev(loop), &t->w);
	lem_deadline(loop, ev_now(lem_ev(loop)) + delay);
	return 1;
}

/* timer:cancel() --> true | nil, 'expired' */
int timer_cancel(lua_State *T)
{
	struct timer *t;

	utils_check(T, 1, utils_state(T)->timer_mt, "timer");
	t = lua_touserdata(T, 1);
	if (!ev_is_active(&t->w)) {
		lua_pushnil(T);
		lua_pushliteral(T, "expired");
		return 2;
	}
	ev_timer_stop(lem_ev(t->u->loop), &t->w);
	timer_release(t);
	lua_pushboolean(T, 1);
	return 1;
}
