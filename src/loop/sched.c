/* sched.c: the runqueue, resuming coroutines, and recycling finished ones. */
#include <stdlib.h>
#include <stdio.h>
#include "loop.h"

/* Resumes per loop iteration at most: enough to make a switch far cheaper than a poll,
 * few enough that I/O and timers are still served every iteration. */
#define LEM_BATCH 1024
/* Finished coroutines kept for reuse: a new lua_State costs about 1 KB and a malloc. */
#define LEM_POOL_MAX 1024

static void die(const char *what)
{
	fprintf(stderr, "lem: out of memory (%s)\n", what);
	abort();
}

void lem_sched_init(lem_loop *loop)
{
	loop->rq_cap = 64;
	loop->rq = malloc(loop->rq_cap * sizeof *loop->rq);
	if (!loop->rq) die("runqueue");
}

void lem_sched_free(lem_loop *loop)
{
	free(loop->rq);
	loop->rq = NULL;
}

/* Doubles the ring; entries that had wrapped around move up by the old capacity, in the
 * C array and in the anchoring table alike. */
static void rq_grow(lem_loop *loop)
{
	lua_State *L = loop->L;
	unsigned cap = loop->rq_cap, i, wrapped;
	struct lem_rq_entry *rq = realloc(loop->rq, 2 * cap * sizeof *rq);

	if (!rq) die("runqueue");
	wrapped = loop->rq_head + loop->rq_len > cap ? loop->rq_head + loop->rq_len - cap : 0;
	for (i = 0; i < wrapped; i++) {
		rq[cap + i] = rq[i];
		lua_rawgeti(L, LEM_RQ, i + 1);
		lua_rawseti(L, LEM_RQ, cap + i + 1);
		lua_pushnil(L);
		lua_rawseti(L, LEM_RQ, i + 1);
	}
	loop->rq = rq;
	loop->rq_cap = 2 * cap;
}

void lem_sched_push(lem_loop *loop, lua_State *T, uintptr_t token, int nargs)
{
	lua_State *L = loop->L;
	unsigned i;

	if (loop->closing)  /* finalizers at lua_close: nothing runs any more */
		return;
	if (loop->rq_len == loop->rq_cap)
		rq_grow(loop);
	i = (loop->rq_head + loop->rq_len++) & (loop->rq_cap - 1);
	loop->rq[i].T = T;
	loop->rq[i].token = token;
	loop->rq[i].nargs = nargs;
	lua_pushthread(T);
	lua_xmove(T, L, 1);
	lua_rawseti(L, LEM_RQ, i + 1);
	if (!ev_is_active(&loop->spin))
		ev_idle_start(loop->ev, &loop->spin);
}

/* Pushes onto L a coroutine with an empty stack, recycled when one is at hand. */
lua_State *lem_sched_thread(lem_loop *loop)
{
	lua_State *L = loop->L;

	if (loop->pool_len == 0 || loop->closing)
		return lua_newthread(L);
	lua_rawgeti(L, LEM_POOL, loop->pool_len);
	lua_pushnil(L);
	lua_rawseti(L, LEM_POOL, loop->pool_len--);
	return lua_tothread(L, -1);
}

/* Takes the finished coroutine on top of L (popped) for reuse. A coroutine that returned
 * normally is as good as new in both VMs: status 0, no call frame, empty stack. */
void lem_sched_recycle(lem_loop *loop)
{
	lua_State *L = loop->L;

	lua_settop(lua_tothread(L, -1), 0);
	if (loop->pool_len < LEM_POOL_MAX && !loop->closing)
		lua_rawseti(L, LEM_POOL, ++loop->pool_len);
	else
		lua_pop(L, 1);
}

/* Queues the next start-up step (LUA_INIT, -e, -l, the script) once the last one ended. */
void lem_sched_step(lem_loop *loop)
{
	lua_State *L = loop->L, *co;
	int i = loop->steps_next, n;

	loop->step = NULL;
	if (i >= loop->steps_len || loop->stopping)
		return;
	loop->steps_next++;
	co = lem_sched_thread(loop);
	lua_rawgeti(L, LEM_STEPS, 2 * i + 1);        /* function */
	lua_rawgeti(L, LEM_STEPS, 2 * i + 2);        /* arguments: {n = ..., ...} or nil */
	n = 0;
	if (lua_istable(L, -1)) {
		lua_getfield(L, -1, "n");
		n = (int)lua_tointeger(L, -1);
		lua_pop(L, 1);
		luaL_checkstack(L, n, "too many arguments");
		for (int k = 1; k <= n; k++)
			lua_rawgeti(L, -1 - (k - 1), k);
		lua_remove(L, -n - 1);
	} else {
		lua_pop(L, 1);
	}
	lua_checkstack(co, n + 1);
	lua_xmove(L, co, n + 1);
	for (int k = 1; k <= 2; k++) {               /* the step no longer needs anchoring */
		lua_pushnil(L);
		lua_rawseti(L, LEM_STEPS, 2 * i + k);
	}
	loop->step = co;
	lem_sched_push(loop, co, 0, n);
	lua_pop(L, 1);
}

/* Runs the coroutine at the head of the runqueue until it suspends, ends or fails. */
static void run_one(lem_loop *loop)
{
	lua_State *L = loop->L, *T;
	unsigned i = loop->rq_head;
	struct lem_rq_entry e = loop->rq[i];
	int status;

	loop->rq_head = (i + 1) & (loop->rq_cap - 1);
	loop->rq_len--;
	/* Move the anchor to L's stack: the ring slot may be reused while T runs. */
	lua_rawgeti(L, LEM_RQ, i + 1);
	lua_pushnil(L);
	lua_rawseti(L, LEM_RQ, i + 1);
	T = e.T;
	/* A woken coroutine must still be in the suspension it was woken from; anything else
	 * (resumed by hand meanwhile, or never suspended because lua_yield raised) is stale. */
	if (e.token && (lua_status(T) != LUA_YIELD ||
	                lua_touserdata(T, 1) != (void *)e.token)) {
		lua_pop(L, 1);
		return;
	}
	loop->running = loop->yielder = T;
	loop->suspended = 0;
	status = lua_resume(T, e.nargs);
	loop->running = loop->yielder = NULL;
	switch (status) {
	case LUA_YIELD:
		/* A plain coroutine.yield() of a lem coroutine: treat it as utils.yield(). */
		if (!loop->suspended) {
			uintptr_t token = (loop->token += 2) | 1;
			lua_settop(T, 0);
			lua_pushlightuserdata(T, (void *)token);
			lem_sched_push(loop, T, token, 0);
		}
		lua_pop(L, 1);
		break;
	case 0:
		if (T == loop->step)
			lem_sched_step(loop);
		lem_sched_recycle(loop);
		break;
	default:
		lem_loop_fail(loop, T);
		lua_pop(L, 1);
	}
}

void lem_sched_drain(struct ev_loop *ev, ev_prepare *w, int revents)
{
	lem_loop *loop = w->data;
	int n;

	(void)revents;
	for (n = LEM_BATCH; n > 0 && loop->rq_len && !loop->stopping; n--)
		run_one(loop);
	/* Keep the poll from blocking while work is left, or when stopping (ev_break takes
	 * effect only after this iteration's poll). */
	if (!loop->rq_len && !loop->stopping && ev_is_active(&loop->spin))
		ev_idle_stop(ev, &loop->spin);
}

/* ---- suspending and waking ---- */

static int cannot_suspend(lua_State *T)
{
	return luaL_error(T, "cannot suspend here: not a coroutine run by lem "
	                     "(inside coroutine.resume or coroutine.wrap?)");
}

/* Suspends T, marked as woken already, and queues it to resume with the nargs values on
 * top of its stack: utils.yield() and sleeps that end at once. */
int lem_sched_self(lua_State *T, lem_loop *loop, int nargs)
{
	uintptr_t token;

	if (T != loop->yielder)
		return cannot_suspend(T);
	token = (loop->token += 2) | 1;
	lua_pushlightuserdata(T, (void *)token);
	lua_insert(T, -nargs - 1);
	lem_sched_push(loop, loop->running, token, nargs);
	loop->suspended = 1;
	return lua_yield(T, nargs + 1);
}

/* Starts a suspension of T: fills w, or raises when T may not suspend. The caller
 * registers w, then returns lem_sched_yield(T, loop, w). */
void lem_sched_wait(lua_State *T, lem_loop *loop, lem_waiter *w)
{
	if (T != loop->yielder)
		cannot_suspend(T);
	w->co = loop->running;
	w->token = (loop->token += 2);
}

int lem_sched_yield(lua_State *T, lem_loop *loop, const lem_waiter *w)
{
	lua_pushlightuserdata(T, (void *)w->token);
	loop->suspended = 1;
	return lua_yield(T, 1);
}

int lem_suspend(lua_State *T, lem_waiter *w)
{
	lem_loop *loop = lem_loop_of(T);

	w->co = NULL;
	w->token = 0;
	lem_sched_wait(T, loop, w);
	return lem_sched_yield(T, loop, w);
}

int lem_wake(lem_loop *loop, const lem_waiter *w, int nargs)
{
	lua_State *co = w->co;

	if (!co || lua_status(co) != LUA_YIELD || lua_touserdata(co, 1) != (void *)w->token) {
		lua_pop(co, nargs);
		return 0;
	}
	lua_pushlightuserdata(co, (void *)(w->token | 1));  /* a second wake is stale */
	lua_replace(co, 1);
	lem_sched_push(loop, co, w->token | 1, nargs);
	return 1;
}

void lem_queue(lem_loop *loop, lua_State *T, int nargs)
{
	lem_sched_push(loop, T, 0, nargs);
}

/* ---- yield-safe pcall (PUC Lua 5.1): see pcall.c ---- */

/* step(handler, co, ...): starts (co == nil: ... = f, args) or resumes the coroutine that
 * runs a protected call, letting lem suspensions inside it pass through.
 * Returns co, false, yielded... while it runs; nil, true, ok, results... when it ended. */
int lem_sched_nested(lua_State *T)
{
	lem_loop *loop = lua_touserdata(T, lua_upvalueindex(1));
	lua_State *L = loop->L, *co, *saved;
	int n = lua_gettop(T), nargs, status;

	if (lua_isnil(T, 2)) {
		co = lem_sched_thread(loop);
		lua_xmove(L, T, 1);
		lua_replace(T, 2);
		nargs = n - 3;
		lua_checkstack(co, nargs + 1);
		lua_xmove(T, co, nargs + 1);
	} else {
		co = lua_tothread(T, 2);
		if (!co)
			return luaL_typerror(T, 2, "coroutine");
		nargs = n - 2;
		lua_checkstack(co, nargs);
		lua_xmove(T, co, nargs);
	}
	saved = loop->yielder;
	/* lem calls inside may suspend only if the caller itself may. */
	loop->yielder = saved == T ? co : NULL;
	loop->suspended = 0;
	status = lua_resume(co, nargs);
	loop->yielder = saved;
	n = lua_gettop(co);
	lua_checkstack(T, n + 3);
	if (status == LUA_YIELD) {                  /* T: handler, co */
		lua_pushboolean(T, 0);
		lua_xmove(co, T, n);
		return n + 2;
	}
	lua_pushnil(T);
	lua_pushboolean(T, 1);
	if (status == 0) {
		lua_pushboolean(T, 1);
		lua_xmove(co, T, n);
		lua_pushvalue(T, 2);
		lua_xmove(T, L, 1);
		lem_sched_recycle(loop);
		return n + 3;
	}
	lua_pushboolean(T, 0);
	if (!lua_isnil(T, 1)) {
		/* xpcall: run the handler on top of the failed coroutine's stack, which 5.1 keeps
		 * after an error, so debug.traceback() in it sees where the error happened. */
		lua_pushvalue(T, 1);
		lua_xmove(T, co, 1);
		lua_insert(co, -2);
		if (lua_pcall(co, 1, 1, 0) != 0) {
			lua_pop(co, 1);
			lua_pushliteral(co, "error in error handling");
		}
	}
	lua_xmove(co, T, 1);
	return 4;
}
