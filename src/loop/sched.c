/* sched.c: the runqueue, resuming coroutines, suspending and waking them, recycling. */
#include <stdlib.h>
#include <stdio.h>
#include "loop.h"
#include "mailbox.h"

/* Resumes per loop iteration at most: enough to make a switch far cheaper than a poll,
 * few enough that I/O and timers are still served every iteration. */
#define LEM_BATCH 1024
/* Finished coroutines kept for reuse: a new lua_State costs about 1 KB and a malloc. */
#define LEM_SPARES_MAX 1024
/* Runqueue entries per segment; PUC Lua lets a C function's stack hold 8000 values. */
#define LEM_SEG 1024

/* Tokens, one per suspension, are multiples of TOKEN_STEP; their low bits say that the
 * suspended coroutine is a C body (TOKEN_CBODY) and, on the mark a wake pushes, that it
 * has been woken (1). */
#define TOKEN_STEP  4
#define TOKEN_CBODY 2

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

/* Entries run before a runqueue that runs dry drops their anchors: one coroutine that
 * wakes another, back and forth, would otherwise pay that at every switch. */
#define LEM_SEG_COMPACT 32

/* Used-up segments kept for the next burst; more are freed, so that a burst of 100k
 * spawns does not hold 4 MB for ever. */
#define LEM_SEG_SPARE 2

/* A segment's coroutine, made on S and anchored (lem_protect). */
static int seg_thread(lua_State *S, void *ud)
{
	struct lem_rq_seg *seg = ((void **)ud)[1];

	seg->A = lua_newthread(S);
	if (!lua_checkstack(seg->A, LEM_SEG))
		return luaL_error(S, "not enough memory");
	seg->anchor = lem_anchor(((void **)ud)[0], S);
	return 0;
}

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
		/* in a protected call: a finalizer may err in the collector step this starts,
		 * and then the segment is made again (that finalizer has run) */
		while (lem_protect(loop, loop->L, seg_thread, (void *[]){ loop, seg }) != 0) {
			lem_loop_uncaught(loop, "the runqueue grew");
			lua_pop(loop->L, 2);
		}
		seg->head = seg->len = 0;
	}
	seg->next = NULL;
	return seg;
}

/* Grows co's stack to *(int *)ud free slots, in co itself (lem_protect_in). */
static int co_stack(lua_State *co, void *ud)
{
	lua_checkstack(co, *(int *)ud);
	return 0;
}

/* Raises Lua's own memory error's message on T, without a position: as the VM's. */
static int rq_nomem(lua_State *T)
{
	lua_pushliteral(T, "not enough memory");
	return lua_error(T);
}

/* A spawn from T that needs a new segment makes it here, on T, where a memory error is
 * T's to catch: seg_get's own failure is fatal, and a loop of spawns (each queues a
 * function and allocates nothing else) ran into it under a memory limit. */
static void rq_reserve(lem_loop *loop, lua_State *T)
{
	struct lem_rq_seg *seg;
	lua_State *A;
	int anchor;

	if (loop->rq_last->len < LEM_SEG || loop->rq_free || T == loop->L || loop->closing)
		return;
	A = lua_newthread(T);
	if (lem_protect_in(loop, A, co_stack, &(int){ LEM_SEG }) != 0) {
		lua_pop(T, 1);
		rq_nomem(T);
	}
	lua_checkstack(A, LEM_SEG);      /* the room is there: this only marks it as in use */
	anchor = lem_anchor(loop, T);
	if (!(seg = malloc(sizeof *seg))) {
		lem_unanchor(loop, anchor);
		rq_nomem(T);
	}
	seg->A = A;
	seg->anchor = anchor;
	seg->head = seg->len = 0;
	seg->next = NULL;
	loop->rq_free = seg;
	loop->rq_nfree++;
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
	loop->spares = lua_newthread(loop->H);
	if (!lua_checkstack(loop->spares, LEM_SPARES_MAX))
		lem_fatal("out of memory (spare coroutines)");
	lua_replace(loop->H, LEM_SPARES);
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

/* ---- C functions as bodies (PUC Lua 5.1) ----
 * utils.spawn(s.sleep, s) and pcall(utils.yield) make a coroutine whose body is a C
 * function that may suspend. PUC Lua 5.1 cannot resume such a coroutine (its
 * coroutine.create takes Lua functions only): once the body has yielded there is no
 * Lua frame under it to return to. But a body that yielded has nothing left to do but
 * return the values it is resumed with, so lem does not resume it: the coroutine has
 * ended with those values. It keeps its yielded status and is never reused. LuaJIT
 * could resume such a body; both builds end it alike (only body_yielded is PUC's).
 * The runqueue knows a C body from its start (loop->cbody while it runs): its
 * suspensions carry TOKEN_CBODY, its yields are queued as LEM_RQ_ENDED. A yield-safe
 * pcall's body looks at its stack instead (body_yielded), as it is resumed rarely. */
#ifndef LEM_LUAJIT
static int body_yielded(lua_State *co)
{
	lua_Debug ar;

	return !lua_getstack(co, 1, &ar);   /* the yielded C function is the body */
}
#endif

#ifdef LEM_LUAJIT
/* LuaJIT runs a new coroutine's body f(...) as xpcall(f, handler, ...), whose handler sees
 * the frames that unwinding loses (loop.c). T: f, nargs arguments. */
static int body_wrap(lem_loop *loop, lua_State *T, int nargs)
{
	if (nargs > LUA_MINSTACK - 2)
		lua_checkstack(T, 1);
	lua_pushvalue(loop->H, nargs ? LEM_BODY : LEM_BODY0);
	lua_xmove(loop->H, T, 1);
	lua_insert(T, -nargs - 2);
	return nargs + 1;
}
#endif

/* A new entry at the tail of the runqueue; the caller puts its value (T, or the queued
 * function) on top of the returned segment's anchoring stack. */
static inline __attribute__((always_inline))
struct lem_rq_seg *rq_append(lem_loop *loop, lua_State *T, int kind, uintptr_t token,
                             int nargs, lem_site site)
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
	e->kind = kind;
	e->token = token;
	e->nargs = nargs;
	e->site = site;
	return seg;
}

static void rq_push(lem_loop *loop, lua_State *T, int kind, uintptr_t token, int nargs,
                    lem_site site)
{
	struct lem_rq_seg *seg;

	if (loop->closing)  /* finalizers at lua_close: nothing runs any more */
		return;
	seg = rq_append(loop, T, kind, token, nargs, site);
	lua_pushthread(T);
	lua_xmove(T, seg->A, 1);
}

/* Queues the new coroutine T: a function and nargs arguments on its stack. */
void lem_sched_start(lem_loop *loop, lua_State *T, int nargs)
{
	rq_push(loop, T, LEM_RQ_NEW, 0, nargs, 0);
}

/* Queues the function on top of `from` (popped) to run in a coroutine made when its turn
 * comes: a burst of timers or spawns then reuses the few coroutines that finish meanwhile
 * instead of making one each. */
void lem_sched_push_func(lem_loop *loop, lua_State *from, lem_site site)
{
	if (loop->closing) {
		lua_pop(from, 1);
		lem_site_drop(loop, site);
		return;
	}
	lua_xmove(from, rq_append(loop, NULL, LEM_RQ_NEW, 0, 0, site)->A, 1);
}

/* Queues T, which the entry just taken runs and which has just yielded with nargs values,
 * to run again. Its value is still on the stack of that entry's segment: when that is the
 * tail segment, with room, one lua_pushvalue there anchors the new entry. */
static void rq_requeue(lem_loop *loop, lua_State *T, int nargs)
{
	struct lem_rq_seg *seg = loop->rq_seg;
	int kind = loop->cbody ? LEM_RQ_ENDED : LEM_RQ_YIELDED;

	if (loop->closing || seg != loop->rq_last || seg->len == LEM_SEG ||
	    seg->e[seg->head - 1].T != T) {      /* not run from a queued coroutine */
		rq_push(loop, T, kind, 0, nargs, loop->site);
		return;
	}
	rq_append(loop, T, kind, 0, nargs, loop->site);     /* in seg: it has room */
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
	if (--loop->rq_len == 0 && seg->head >= LEM_SEG_COMPACT) {
		/* The runqueue runs dry: drop the anchors of the entries already run, so that
		 * coroutines parked meanwhile become garbage soon, not only when the batch
		 * ends. The entry about to run is the last one: its value is on top of A. */
		lua_replace(seg->A, 1);
		if (seg->head > 1)
			lua_settop(seg->A, 1);
		seg->e[0] = seg->e[seg->head];
		seg->head = 0;
		seg->len = 1;
	}
	return &seg->e[seg->head++];
}

/* Whether another thread asked this loop to stop (its mailbox's request). */
static inline int stop_asked(lem_loop *loop)
{
	return loop->mbox && __atomic_load_n(&loop->mbox->stop, __ATOMIC_SEQ_CST);
}

/* ---- coroutines ---- */

/* Finished coroutines wait for reuse on the stack of a coroutine of their own (P): taking
 * one and giving one back are each a lua_xmove. */

/* [-0, +1, m] on on: a coroutine with an empty stack, recycled when one is at hand. */
lua_State *lem_sched_pushthread_on(lem_loop *loop, lua_State *on)
{
	lua_State *co;

	if (loop->nspares == 0 || loop->closing) {
		co = lua_newthread(on);
		if (on != loop->L)   /* it took on's hook: L's, as if made there */
			lua_sethook(co, lua_gethook(loop->L), lua_gethookmask(loop->L),
			            lua_gethookcount(loop->L));
		return co;
	}
	loop->nspares--;
	lua_xmove(loop->spares, on, 1);
	co = lua_tothread(on, -1);
#ifdef LEM_LUAJIT
	lua_settop(co, 0);        /* its body function (queued_thread) */
#endif
	return co;
}

lua_State *lem_sched_pushthread(lem_loop *loop)
{
	return lem_sched_pushthread_on(loop, loop->L);
}

/* [-0, +1] on S: a new coroutine for queued_thread (lem_protect). */
static int push_thread(lua_State *S, void *ud)
{
#ifdef LEM_LUAJIT
	lem_loop *loop = ud;

	lua_newthread(S);
	lua_pushvalue(loop->H, LEM_BODY0);
	lua_xmove(loop->H, lua_tothread(S, -1), 1);
#else
	lem_sched_pushthread_on(ud, S);      /* no spare: a new one */
#endif
	return 1;
}

/* [-0, +1|+0] on L: the coroutine of a queued function when its turn comes; LuaJIT's
 * holds LEM_BODY0 alone, which body_wrap puts first (a spare keeps it from its last run:
 * the body functions return it first). A spare costs nothing; a new one is made in a
 * protected call, as the allocation may raise: out of memory, or in a finalizer (__gc)
 * run by the collector step it starts. Such an error has no coroutine to go to: NULL,
 * and lem_loop_uncaught. */
static lua_State *queued_thread(lem_loop *loop)
{
	lua_State *L = loop->L;

	if (loop->nspares > 0 && !loop->closing) {
		loop->nspares--;
		lua_xmove(loop->spares, L, 1);
		return lua_tothread(L, -1);
	}
	if (lem_protect(loop, L, push_thread, loop) == 1)
		return lua_tothread(L, -1);
	lem_loop_uncaught(loop, "a coroutine was made");
	lua_pop(L, 2);
	return NULL;
}

/* Keeps the finished coroutine T for reuse. One that returned normally is as good as new
 * in both VMs (status 0, no call frame): only its stack needs emptying. */
static void sched_recycle(lem_loop *loop, lua_State *T)
{
#ifndef LEM_LUAJIT   /* LuaJIT's holds LEM_BODY0 alone, which the body returned */
	lua_settop(T, 0);
#endif
	if (loop->nspares >= LEM_SPARES_MAX || loop->closing)
		return;
#ifndef LEM_LUAJIT   /* LuaJIT's hook is one for all coroutines, not T's own */
	if (lua_gethook(T))       /* a new coroutine has none: neither has a reused one */
		lua_sethook(T, NULL, 0, 0);
	/* Nor a C call level: a protected call's helper got its caller's (lem_sched_nested),
	 * and a helper reused as a caller would pass on one more each time, until "C stack
	 * overflow" (after some 200 generations of connections and their requests). The
	 * spares' own thread never runs: its level is 0. */
	lua_setlevel(loop->spares, T);
#endif
	loop->nspares++;
	lua_pushthread(T);
	lua_xmove(T, loop->spares, 1);
}

/* ---- a coroutine's own error handler (lem_onerror) ----
 * Kept in two weak tables by coroutine (LEM_ONERROR, LEM_ONERRVAL) until the coroutine
 * ends: it is taken by a failure (lem_loop_fail) and dropped by a return, before the
 * coroutine is reused. */

/* [-0, +(0|2), -] on L: T's function and its value, which T no longer has; returns 0 and
 * pushes nothing when T has none (one look-up: the cost of a return while some are set).
 * Pushes T on T's own stack for a moment: T has ended, or is running. */
static int onerror_take(lem_loop *loop, lua_State *T, lua_State *L)
{
	lua_State *H = loop->H;

	lua_pushthread(T);
	lua_xmove(T, H, 1);
	lua_pushvalue(H, -1);
	lua_rawget(H, LEM_ONERROR);
	if (lua_isnil(H, -1)) {
		lua_pop(H, 2);
		return 0;
	}
	lua_xmove(H, L, 1);
	lua_pushvalue(H, -1);
	lua_rawget(H, LEM_ONERRVAL);
	lua_xmove(H, L, 1);
	for (int slot = LEM_ONERROR; slot <= LEM_ONERRVAL; slot++) {
		lua_pushvalue(H, -1);
		lua_pushnil(H);
		lua_rawset(H, slot);      /* setting nil allocates nothing */
	}
	lua_pop(H, 1);
	loop->onerrors--;
	return 1;
}

void lem_onerror(lua_State *T)
{
	lem_loop *loop = lem_loop_of(T);
	lua_State *co = loop->running, *H = loop->H;
	int set = !lua_isnil(T, -2);

	if (!co)
		luaL_error(T, "no coroutine of lem runs here");
	luaL_checkstack(T, 3, NULL);
	if (onerror_take(loop, co, T))
		lua_pop(T, 2);
	if (!set) {
		lua_pop(T, 2);
		lua_pushnil(T);
		lua_pushnil(T);
	}
	/* both, so that a value left alone goes too; the value first: a memory error in the
	 * second rawset leaves no function set */
	for (int slot = LEM_ONERRVAL; slot >= LEM_ONERROR; slot--) {
		lua_pushvalue(H, slot);
		lua_xmove(H, T, 1);
		lua_insert(T, -2);        /* T: ..., table, v */
		lua_pushthread(co);
		if (co != T)
			lua_xmove(co, T, 1);
		lua_insert(T, -2);        /* T: ..., table, co, v */
		lua_rawset(T, -3);
		lua_pop(T, 1);
	}
	loop->onerrors += set;
}

static int onerror_spawn(lua_State *S, void *ud)
{
	lua_xmove(ud, S, 3);
	lem_spawn(lem_current, S, 2);
	return 0;
}

int lem_sched_onerror(lem_loop *loop, lua_State *T, lua_State *L)
{
	if (!onerror_take(loop, T, L))   /* L: message, f, value */
		return 0;
	lua_pushvalue(L, -3);
	lua_insert(L, -2);               /* L: message, f, message, value */
	if (lem_protect(loop, L, onerror_spawn, L) == 0)
		return 1;
	lua_pop(L, 2);                   /* the spawn's nil and message: report the error */
	return 0;
}

/* T failed: its error is reported (oom: a memory error, whose memory T may still hold). */
static void sched_fail(lem_loop *loop, lua_State *T, int oom)
{
	if (oom)
		lem_loop_oom(loop, T, 0);
	lem_loop_fail(loop, T);
	lem_site_drop(loop, loop->site);
	if (oom)
		lem_loop_oom(loop, T, 1);
}

/* Runs the coroutine at the head of the runqueue until it suspends, ends or fails. The
 * coroutine must be in the state it was queued in: new, yielded, or in the very
 * suspension it was woken from; anything else (resumed by hand meanwhile) is stale. */
static void run_one(lem_loop *loop)
{
	struct lem_rq_entry *e = rq_pop(loop);
	lua_State *T = e->T;
	int nargs = e->nargs, made = 0, status;
	unsigned long seq;

	switch (e->kind) {
	case LEM_RQ_WOKEN:
		if (lua_status(T) != LUA_YIELD || lua_gettop(T) <= nargs ||
		    lua_touserdata(T, -nargs - 1) != (void *)e->token)
			return;
		if (e->token & TOKEN_CBODY)
			goto ended;
		break;
	case LEM_RQ_YIELDED:
		if (lua_status(T) != LUA_YIELD)
			return;
		break;
	case LEM_RQ_ENDED:
		if (lua_status(T) != LUA_YIELD)
			return;
		goto ended;
	default:                    /* LEM_RQ_NEW */
		if (!T) {           /* a queued function: its coroutine, made now, is anchored on L */
			struct lem_rq_seg *seg = loop->rq_seg;
			if (!(T = queued_thread(loop)))
				return;
			lua_pushvalue(seg->A, (int)seg->head);
			lua_xmove(seg->A, T, 1);
			made = 1;
		}
		loop->cbody = lua_iscfunction(T, -nargs - 1);
#ifdef LEM_LUAJIT
		nargs = made ? 1 : body_wrap(loop, T, nargs);
#endif
	}
	loop->running = loop->yielder = loop->inner = T;
	if (stop_asked(loop)) {
		/* Another loop's exit or a signal stops this one before it resumes anything.
		 * Checked once inner is set: an interrupt that came before it found nothing to
		 * hook (lem_loop_interrupt), and the request it answers is seen here. */
		loop->running = loop->yielder = loop->inner = NULL;
		loop->cbody = 0;
		loop->unrun++;      /* still queued, for the deadline's report */
		lem_loop_stop(loop, lem_group_status(loop->group));
		if (made)
			lua_pop(loop->L, 1);
		return;
	}
	loop->suspended = 0;
	seq = loop->rseq + 1;
	__atomic_store_n(&loop->rseq, seq, __ATOMIC_RELAXED);   /* odd: it runs (stats.c) */
	loop->site = e->site;
	loop->site_co = T;
	loop->note = NULL;
	status = lua_resume(T, nargs);
	loop->running = loop->yielder = loop->inner = NULL;
	__atomic_store_n(&loop->rseq, ++seq, __ATOMIC_RELAXED);
	if (seq >= loop->tm_next)
		lem_stats_time(loop, T);
	if (status == LUA_YIELD) {
		if (!loop->suspended) {     /* a plain coroutine.yield(): as utils.yield() */
			lua_settop(T, 0);
			rq_requeue(loop, T, 0);
		}
#ifdef LEM_LUAJIT
	} else if (status == 0 && lua_gettop(T) != 1) {   /* body0, xpcall's false, error */
		sched_fail(loop, T, lua_type(T, -1) == LUA_TSTRING &&
		           strcmp(lua_tostring(T, -1), "not enough memory") == 0);
#endif
	} else if (status == 0) {
		if (T == loop->step)
			loop->step_done(loop);
		if (loop->onerrors && onerror_take(loop, T, loop->L))
			lua_pop(loop->L, 2);
		sched_recycle(loop, T);
		lem_site_drop(loop, loop->site);
	} else {
		sched_fail(loop, T, status == LUA_ERRMEM);
	}
	loop->cbody = 0;
	if (made)
		lua_pop(loop->L, 1);
	return;
ended:                          /* a C body that yielded: it has returned */
	if (T == loop->step)
		loop->step_done(loop);
}

void lem_sched_drain(struct ev_loop *ev, ev_prepare *w, int revents)
{
	lem_loop *loop = w->data;
	int n;

	(void)revents;
	if (loop->rq_len)
		lem_stats_batch(loop, 1);
	for (n = LEM_BATCH; n > 0 && loop->rq_len && !loop->stopping; n--)
		run_one(loop);
	lem_stats_batch(loop, 0);
	if (loop->rq_len || loop->stopping)
		return;   /* keep the poll from blocking: work is left, or ev_break is pending */
	seg_empty(loop->rq_first);
	ev_idle_stop(ev, &loop->spin);
	lem_loop_before_poll(loop);
}

/* ---- suspending and waking (lem.h) ---- */


static int cannot_suspend(lua_State *T)
{
	return luaL_error(T, "cannot suspend here: not a coroutine run by lem "
	                     "(inside coroutine.resume or coroutine.wrap?)");
}

int lem_suspendable(lua_State *T)
{
	return T == lem_current->yielder;
}

/* lua_yield comes first so that, where T cannot yield (a C-call boundary), it raises
 * before anything is queued. */
int lem_yield(lua_State *T, int n)
{
	lem_loop *loop = lem_current;

	if (T != loop->yielder)
		return cannot_suspend(T);
	lua_yield(T, n);
	rq_requeue(loop, loop->running, n);
	loop->suspended = 1;
	return -1;
}

/* The value on top of a suspended coroutine's stack is the token of its suspension (its
 * mark); the values a waker gives go above it. Tokens are even; a wake pushes the token
 * made odd above the mark, so that a second wake finds it stale. The coroutine's C
 * function returns only the values above that, when it resumes. */
int lem_suspend(lua_State *T, lem_waiter *w, int keep)
{
	lem_loop *loop = lem_current;

	if (T != loop->yielder)
		return cannot_suspend(T);
	if (loop->debug)             /* may raise: nothing has changed yet */
		lem_probe_parked(loop, T);
	uintptr_t token = loop->token + TOKEN_STEP;

	if (loop->cbody && T == loop->running)
		token |= TOKEN_CBODY;
	if (loop->site != LEM_SITE_KEPT)     /* its first suspension since it started */
		lem_site_keep(loop, T);
	lua_pushlightuserdata(T, (void *)token);
	lua_yield(T, keep + 1);
	loop->token += TOKEN_STEP;
	w->co = loop->running;
	w->token = token;
	loop->suspended = 1;
	return -1;
}

int lem_wake(lem_loop *loop, const lem_waiter *w, lua_State *from, int nargs)
{
	lua_State *co = w->co;
	struct lem_rq_seg *seg;

	if (!co || lua_status(co) != LUA_YIELD ||
	    lua_touserdata(co, -1) != (void *)w->token || loop->closing) {
		lua_pop(from, nargs);
		return 0;
	}
	/* The mark goes above the suspension's own without a check, as lem_suspend pushed
	 * that one: a C function's stack has room past what it may use (EXTRA_STACK). The
	 * values need room: checking may grow co's stack; that never collects. */
	if (nargs > 0 && !lua_checkstack(co, nargs + 1)) {
		lua_pop(from, nargs);
		luaL_error(from, "too many values to wake a coroutine with");
	}
	lua_pushlightuserdata(co, (void *)(w->token | 1));   /* above the mark: one call less */
	if (nargs > 0)
		lua_xmove(from, co, nargs);
	seg = rq_append(loop, co, LEM_RQ_WOKEN, w->token | 1, nargs, LEM_SITE_KEPT);
	lua_pushthread(co);
	lua_xmove(co, seg->A, 1);
	return 1;
}

void lem_spawn(lem_loop *loop, lua_State *from, int nargs)
{
	lem_site site;

	rq_reserve(loop, from);
	/* the loop's own states run no Lua code: a spawn from there has no site */
	site = from == loop->L || from == loop->scratch ? 0 : lem_site_at(loop, from);
	if (nargs == 0 && !loop->closing)      /* lem_sched_push_func, inlined */
		lua_xmove(from, rq_append(loop, NULL, LEM_RQ_NEW, 0, 0, site)->A, 1);
	else
		lem_spawn_site(loop, from, nargs, site);
}

void lem_spawn_at(lem_loop *loop, lua_State *from, int nargs)
{
	lem_site site;

	rq_reserve(loop, from);
	site = lem_site_of(loop, from, -nargs - 2);
	lua_remove(from, -nargs - 2);
	lem_spawn_site(loop, from, nargs, site);
}

void lem_spawn_site(lem_loop *loop, lua_State *from, int nargs, lem_site site)
{
	lua_State *co;
	int n;

	if (nargs == 0) {         /* its coroutine is made when it runs */
		lem_sched_push_func(loop, from, site);
		return;
	}
	if (from == loop->L) {
		co = lem_sched_pushthread(loop);
	} else {                  /* made on from, which gets its memory error */
		co = lem_sched_pushthread_on(loop, from);
		lua_xmove(from, loop->L, 1);
	}
	n = nargs + 2;            /* and rq_push's lua_pushthread */
	if (n > LUA_MINSTACK && lem_protect_in(loop, co, co_stack, &n) != 0) {
		lua_pop(loop->L, 1);
		lua_pop(from, nargs + 1);
		lem_site_drop(loop, site);
		rq_nomem(from);
	}
	if (!lua_checkstack(co, nargs + 1)) {
		lua_pop(loop->L, 1);
		lua_pop(from, nargs + 1);
		lem_site_drop(loop, site);
		luaL_error(from, "too many arguments to spawn a coroutine with");
	}
	if (from == loop->L)      /* it went on top of the function and its arguments */
		lua_insert(from, -nargs - 2);
	lua_xmove(from, co, nargs + 1);
	rq_push(loop, co, LEM_RQ_NEW, 0, nargs, site);
	lua_pop(loop->L, 1);
}

/* ---- yield-safe pcall for PUC Lua 5.1 (see pcall.c) ----
 * step(handler, co, ...) starts (co == nil: ... is f and its arguments) or resumes the
 * coroutine that runs a protected call; lem suspensions inside it pass through. Returns
 * co, false, yielded... while it runs; nil, true, ok, results... once it has ended. */
int lem_sched_nested(lua_State *T)
{
	lem_loop *loop = lem_current;
	lua_State *co, *saved;
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
		/* made on T: out of memory is an error of T's, not a panic of L */
		luaL_checkstack(T, 1, NULL);
		co = lem_sched_pushthread_on(loop, T);
		lua_replace(T, 2);
		nargs = n - 3;
		lua_checkstack(co, nargs + 2);
		lua_xmove(T, co, nargs + 1);
	} else {
		co = lua_tothread(T, 2);
		if (!co)
			return luaL_typerror(T, 2, "coroutine");
		nargs = n - 2;
#ifndef LEM_LUAJIT
		if (body_yielded(co)) {   /* it returns what it is resumed with */
			lua_checkstack(T, 3);
			lua_pushnil(T);
			lua_replace(T, 1);
			lua_pushboolean(T, 1);
			lua_replace(T, 2);
			lua_pushboolean(T, 1);
			lua_insert(T, 3);
			return nargs + 3;
		}
#endif
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
	if (stop_asked(loop))          /* an interrupt that came before inner was set */
		lem_loop_interrupt(loop);
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
		sched_recycle(loop, co);
	return n + 3;
}
