/* sched.c: the runqueue, resuming coroutines, suspending and waking them, recycling. */
#include <stdlib.h>
#include <stdio.h>
#include "loop.h"
#include "mailbox.h"

/* Resumes per loop iteration at most: enough to make a switch far cheaper than a poll,
 * few enough that I/O and timers are still served every iteration. */
#define LEM_BATCH 1024
/* Finished coroutines kept for reuse: a new lua_State costs about 1 KB and a malloc. */
#define LEM_POOL_MAX 1024
/* Runqueue entries per segment; PUC Lua lets a C function's stack hold 8000 values. */
#define LEM_SEG 1024

/* The loop that this thread runs (one loop per thread). */
__thread lem_loop *lem_current;

/* ---- the runqueue ----
 * A FIFO of segments. Each segment anchors its coroutines on the stack of a coroutine of
 * its own (A): queuing costs one lua_xmove and emptying a segment one lua_settop, where a
 * table would cost a store per push and another per pop. A consumed entry keeps its
 * coroutine alive until its segment is emptied, or the runqueue runs dry; that is also
 * what anchors the running coroutine. */

struct lem_rq_seg {
	struct lem_rq_seg *next;      /* in the runqueue, or in the free list */
	lua_State *A;
	int anchor;                   /* A's anchor slot */
	unsigned head, len;
	struct lem_rq_entry e[LEM_SEG];
};

/* Used-up segments kept for the next burst; more are freed, so that a burst of 100k
 * spawns does not hold 4 MB for ever. */
#define LEM_SEG_SPARE 2

static struct lem_rq_seg *seg_get(lem_loop *loop)
{
	struct lem_rq_seg *seg = loop->rq_free;

	if (seg) {
		loop->rq_free = seg->next;
		loop->rq_nfree--;
	} else {
		seg = malloc(sizeof *seg);
		if (!seg)
			lem_fatal("out of memory (runqueue)");
		seg->A = lua_newthread(loop->L);
		if (!lua_checkstack(seg->A, LEM_SEG))
			lem_fatal("out of memory (runqueue)");
		seg->anchor = lem_anchor(loop, loop->L);
		seg->head = seg->len = 0;
	}
	seg->next = NULL;
	return seg;
}

static void seg_empty(struct lem_rq_seg *seg)
{
	lua_settop(seg->A, 0);
	seg->head = seg->len = 0;
}

static void seg_put(lem_loop *loop, struct lem_rq_seg *seg)
{
	if (loop->rq_nfree >= LEM_SEG_SPARE) {
		lem_unanchor(loop, seg->anchor);   /* its coroutine becomes garbage */
		free(seg);
		return;
	}
	seg_empty(seg);
	seg->next = loop->rq_free;
	loop->rq_free = seg;
	loop->rq_nfree++;
}

void lem_sched_init(lem_loop *loop)
{
	loop->rq_first = loop->rq_last = seg_get(loop);
	loop->pool = lua_newthread(loop->L);
	if (!lua_checkstack(loop->pool, LEM_POOL_MAX))
		lem_fatal("out of memory (coroutine pool)");
	lua_replace(loop->L, LEM_POOL);
}

/* After lua_close: every segment is in the runqueue or in the free list. */
void lem_sched_free(lem_loop *loop)
{
	struct lem_rq_seg *lists[2] = { loop->rq_first, loop->rq_free }, *seg, *next;

	for (int i = 0; i < 2; i++)
		for (seg = lists[i]; seg; seg = next) {
			next = seg->next;
			free(seg);
		}
	loop->rq_free = loop->rq_first = loop->rq_last = NULL;
}

/* A C function as the body of a coroutine runs under the trampoline (trampoline.c) in
 * PUC Lua 5.1. Returns the new argument count. */
int lem_sched_body(lem_loop *loop, lua_State *co, int nargs)
{
#ifdef LEM_LUAJIT
	(void)loop; (void)co;
	return nargs;
#endif
	if (!lua_iscfunction(co, -nargs - 1))
		return nargs;
	lua_rawgeti(co, LUA_REGISTRYINDEX, loop->trampoline);   /* still there in lua_close */
	lua_insert(co, -nargs - 2);
	return nargs + 1;
}

/* A new entry at the tail of the runqueue; the caller puts its value (T, or the queued
 * function) on top of the returned segment's anchoring stack. */
static inline __attribute__((always_inline))
struct lem_rq_seg *rq_append(lem_loop *loop, lua_State *T, uintptr_t token, int nargs)
{
	struct lem_rq_seg *seg = loop->rq_last;
	struct lem_rq_entry *e;

	if (seg->len == LEM_SEG) {
		seg->next = seg_get(loop);
		seg = loop->rq_last = seg->next;
	}
	if (loop->rq_len++ == 0 && !ev_is_active(&loop->spin))
		ev_idle_start(loop->ev, &loop->spin);
	e = &seg->e[seg->len++];
	e->T = T;
	e->token = token;
	e->nargs = nargs;
	return seg;
}

void lem_sched_push(lem_loop *loop, lua_State *T, uintptr_t token, int nargs)
{
	struct lem_rq_seg *seg;

	if (loop->closing)  /* finalizers at lua_close: nothing runs any more */
		return;
	if (token == 0)
		nargs = lem_sched_body(loop, T, nargs);
	seg = rq_append(loop, T, token, nargs);
	lua_pushthread(T);
	lua_xmove(T, seg->A, 1);
}

/* Queues the function on top of `from` (popped) to run in a coroutine made when its turn
 * comes: a burst of timers or spawns then reuses the few coroutines that finish meanwhile
 * instead of making one each. */
void lem_sched_push_func(lem_loop *loop, lua_State *from)
{
	if (loop->closing) {
		lua_pop(from, 1);
		return;
	}
	lua_xmove(from, rq_append(loop, NULL, 0, 0)->A, 1);
}

/* Queues T, which the entry just taken runs and which has just yielded with nargs values,
 * to run again. Its value is still on the stack of that entry's segment: when that is the
 * tail segment, with room, one lua_pushvalue there anchors the new entry. */
static void rq_requeue(lem_loop *loop, lua_State *T, int nargs)
{
	struct lem_rq_seg *seg = loop->rq_seg;

	if (loop->closing || seg != loop->rq_last || seg->len == LEM_SEG ||
	    seg->e[seg->head - 1].T != T) {      /* not run from a queued coroutine */
		lem_sched_push(loop, T, LUA_YIELD, nargs);
		return;
	}
	rq_append(loop, T, LUA_YIELD, nargs);   /* in seg: it has room */
	lua_pushvalue(seg->A, (int)seg->head);
}

/* The next entry to run; the runqueue is not empty. A used-up segment is recycled only
 * when the next one is reached: the coroutine of its last entry has run by then. */
static struct lem_rq_entry *rq_pop(lem_loop *loop)
{
	struct lem_rq_seg *seg = loop->rq_first;

	if (seg->head == seg->len) {
		loop->rq_first = seg->next;
		seg_put(loop, seg);
		seg = loop->rq_first;
	}
	loop->rq_seg = seg;
	if (--loop->rq_len == 0 && seg->head > 0) {
		/* The runqueue runs dry: drop the anchors of the entries already run, so that
		 * coroutines parked meanwhile become garbage without delay. The entry about to
		 * run is the last one: its value is on top of A. */
		lua_replace(seg->A, 1);
		if (seg->head > 1)
			lua_settop(seg->A, 1);
		seg->e[0] = seg->e[seg->head];
		seg->head = 0;
		seg->len = 1;
	}
	return &seg->e[seg->head++];
}

/* ---- coroutines ---- */

/* Finished coroutines wait for reuse on the stack of a coroutine of their own (P): taking
 * one and giving one back are each a lua_xmove. */

/* Pushes onto L a coroutine with an empty stack, recycled when one is at hand. */
lua_State *lem_sched_thread(lem_loop *loop)
{
	if (loop->pool_len == 0 || loop->closing)
		return lua_newthread(loop->L);
	loop->pool_len--;
	lua_xmove(loop->pool, loop->L, 1);
	return lua_tothread(loop->L, -1);
}

/* Keeps the finished coroutine T for reuse. One that returned normally is as good as new
 * in both VMs (status 0, no call frame): only its stack needs emptying. */
void lem_sched_recycle(lem_loop *loop, lua_State *T)
{
	lua_settop(T, 0);
	if (loop->pool_len >= LEM_POOL_MAX || loop->closing)
		return;
#ifndef LEM_LUAJIT   /* LuaJIT's hook is one for all coroutines, not T's own */
	if (lua_gethook(T))       /* a new coroutine has none: neither has a reused one */
		lua_sethook(T, NULL, 0, 0);
#endif
	loop->pool_len++;
	lua_pushthread(T);
	lua_xmove(T, loop->pool, 1);
}

/* Queues the next start-up step (LUA_INIT, -e, -l, the script) once the last one ended. */
void lem_sched_step(lem_loop *loop)
{
	lua_State *L = loop->L, *co;
	int i = loop->steps_next, n = 0;

	loop->step = NULL;
	if (i >= loop->steps_len || loop->stopping)
		return;
	loop->steps_next++;
	co = lem_sched_thread(loop);
	lua_rawgeti(L, LEM_STEPS, 2 * i + 1);        /* function */
	lua_rawgeti(L, LEM_STEPS, 2 * i + 2);        /* its arguments: {n = ..., ...} or nil */
	if (lua_istable(L, -1)) {
		lua_getfield(L, -1, "n");
		n = (int)lua_tointeger(L, -1);
		lua_pop(L, 1);
		luaL_checkstack(L, n, "too many arguments");
		for (int k = 1; k <= n; k++)
			lua_rawgeti(L, -k, k);
	}
	lua_remove(L, -n - 1);
	lua_checkstack(co, n + 2);
	lua_xmove(L, co, n + 1);
	for (int k = 1; k <= 2; k++) {               /* the step needs no anchor any more */
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
	struct lem_rq_entry *e = rq_pop(loop);
	lua_State *T = e->T;
	int nargs = e->nargs, made = 0, status;

	if (!T) {   /* a queued function: its coroutine, made now, is anchored on L */
		struct lem_rq_seg *seg = loop->rq_seg;
		T = lem_sched_thread(loop);
		lua_pushvalue(seg->A, (int)seg->head);
		lua_xmove(seg->A, T, 1);
		nargs = lem_sched_body(loop, T, 0);
		made = 1;
	} else if (e->token > LUA_YIELD ? lua_status(T) != LUA_YIELD ||
	                                  lua_gettop(T) <= nargs ||
	                                  lua_touserdata(T, -nargs - 1) != (void *)e->token
	                                : lua_status(T) != (int)e->token) {
		/* The coroutine must be in the state it was queued in: new (token 0),
		 * suspended by itself (LUA_YIELD), or in the very suspension it was woken
		 * from. Anything else (resumed by hand meanwhile, or woken where lua_yield
		 * raised) is stale. */
		return;
	}
	loop->running = loop->yielder = loop->inner = T;
	loop->suspended = 0;
	status = lua_resume(T, nargs);
	loop->running = loop->yielder = loop->inner = NULL;
	if (status == LUA_YIELD) {
		if (!loop->suspended) {     /* a plain coroutine.yield(): as utils.yield() */
			lua_settop(T, 0);
			rq_requeue(loop, T, 0);
		}
	} else if (status == 0) {
		if (T == loop->step)
			lem_sched_step(loop);
		lem_sched_recycle(loop, T);
	} else {
		lem_loop_fail(loop, T);
	}
	if (made)
		lua_pop(loop->L, 1);
}

void lem_sched_drain(struct ev_loop *ev, ev_prepare *w, int revents)
{
	lem_loop *loop = w->data;
	int n;

	(void)revents;
	for (n = LEM_BATCH; n > 0 && loop->rq_len && !loop->stopping; n--) {
		/* another loop's exit stops this one before its next poll */
		if (loop->mbox && __atomic_load_n(&loop->mbox->stop, __ATOMIC_RELAXED)) {
			lem_loop_stop(loop, lem_group_status(loop->group));
			break;
		}
		run_one(loop);
	}
	if (loop->rq_len || loop->stopping)
		return;   /* keep the poll from blocking: work is left, or ev_break is pending */
	seg_empty(loop->rq_first);
	ev_idle_stop(ev, &loop->spin);
	lem_loop_before_poll(loop);
}

/* ---- suspending and waking ---- */

static int cannot_suspend(lua_State *T)
{
	return luaL_error(T, "cannot suspend here: not a coroutine run by lem "
	                     "(inside coroutine.resume or coroutine.wrap?)");
}

/* Suspends T and queues it to resume with the nargs values on top of its stack:
 * utils.yield() and sleeps that end at once. lua_yield comes first so that, where T
 * cannot yield (a C-call boundary), it raises before anything is queued. */
int lem_sched_self(lua_State *T, lem_loop *loop, int nargs)
{
	if (T != loop->yielder)
		return cannot_suspend(T);
	lua_yield(T, nargs);
	rq_requeue(loop, loop->running, nargs);
	loop->suspended = 1;
	return -1;
}

/* The value on top of a suspended coroutine's stack is the token of its suspension; the
 * values a waker gives go above it. */

/* Starts a suspension of T: fills w, or raises where T may not suspend. The caller then
 * registers w and returns lem_sched_yield(). If that lua_yield raises, w is stale. */
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
	lua_yield(T, 1);
	loop->suspended = 1;
	return -1;
}

/* For lem's own modules: suspends T first and lets the caller register w afterwards, so
 * that nothing is left registered where T cannot yield (lua_yield raises first). The keep
 * values on top of T's stack stay at indices 1..keep, the token above them; the caller
 * leaves T's stack so and returns lem_sched_suspended(). */
void lem_sched_suspend(lua_State *T, lem_loop *loop, lem_waiter *w, int keep)
{
	lem_sched_wait(T, loop, w);
	lua_pushlightuserdata(T, (void *)w->token);
	lua_yield(T, keep + 1);
}

int lem_sched_suspended(lua_State *T, lem_loop *loop)
{
	(void)T;
	loop->suspended = 1;
	return -1;
}

void lem_wait(lua_State *T, lem_waiter *w)
{
	lem_sched_wait(T, lem_current, w);
}

int lem_yield(lua_State *T, const lem_waiter *w)
{
	return lem_sched_yield(T, lem_current, w);
}

/* Moves the nargs resume values on top of `from` onto the suspended co. */
static void move_args(lua_State *co, lua_State *from, int nargs)
{
	if (nargs > 0) {
		lua_checkstack(co, nargs);   /* may grow the stack; it never collects */
		lua_xmove(from, co, nargs);
	}
}

/* Whether w's coroutine is still in the suspension that filled w. */
int lem_sched_valid(const lem_waiter *w)
{
	return w->co && lua_status(w->co) == LUA_YIELD &&
	       lua_touserdata(w->co, -1) == (void *)w->token;
}

int lem_wake(lem_loop *loop, const lem_waiter *w, lua_State *from, int nargs)
{
	if (!lem_sched_valid(w) || loop->closing) {
		lua_pop(from, nargs);
		return 0;
	}
	lua_pushlightuserdata(w->co, (void *)(w->token | 1));   /* a second wake is stale */
	lua_replace(w->co, -2);
	move_args(w->co, from, nargs);
	lem_sched_push(loop, w->co, w->token | 1, nargs);
	return 1;
}

/* Queues the suspended co, which its waker checked and which no other waker can wake
 * from this suspension, to resume with the nargs values under co on top of `from`; token
 * is the one on top of co's stack. Pops co and the values. */
void lem_sched_wake(lem_loop *loop, lua_State *co, uintptr_t token, lua_State *from,
                    int nargs)
{
	if (loop->closing) {
		lua_pop(from, nargs + 1);
		return;
	}
	lua_xmove(from, rq_append(loop, co, token, nargs)->A, 1);
	move_args(co, from, nargs);
}

void lem_queue(lem_loop *loop, lua_State *T, int nargs)
{
	lem_sched_push(loop, T, 0, nargs);
}

/* ---- yield-safe pcall for PUC Lua 5.1 (see pcall.c) ----
 * step(handler, co, ...) starts (co == nil: ... is f and its arguments) or resumes the
 * coroutine that runs a protected call; lem suspensions inside it pass through. Returns
 * co, false, yielded... while it runs; nil, true, ok, results... once it has ended. */
int lem_sched_nested(lua_State *T)
{
	lem_loop *loop = lem_current;
	lua_State *L = loop->L, *co, *saved;
	int n = lua_gettop(T), nargs, status;

	if (lua_isnil(T, 2)) {
		if (n < 3) {   /* pcall(): as the stock one, from the wrapper's caller */
			lua_Debug ar;
			const char *name = NULL;
			if (lua_getstack(T, 1, &ar) && lua_getinfo(T, "n", &ar))
				name = ar.name;
			luaL_where(T, 2);
			lua_pushfstring(T, "bad argument #1 to '%s' (value expected)",
			                name ? name : "?");
			lua_concat(T, 2);
			return lua_error(T);
		}
		co = lem_sched_thread(loop);
		lua_xmove(L, T, 1);
		lua_replace(T, 2);
		nargs = n - 3;
		lua_checkstack(co, nargs + 2);
		lua_xmove(T, co, nargs + 1);
		nargs = lem_sched_body(loop, co, nargs);
	} else {
		co = lua_tothread(T, 2);
		if (!co)
			return luaL_typerror(T, 2, "coroutine");
		nargs = n - 2;
		lua_checkstack(co, nargs);
		lua_xmove(T, co, nargs);
	}
	saved = loop->yielder;
	loop->yielder = saved == T ? co : NULL;   /* suspend inside only if T itself may */
#ifndef LEM_LUAJIT
	lua_setlevel(T, co);   /* nested pcalls count as C calls: deep nesting is an error */
	lem_pcall_enter(T, co, !lua_isnil(T, 1));   /* hooks, and co's caller for debug */
#endif
	loop->suspended = 0;
	loop->inner = co;
	status = lua_resume(co, nargs);
	loop->inner = T;
	loop->yielder = saved;
	if (status != LUA_YIELD && status != 0 && !lua_isnil(T, 1)) {
		/* xpcall: run the handler on top of the failed coroutine's stack, which 5.1 keeps
		 * after an error, so that debug.traceback() in it sees where the error was. */
		lua_pushvalue(T, 1);
		lua_xmove(T, co, 1);
		lua_insert(co, -2);
		if (lua_pcall(co, 1, 1, 0) != 0) {
			lua_pop(co, 1);
			lua_pushliteral(co, "error in error handling");
		}
	}
#ifndef LEM_LUAJIT
	lem_pcall_leave(T, co);
#endif
	n = status == LUA_YIELD || status == 0 ? lua_gettop(co) : 1;   /* or the error */
	lua_checkstack(T, n + 3);
	if (status == LUA_YIELD) {                  /* T: handler, co */
		lua_pushboolean(T, 0);
		lua_xmove(co, T, n);
		return n + 2;
	}
	lua_pushnil(T);
	lua_pushboolean(T, 1);
	lua_pushboolean(T, status == 0);
	lua_xmove(co, T, n);
	if (status == 0)
		lem_sched_recycle(loop, co);
	return n + 3;
}
