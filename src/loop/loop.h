/* loop.h: one event loop: its state, its runqueue and its coroutine bookkeeping. */
#ifndef LEM_LOOP_H
#define LEM_LOOP_H

#include <stddef.h>
#include "lem.h"

/* Slots of the main lua_State's stack that anchor the loop's Lua values. */
enum {
	LEM_POOL = 1,   /* coroutine whose stack holds finished coroutines kept for reuse */
	LEM_ANCHORS,    /* table: anchor slot -> value (timers, timed sleepers, the
	                   runqueue segments' coroutines) */
	LEM_HOLDS,      /* table: coroutine -> true (lem_newthread / lem_hold) */
	LEM_STEPS,      /* table: start-up steps, run one after another */
	LEM_TRACEBACK,  /* debug.traceback as it was at start-up */
	LEM_NSLOTS = LEM_TRACEBACK
};

struct lem_rq_entry {
	lua_State *T;
	uintptr_t token;  /* 0: new; LUA_YIELD: suspended itself; else its suspension's token */
	int nargs;
};

struct lem_wait;
struct lem_rq_seg;

struct lem_loop {
	struct ev_loop *ev;       /* this loop's libev loop */
	lua_State *L;             /* main state; never runs Lua, its stack anchors (LEM_POOL..) */

	struct lem_rq_seg *rq_first, *rq_last;  /* runqueue: FIFO of segments (sched.c) */
	struct lem_rq_seg *rq_free;
	int rq_nfree;
	unsigned rq_len;          /* runnable coroutines */
	struct lem_rq_seg *rq_seg;  /* the segment of the entry just taken */
	ev_prepare drain;         /* runs a batch of the runqueue before each poll */
	ev_idle spin;             /* active while the runqueue is not empty: poll won't block */

	lua_State *running;       /* coroutine resumed by the scheduler, or NULL */
	lua_State *volatile inner;  /* the innermost coroutine lem resumed (running, or a
	                             yield-safe pcall's inside it): what an interrupt hooks */
	lua_State *yielder;       /* coroutine allowed to suspend now (running, or nested in
	                             a yield-safe pcall of it) */
	int suspended;            /* set by a suspension, read by whoever resumed */
	uintptr_t token;          /* last suspension token handed out; even */

	lua_State *pool;          /* LEM_POOL */
	int pool_len;             /* coroutines on its stack */
	int *free_anchors;        /* free anchor slots */
	int nfree_anchors, anchors_len, free_anchors_cap;
	struct lem_wait *free_waits, *all_waits;  /* timers for timed sleeps, reused */

	int steps_next, steps_len; /* start-up steps (LEM_STEPS): next to run, count */
	lua_State *step;          /* coroutine running the current step */

	int stopping;             /* lem_exit or an uncaught error: no more resumes */
	int closing;              /* lua_close runs finalizers: nothing may be queued */
	int status;               /* exit status */
	const char *progname;     /* prefix of error messages: "lem" */
	int trampoline;           /* registry ref of the C-body trampoline (trampoline.c) */
	const void *sleeper_mt;   /* lem.utils: the sleepers' and timers' metatables, to */
	const void *timer_mt;     /* check their type */

	int tfd;                  /* timerfd that wakes the poll on time (loop.c), or -1 */
	ev_io tfd_w;
	ev_tstamp tfd_want;       /* earliest lem deadline seen since it last fired */
	ev_tstamp tfd_armed;      /* what it is armed for */

	struct lem_group *group;  /* the loops of this process (mailbox.h) */
	int id;                   /* this loop's number in it, 1.. */
	struct lem_mbox *mbox;    /* its mailbox, while open */

	/* Per-loop state of other subsystems, made on first use, freed in lem_loop_free. */
	struct lem_jobs *jobs;    /* thread pool: this loop's completion queue (runtime/pool.c) */
	void (*jobs_free)(lem_loop *loop);  /* set with jobs: lem_loop_free calls it first */
};

/* A timer for a timed sleep; lives in the loop, reused, freed with it. */
struct lem_wait {
	ev_timer w;
	lem_loop *loop;
	int anchor;               /* anchor slot of the sleeper */
	struct lem_wait *next_free, *next_all;
};

/* The struct of type `type` whose member `field` is at p: watchers are embedded. */
#define lem_container_of(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

/* The one fatal path, for what no Lua call can carry (an allocation in a libev callback
 * of the core, an unprotected error): prints "lem: " and the message, and aborts. */
void lem_fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* The loop this thread runs: C code reaches its loop from any lua_State through it. */
extern __thread lem_loop *lem_current;

/* loop.c */
lem_loop *lem_loop_new(const char *progname);
int lem_loop_run(lem_loop *loop);      /* returns the exit status */
void lem_loop_stop(lem_loop *loop, int status);   /* this loop only */
void lem_loop_deadline(lem_loop *loop, ev_tstamp at);  /* a lem timer due at ev_now time at */
void lem_loop_before_poll(lem_loop *loop);
void lem_loop_free(lem_loop *loop);
void lem_loop_fail(lem_loop *loop, lua_State *T);  /* reports T's uncaught error, stops */
void lem_loop_interrupt(lem_loop *loop);  /* from a signal handler in loop's thread */

/* sched.c */
void lem_sched_init(lem_loop *loop);
void lem_sched_free(lem_loop *loop);
void lem_sched_push(lem_loop *loop, lua_State *T, uintptr_t token, int nargs);
int lem_sched_body(lem_loop *loop, lua_State *co, int nargs);
void lem_sched_push_func(lem_loop *loop, lua_State *from);
lua_State *lem_sched_thread(lem_loop *loop);   /* pushed on loop->L */
void lem_sched_recycle(lem_loop *loop, lua_State *T);
void lem_sched_step(lem_loop *loop);
int lem_sched_self(lua_State *T, lem_loop *loop, int nargs);
void lem_sched_wait(lua_State *T, lem_loop *loop, lem_waiter *w);
int lem_sched_yield(lua_State *T, lem_loop *loop, const lem_waiter *w);
void lem_sched_suspend(lua_State *T, lem_loop *loop, lem_waiter *w, int keep);
int lem_sched_suspended(lua_State *T, lem_loop *loop);
int lem_sched_valid(const lem_waiter *w);
void lem_sched_wake(lem_loop *loop, lua_State *co, uintptr_t token, lua_State *from,
                    int nargs);
int lem_sched_nested(lua_State *T);
void lem_sched_drain(struct ev_loop *ev, ev_prepare *w, int revents);

/* anchor.c: slots in LEM_ANCHORS that keep a value alive while a watcher may need it */
int lem_anchor(lem_loop *loop, lua_State *T);  /* pops a value, returns its slot */
void lem_anchor_push(lem_loop *loop, lua_State *T, int slot);
void lem_unanchor(lem_loop *loop, int slot);
void lem_anchor_free(lem_loop *loop);
struct lem_wait *lem_wait_get(lem_loop *loop);
void lem_wait_put(lem_loop *loop, struct lem_wait *w);

/* trampoline.c */
void lem_trampoline_push(lua_State *L);

/* stdlib.c: print and os.date made safe for loops running in several threads */
void lem_stdlib_open(lua_State *L);

/* pcall.c */
void lem_pcall_open(lua_State *L);
void lem_pcall_enter(lua_State *T, lua_State *co, int xp);   /* around each resume of co */
void lem_pcall_leave(lua_State *T, lua_State *co);

#endif
