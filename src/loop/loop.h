/* loop.h: one event loop: its state, its runqueue and its coroutine bookkeeping. */
#ifndef LEM_LOOP_H
#define LEM_LOOP_H

#include <stddef.h>
#include "lem.h"

/* What a coroutine that ran out of memory while holding it leaves for the report of its
 * error: a traceback, a message, the coroutine of its onerror function. */
#define LEM_RESERVE (256 * 1024)

/* Slots of the stack of loop->H that anchor the loop's Lua values. They are not on the
 * main state's stack: a finalizer that a collection on L runs, runs in a frame of its own
 * on L, where an absolute index means another slot. H never runs anything. */
enum {
	LEM_SPARES = 1, /* coroutine whose stack holds finished coroutines kept for reuse */
	LEM_ANCHORS,    /* table: anchor slot -> value (lem_anchor: timers, timed sleepers,
	                   the runqueue segments' coroutines) */
	LEM_SCRATCH,    /* a thread that never runs Lua, for lem_protect */
	LEM_PROTECT,    /* the C function lem_protect calls */
	LEM_TRACEBACK,  /* debug.traceback as it was at start-up */
	LEM_BODY,       /* LuaJIT: the function that runs each coroutine's body (loop.c), */
	LEM_BODY0,      /* and the one for bodies without arguments */
	LEM_ERRVAL,     /* an error value whose traceback was taken where it was raised, */
	LEM_ERRTB,      /* and that traceback (loop->err_co: the coroutine) */
	LEM_SITES,      /* table, weak keys: suspended coroutine -> where it was started */
	LEM_SOURCES,    /* table: the chunk names of sites, by index, and back (site.c) */
	LEM_ONERROR,    /* table, weak keys: coroutine -> its lem_onerror function, */
	LEM_ONERRVAL,   /* and -> that function's value (sched.c) */
	LEM_NSLOTS = LEM_ONERRVAL
};

/* site.c: a coroutine's site is in LEM_SITES once it has suspended */
typedef uintptr_t lem_site;
#define LEM_SITE_KEPT (~(lem_site)0)
#define LEM_SITE_CACHE 64

/* What a runqueue entry resumes. */
enum {
	LEM_RQ_NEW,       /* a coroutine not started: a function and its arguments */
	LEM_RQ_YIELDED,   /* one that yielded (utils.yield, coroutine.yield) */
	LEM_RQ_WOKEN,     /* one woken by lem_wake from the suspension `token` */
	LEM_RQ_ENDED      /* a C body that yielded: it has returned (sched.c) */
};

struct lem_rq_entry {
	lua_State *T;     /* NULL: a function queued alone, its coroutine made when it runs */
	uintptr_t token;  /* LEM_RQ_WOKEN: the mark to find on top of T */
	int nargs;
	int kind;
	lem_site site;    /* where T was started, or LEM_SITE_KEPT: see LEM_SITES (site.c) */
};

struct lem_rq_seg;

/* The yield-safe pcall of PUC Lua 5.1 (pcall.c): the helpers being resumed now, innermost
 * last, each with the coroutine it runs for. Resumes nest as C calls do, so this is a
 * stack. Deeper nesting than this is counted but not recorded: the debug functions then
 * stop there. */
#define LEM_NEST_MAX 256
struct lem_nest {
	lua_State *co, *T;
	lua_State *in_hook;      /* in_hook as it was before the resume */
	char xp;                 /* xpcall rather than pcall */
	char hooked;             /* T's hook was handed to co */
};
struct lem_pcall {
	struct lem_nest nest[LEM_NEST_MAX];
	int len;
	lua_State *in_hook;      /* the thread whose hook function runs now: a pcall there
	                            runs without hooks, as a stock pcall does in a hook */
};

/* A stats hook (lem_stats_hook_add). */
struct lem_stathook {
	lem_stats_hook *hook;
	void *ud;
};

/* A signal hook (lem_signal_hook_add). */
struct lem_sighook {
	lem_signal_hook *hook;
	void *ud;
};

/* alloc.c: the free small blocks of a loop's Lua state */
#define LEM_ALLOC_STEP 16
#define LEM_ALLOC_CLASSES 64        /* blocks of up to 1 KiB */
struct lem_alloc {
	void *free[LEM_ALLOC_CLASSES];
	size_t kept;              /* their bytes */
	int evict;                /* the class that gave a block up last (alloc.c) */
	int evict_skip;           /* blocks to free() before trying that again */
};
void *lem_alloc(void *ud, void *p, size_t osize, size_t nsize);
void lem_alloc_free(struct lem_alloc *a);   /* after lua_close */

struct lem_loop {
	struct ev_loop *ev;       /* this loop's libev loop */
	lua_State *L;             /* main state; never runs Lua; L[1] is H */
	lua_State *H;             /* a thread whose stack holds the slots (LEM_SPARES..) */
	struct lem_alloc alloc;   /* L's allocator's */

	struct lem_rq_seg *rq_first, *rq_last;  /* runqueue: FIFO of segments (sched.c) */
	struct lem_rq_seg *rq_free;
	int rq_nfree;
	unsigned rq_len;          /* runnable coroutines */
	unsigned unrun;           /* taken off the queue, then not run: the loop was stopping */
	struct lem_rq_seg *rq_seg;  /* the segment of the entry just taken */
	ev_prepare drain;         /* runs a batch of the runqueue before each poll */
	ev_idle spin;             /* active while the runqueue is not empty: poll won't block */

	lua_State *running;       /* coroutine resumed by the scheduler, or NULL */
	lua_State *volatile inner;  /* the innermost coroutine lem resumed (running, or a
	                             yield-safe pcall's inside it): what an interrupt hooks */
	lua_State *yielder;       /* coroutine allowed to suspend now (running, or nested in
	                             a yield-safe pcall of it) */
	int suspended;            /* set by a suspension, read by whoever resumed */
	uintptr_t token;          /* last suspension token handed out (sched.c) */
	int cbody;                /* the running coroutine's body is a C function */

	lua_State *spares;        /* LEM_SPARES */
	lua_State *scratch;       /* LEM_SCRATCH */
	void *reserve;            /* LEM_RESERVE bytes, freed to report a memory error */
	int nspares;              /* coroutines on its stack */
	int onerrors;             /* entries set in LEM_ONERROR (a few stale, once collected) */
	int *free_anchors;        /* free anchor slots */
	int nfree_anchors, anchors_len, free_anchors_cap;

	lua_State *step;          /* coroutine of the current start-up step (runtime/start.c) */
	void (*step_done)(lem_loop *loop);   /* runs when step returns */
	int steps;                /* anchor slot of the runtime's list of steps */

	struct lem_pcall pcall;   /* pcall.c */

	int stopping;             /* lem_exit or an uncaught error: no more resumes */
	int closing;              /* lua_close runs finalizers: nothing may be queued */
	int status;               /* exit status */
	const char *progname;     /* prefix of error messages: "lem" */

	int tfd;                  /* timerfd that wakes the poll on time (loop.c), or -1 */
	ev_io tfd_w;
	ev_tstamp tfd_want;       /* earliest lem deadline seen since it last fired */
	ev_tstamp tfd_armed;      /* what it is armed for */

	struct lem_group *group;  /* the loops of this process (group.h) */
	int id;                   /* this loop's number in it, 1.. */
	struct lem_mbox *mbox;    /* its mailbox, while open */
	struct lem_sighook *sighooks;   /* in the order they were added */
	int nsighooks;
	int shutdown;             /* its hooks heard LEM_SHUTDOWN */
	int interrupted;          /* a stop interrupted the Lua code it ran */

	/* Per-loop state of other subsystems, made on first use, freed in lem_loop_free. */
	struct lem_jobs *jobs;    /* thread pool: this loop's completion queue (runtime/pool.c) */
	void (*jobs_free)(lem_loop *loop);  /* set with jobs: lem_loop_free calls it first */

	/* Figures and probes (stats.c, probe.c). rseq is odd while the runqueue resumes a
	 * coroutine; other threads read it (atomics): it counts resumes twice. */
	unsigned long rseq;
	unsigned long tm_base, tm_next;   /* rseq when the clock was last read; next read */
	double tm_last;           /* that read (CLOCK_MONOTONIC seconds) */
	unsigned tm_stride;       /* resumes timed together while they are short */
	double max_resume;        /* the longest resume timed, in seconds */
	char max_where[80];       /* where its coroutine stood then, or "?" */
	struct lem_stathook *stathooks;   /* lem_stats_hook_add, in the order they were added */
	int nstathooks;
	unsigned long probe_rseq; /* the resume a blocking warning is for (atomic) */
	long probe_since;         /* since when it runs, CLOCK_MONOTONIC ms (atomic) */
	lua_Hook probe_saved;     /* the hook the probe's replaced, restored when it runs */
	int probe_mask, probe_count;
	int debug;                /* --debug: parked coroutines are listed (parked_slot), and
	                             sites hold tracebacks (site.c) */
	int parked_slot;          /* anchor slot of a weak table: coroutines that suspended */
	lua_State *err_co;        /* the coroutine of LEM_ERRVAL and LEM_ERRTB, or NULL */

	lem_site site;            /* where the coroutine running now (or last) was started, */
	lua_State *site_co;       /* that coroutine, */
	unsigned nsources;        /* chunk names in LEM_SOURCES */
	struct { const void *fn; unsigned src; } site_cache[LEM_SITE_CACHE];
	const char *note;         /* lem_note, for the run of the coroutine running now */
	int note_arg;
};

/* The one fatal path, for what no Lua call can carry (an allocation in a libev callback
 * of the core, an unprotected error): prints "lem: " and the message, and aborts. */
void lem_fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* The loop this thread runs: C code reaches its loop from any lua_State through it. */
extern __thread lem_loop *lem_current;

/* loop.c */
lem_loop *lem_loop_new(const char *progname);
int lem_loop_run(lem_loop *loop);      /* returns the exit status */
void lem_loop_stop(lem_loop *loop, int status);   /* this loop only */
void lem_loop_before_poll(lem_loop *loop);
void lem_loop_free(lem_loop *loop);
void lem_loop_fail(lem_loop *loop, lua_State *T);  /* reports T's uncaught error, stops */
void lem_loop_oom(lem_loop *loop, lua_State *T, int after);   /* around a memory error's report */
void lem_loop_interrupt(lem_loop *loop);  /* from a signal handler in loop's thread */
int lem_loop_onerror(lua_State *T);     /* LuaJIT: the handler of a coroutine's body */
void lem_loop_traceback(lua_State *L, lua_State *T, const char *msg, int level);  /* LuaJIT */
void lem_loop_keep_traceback(lua_State *T, int level);   /* [-0, +0] err on top of T */
void lem_loop_uncaught(lem_loop *loop, const char *during);          /* [-0, +0] */
void lem_loop_yield_error(lua_State *T, int level, const char *why);   /* [-0, +0] */

/* sched.c (and lem.h's coroutine calls) */
void lem_sched_init(lem_loop *loop);
void lem_sched_free(lem_loop *loop);
void lem_sched_start(lem_loop *loop, lua_State *T, int nargs);   /* [-0, +0] */
void lem_sched_push_func(lem_loop *loop, lua_State *from, lem_site site);  /* [-1, +0] */
lua_State *lem_sched_pushthread(lem_loop *loop);                /* [-0, +1] on loop->L */
lua_State *lem_sched_pushthread_on(lem_loop *loop, lua_State *on);   /* [-0, +1, m] */
int lem_sched_nested(lua_State *T);
/* [-0, +0, -] on L, the message on top: spawns T's lem_onerror function with it and its
 * value; 0 when T has none, or the spawn failed */
int lem_sched_onerror(lem_loop *loop, lua_State *T, lua_State *L);
void lem_sched_drain(struct ev_loop *ev, ev_prepare *w, int revents);

/* stats.c (and lem.h's figures) */
void lem_stats_time(lem_loop *loop, lua_State *T);   /* when rseq reaches tm_next */
void lem_stats_batch(lem_loop *loop, int start);     /* at a batch's start and end */
void lem_stats_free(lem_loop *loop);
const char *lem_stats_where(lua_State *T, int level, char *buf, size_t size);

/* probe.c: the blocking warning and the dump, taken in the loop's thread */
enum { LEM_PROBE_DUMP = 1, LEM_PROBE_BLOCKED = 2 };  /* bits of its mailbox's probe */
void lem_probe_arm(lem_loop *loop);      /* from the interrupt handler */
void lem_probe_dump(lem_loop *loop);     /* from the event loop: nothing runs */
void lem_probe_parked(lem_loop *loop, lua_State *T);   /* [-0, +0, m] --debug */
long lem_probe_ms(void);                 /* CLOCK_MONOTONIC, ms */
/* site.c (and lem.h's lem_site_push): where a coroutine was started, as a number: a chunk
 * name's index and a line, or with --debug an anchor slot (0: nowhere) */
void lem_site_open(lua_State *H);                   /* [-0, +2] LEM_SITES, LEM_SOURCES */
lem_site lem_site_of(lem_loop *loop, lua_State *T, int idx);   /* of lem_site_push's value */
void lem_spawn_site(lem_loop *loop, lua_State *from, int nargs, lem_site site);
lem_site lem_site_debug(lem_loop *loop, lua_State *T) __attribute__((cold));
unsigned lem_site_learn(lem_loop *loop, lua_State *T, lua_Debug *ar, unsigned c)
	__attribute__((cold));
#define LEM_SITE_DEBUG     ((lem_site)1 << 62)   /* an anchor slot holding a traceback */
#define LEM_SITE_LINE_BITS 24

/* Where T's C function was called: the hot path, at every spawn, inlined there. A
 * lua_getstack and a lua_getinfo("fl") (the cheapest way the API has to learn the
 * calling function and its line; its push of the function grows the stack if need be);
 * the function's chunk name is looked up only when it is not one of the last seen. */
static inline lem_site lem_site_at(lem_loop *loop, lua_State *T)
{
	lua_Debug ar;
	const void *fn;
	unsigned c, src;

	if (__builtin_expect(loop->debug, 0))
		return lem_site_debug(loop, T);
	if (!lua_getstack(T, 1, &ar))
		return 0;
	lua_getinfo(T, "fl", &ar);
	fn = lua_topointer(T, -1);
	c = (unsigned)((uintptr_t)fn >> 5) % LEM_SITE_CACHE;
	src = loop->site_cache[c].src;
	if (ar.currentline <= 0)                  /* a C function */
		src = 0;
	else if (__builtin_expect(loop->site_cache[c].fn != fn, 0))
		src = lem_site_learn(loop, T, &ar, c);
	lua_pop(T, 1);
	if (!src)
		return 0;
	return (lem_site)src << LEM_SITE_LINE_BITS |
	       (ar.currentline & ((1 << LEM_SITE_LINE_BITS) - 1));
}

/* A site that will not be spawned, or whose coroutine has ended. */
static inline void lem_site_drop(lem_loop *loop, lem_site site)
{
	if (__builtin_expect(site & LEM_SITE_DEBUG, 0) && site != LEM_SITE_KEPT)
		lem_unanchor(loop, (int)(site & ~LEM_SITE_DEBUG));
}
void lem_site_keep(lem_loop *loop, lua_State *T);   /* before the running one suspends */
int lem_site_describe(lem_loop *loop, lua_State *co, lua_State *L);   /* [-0, +(0|1)] */

/* loop.c */
int lem_protect_in(lem_loop *loop, lua_State *S, int (*push)(lua_State *S, void *ud), void *ud);

/* anchor.c (and lem.h's anchors): slots in LEM_ANCHORS */
void lem_anchor_free(lem_loop *loop);

/* stdlib.c: print and os.date made safe for loops running in several threads */
void lem_stdlib_open(lua_State *L);

/* pcall.c */
void lem_pcall_open(lua_State *L);
void lem_pcall_enter(lua_State *T, lua_State *co, int xp);   /* around each resume of co */
void lem_pcall_leave(lua_State *T, lua_State *co);
int lem_pcall_traceback(lua_State *L);   /* PUC: debug.traceback across protected calls */

#endif
