/* lem.h: the C API for modules of the Lua Event Machine.
 *
 * Every call states its effect on the Lua stack as the Lua manual does: [-o, +p, x] pops
 * o values, pushes p, and x says what it may raise: '-' nothing, 'm' a memory error, 'v'
 * the errors the text names. All of them are called from the thread of the loop they
 * concern, unless the text says "any thread". */
#ifndef LEM_H
#define LEM_H

#include <stdint.h>
#include <lua.h>
#include <lauxlib.h>
#include <ev.h>

#if !EV_MULTIPLICITY
#error "lem needs libev built with EV_MULTIPLICITY (one ev_loop per lem loop)"
#endif

#define LEM_VERSION "0.2.0"

/* The calls below are what the lem binary exports to modules; everything else in it is
 * built hidden, so that a loaded module cannot collide with lem's internals. */
#ifndef LEM_API
#define LEM_API __attribute__((visibility("default")))
#endif

/* ---- the loop ---- */

/* One event loop: its ev_loop, its lua_State and every coroutine of that state. Each loop
 * runs in a thread of its own. */
typedef struct lem_loop lem_loop;

/* [-0, +0, -] The loop that owns T (any coroutine of that loop's lua_State). */
LEM_API lem_loop *lem_loop_of(lua_State *T);
/* [-0, +0, -] That loop's libev loop, for watchers: ev_io_start(lem_ev(loop), &w). */
LEM_API struct ev_loop *lem_ev(lem_loop *loop);
/* [-0, +0, -] The loop's main state: it never runs Lua. Watcher callbacks build values
 * on it, to hand them to lem_wake or lem_spawn; they leave its stack as they found it.
 * Values made there are unprotected: a memory error ends the process. */
LEM_API lua_State *lem_state(lem_loop *loop);
/* [-0, +n, -] on `to`. Runs push(S, ud) in a protected call on a scratch thread of
 * loop's, and moves the n values it pushed onto `to` (a thread of loop). Returns n; or,
 * when push raised (out of memory), -1 with nil and the error message (two values) on
 * `to`. For watcher callbacks, which no protected call surrounds: a memory error there
 * would end the process. push may not suspend or run Lua code that could. */
LEM_API int lem_protect(lem_loop *loop, lua_State *to, int (*push)(lua_State *S, void *ud),
                        void *ud);
/* [-0, +0, -] Tells loop that a watcher of yours is due at `at` (ev_now's clock), so
 * that the poll ends on time: libev's epoll backend waits whole milliseconds, rounded
 * up. Call it when you start a timer whose precision matters (a sleep, a timeout). */
LEM_API void lem_deadline(lem_loop *loop, ev_tstamp at);
/* [-0, +0, -] Stops every loop of the process: pending coroutines never run; each loop's
 * lua_close runs its finalizers; the process exits with status. The first call wins. */
LEM_API void lem_exit(lem_loop *loop, int status);

/* ---- coroutines ----
 * A lua_CFunction that waits for an event suspends the coroutine T running it:
 *
 *     ...allocate what registering needs: it may raise here...
 *     lem_waiter w;
 *     int r = lem_suspend(T, &w, 0);   raises where T cannot suspend
 *     ...register w: start a watcher that will lem_wake(loop, &w, ...)...
 *     return r;
 *
 * Nothing is registered before the suspension, so nothing needs undoing when it raises;
 * nothing may raise after it, so what can fail comes first. The lua_CFunction returns,
 * when T resumes, the values lem_wake gave. */

/* What lem_wake needs to resume a suspended coroutine; filled by lem_suspend. */
typedef struct lem_waiter {
	lua_State *co;    /* the coroutine to resume */
	uintptr_t token;  /* identifies this suspension: a stale or second wake is ignored */
} lem_waiter;

/* [-0, +0, -] Whether lem_suspend and lem_yield can suspend T: 0 in a coroutine that lem
 * does not run (inside coroutine.resume or coroutine.wrap). In PUC Lua 5.1 they may still
 * raise across a metamethod or C-call boundary (table.sort's comparator, an iterator). */
LEM_API int lem_suspendable(lua_State *T);
/* [-0, +0, v] Suspends T, which runs the calling lua_CFunction, and fills w. Raises
 * where T cannot suspend, before anything changes. The keep values on top of T's stack
 * stay on the suspended coroutine w->co at indices 1..keep, with lem's mark at keep + 1
 * and nothing else: a light userdata whose value is w->token. (w->co is T, or the
 * coroutine lem resumed when T runs a yield-safe pcall's body in PUC Lua 5.1.) Right
 * after lem_suspend returns, they are also T's stack as it stands, the mark on top. A
 * waker may read them on w->co, and find w->token back from the mark, as long as
 * lua_status(w->co) is LUA_YIELD and the mark is on top. Returns what the
 * lua_CFunction must return. */
LEM_API int lem_suspend(lua_State *T, lem_waiter *w, int keep);
/* [-n, +0, v] Lets the coroutines queued before T run, then returns the n values on top
 * of T's stack from the calling lua_CFunction: return lem_yield(T, n). Raises as
 * lem_suspend. */
LEM_API int lem_yield(lua_State *T, int n);
/* [-nargs, +0, v] on `from`. Schedules the suspended w->co to resume with the nargs
 * values on top of `from`, which it moves: from is a coroutine of the loop (the one
 * running the caller's lua_CFunction) or, in a watcher's callback, lem_state(loop).
 * Never push values on w->co itself: an allocation there may run a finalizer on that
 * suspended coroutine, which PUC Lua 5.1 does not survive. Returns 1, or 0 (and pops the
 * values) when w is stale: woken already, resumed by other means, or the loop closes.
 * Raises on `from` when w->co's stack cannot take nargs more values (Lua's limit, some
 * 8000); running out of memory while it grows is the fatal path. */
LEM_API int lem_wake(lem_loop *loop, const lem_waiter *w, lua_State *from, int nargs);
/* [-(nargs+1), +0, v] on `from`. Queues the function under the nargs values on top of
 * `from` (a thread of loop, as for lem_wake) to run in a coroutine of its own, as
 * utils.spawn does: a finished coroutine is reused when one is at hand. Raises on
 * `from` a memory error, or when a coroutine's stack cannot take nargs + 1 values. */
LEM_API void lem_spawn(lem_loop *loop, lua_State *from, int nargs);

/* [-2, +0, m] on T. Pops a function (or nil) and a value from T: should the coroutine
 * that lem runs now (T's, or the one T is nested in) end with an error, the function runs
 * in a new coroutine with the message (its traceback and site included, as lem would
 * print it) and the value, and the loop goes on. nil removes it; it lasts until that
 * coroutine ends. Raises on T where no coroutine of lem runs. */
LEM_API void lem_onerror(lua_State *T);

/* ---- where coroutines come from ----
 * The report of an uncaught error says where its coroutine was started: "spawned at
 * file.lua:42" (with lem --debug, that place's traceback too, and the site of the
 * coroutine that spawned from there, and so on). lem_spawn records the place of the Lua
 * code that called the lua_CFunction running on `from`. A module that spawns later, from
 * a watcher's callback (a timer), takes the place when it is asked to, keeps it as any
 * value, and hands it to lem_spawn_at. */

/* [-0, +1, m] Pushes on T where the Lua function that called T's running lua_CFunction
 * is: a value to keep (nil when that is not Lua code). */
LEM_API void lem_site_push(lua_State *T);
/* [-(nargs+2), +0, v] on `from`. As lem_spawn, for the function under the nargs values
 * on top of `from`, started at the site under the function (lem_site_push's value). */
LEM_API void lem_spawn_at(lem_loop *loop, lua_State *from, int nargs);
/* [-0, +0, -] Notes what the coroutine running T does, until it next suspends, for the
 * report of an uncaught error that ends it: "lem: <message> (<note>)". note is a format
 * with at most one %d, for arg, and lives as long as the loop (a literal). */
LEM_API void lem_note(lua_State *T, const char *note, int arg);

/* ---- anchors ----
 * A value that only a watcher refers to must be anchored, or the collector takes it. */

/* [-1, +0, m] on T. Pops the value on top of T (a thread of loop) and keeps it alive
 * until lem_unanchor; returns its slot, a positive number. Returns 0 (popping the value)
 * while the loop closes. To anchor where nothing may raise (after lem_suspend), take a
 * slot before (anchor a nil) and lem_anchor_set it after. */
LEM_API int lem_anchor(lem_loop *loop, lua_State *T);
/* [-1, +0, -] on T. Pops the value on top of T and anchors it in slot instead of what
 * slot held. */
LEM_API void lem_anchor_set(lem_loop *loop, lua_State *T, int slot);
/* [-0, +1, -] on T. Pushes the value anchored in slot. */
LEM_API void lem_anchor_push(lem_loop *loop, lua_State *T, int slot);
/* [-0, +0, -] Frees slot; 0 does nothing. */
LEM_API void lem_unanchor(lem_loop *loop, int slot);

/* ---- blocking work ----
 * [-0, +0, -] Runs work(arg) on a thread of the process-wide pool (the one piece lem
 * shares between loops), then done(loop, arg) in loop's own thread, from its event loop:
 * the place to lem_wake the coroutine waiting for the result. work runs in another
 * thread: it must not touch any Lua state, loop or watcher, only arg. While a job is
 * pending, the loop keeps running. Returns 0, or a negative errno and then neither
 * function runs: -ENOMEM, or -ECANCELED once the loop closes (lua_close) or the process
 * exits; during the graceful shutdown jobs still run. When the loop is freed first (a
 * stop: utils.exit, an uncaught error, the shutdown's deadline), it runs done, before
 * closing the Lua state, for work that has returned (lem_wake does nothing then); work
 * still running is not waited for: its done never runs, and arg, which must not point
 * into the Lua state, is never freed. */
LEM_API int lem_async_run(lem_loop *loop, void (*work)(void *arg),
                          void (*done)(lem_loop *loop, void *arg), void *arg);

/* ---- messages between loops ----
 * Each loop has a mailbox. A message is a block the sender allocates with malloc, with a
 * lem_msg at its start; lem frees with free() those it drops (a mailbox that closes). One
 * module of a loop (lem.loops) receives: it registers a hook, takes the messages and
 * tells lem how many coroutines wait for one, which decides when the loop counts as idle
 * and when no message can come any more. */

typedef struct lem_msg {
	struct lem_msg *next;     /* lem's, while in a mailbox */
} lem_msg;

/* [-0, +0, -] The number of loops in this process; *id is loop's own, 1..count. */
LEM_API int lem_loops(lem_loop *loop, int *id);
/* [-0, +0, -] Appends m to loop to's mailbox and wakes that loop; takes m on success.
 * Returns 0, or -EPIPE (to has finished) or -ENOSPC (its mailbox is full). */
LEM_API int lem_post(lem_loop *loop, int to, lem_msg *m);
/* [-0, +0, -] The oldest message of loop's mailbox, removed from it, or NULL. */
LEM_API lem_msg *lem_take(lem_loop *loop);

/* What a mailbox hook hears, in its loop's thread, from its event loop. */
enum {
	LEM_MAIL_ARRIVED,   /* messages came: hand them (lem_take) to the waiting coroutines */
	LEM_MAIL_QUIET,     /* no message can come to the coroutines that began to wait
	                       before `epoch`, those whose lem_mail_wait returned less than
	                       it: end their wait */
	LEM_MAIL_CLOSED     /* the mailbox closes: nothing can come any more; the coroutines
	                       that wait will never run again */
};
typedef void lem_mail_hook(lem_loop *loop, int event, uint64_t epoch, void *ud);

/* [-0, +0, -] Sets the hook of loop's mailbox (replacing any). */
LEM_API void lem_mail_hook_set(lem_loop *loop, lem_mail_hook *hook, void *ud);
/* [-0, +0, -] Counts coroutines that wait for a message: +1 when one begins to wait
 * (timed: with a timeout), -1 when it stops waiting, whatever the reason. Returns the
 * epoch that a LEM_MAIL_QUIET compares with: record it with the waiting coroutine. */
LEM_API uint64_t lem_mail_wait(lem_loop *loop, int delta, int timed);

/* ---- figures ----
 * utils.stats() shows a loop's figures: the core's (runnable coroutines, resumes...) and
 * those each module adds through a stats hook (open streams, waits of its own...). */

/* [-0, +0, m] on T. Sets the module's figures as fields of the table on top of T (a
 * thread of loop): numbers, or strings. */
typedef void lem_stats_hook(lem_loop *loop, lua_State *T, void *ud);
/* [-0, +0, -] Adds a hook to loop's stats hooks. Returns 0, or -ENOMEM. Hooks stay until
 * the loop closes: ud must live as long as loop's Lua state. */
LEM_API int lem_stats_hook_add(lem_loop *loop, lem_stats_hook *hook, void *ud);
/* [-0, +1, m] on T. Pushes a new table of loop's figures, every hook's included. */
LEM_API void lem_stats(lem_loop *loop, lua_State *T);

/* ---- signals and the shutdown ----
 * Signals belong to the process: one thread catches them and hands each to every loop
 * that catches it, through that loop's own wake-up. The shutdown is the process's
 * graceful stop (SIGTERM, SIGINT, lem_shutdown): every loop hears that it began, stops
 * taking new work, and ends when nothing is left; at its deadline lem stops whatever
 * still runs. Modules hear both through signal hooks, in their loop's thread. */

/* What a signal hook hears besides a signal's number (1..64). */
enum {
	LEM_SHUTDOWN = 0,   /* the shutdown began: stop taking new work (close listeners) */
	LEM_DEADLINE = -1   /* its deadline passed and the loop stops: return how many of
	                       your waits are still pending (sleeps, timers, reads...), for
	                       the line lem prints; the loop resumes nothing any more */
};
/* Returns what LEM_DEADLINE asks for; 0 for the other events. */
typedef int lem_signal_hook(lem_loop *loop, int event, void *ud);

/* [-0, +0, -] Adds a hook to loop's signal hooks. They hear, in loop's thread and from its
 * event loop, each signal that loop catches (a burst of one signal may come as fewer
 * events, the last one never lost), LEM_SHUTDOWN once, and LEM_DEADLINE. Returns 0, 1
 * when the shutdown has begun already (the hook will not hear LEM_SHUTDOWN), or -ENOMEM.
 * Hooks stay until the loop closes: ud must live as long as loop's Lua state. */
LEM_API int lem_signal_hook_add(lem_loop *loop, lem_signal_hook *hook, void *ud);

/* How lem_signal treats a signal. */
enum {
	LEM_SIG_CATCH,      /* loop catches it: its hooks hear it */
	LEM_SIG_DEFAULT,    /* loop stops catching it; while no loop catches it, the process
	                       takes its default action (SIGTERM and SIGINT: the shutdown) */
	LEM_SIG_IGNORE      /* loop stops catching it; while no loop catches it, the process
	                       ignores it */
};
/* [-0, +0, -] Sets how the process treats signal sig for loop (how: above). A signal
 * that some loop catches is handed to every such loop and has no other effect. Returns
 * 0, or -EINVAL for a signal lem cannot hand out: SIGKILL, SIGSTOP, the synchronous ones
 * (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT) and those lem uses itself
 * (SIGPIPE, SIGURG). */
LEM_API int lem_signal(lem_loop *loop, int sig, int how);

/* [-0, +0, -] Begins the shutdown of every loop, as SIGTERM does, with its deadline
 * `seconds` from now (negative: the command line's --shutdown-timeout). The process
 * exits 0 if every loop ends before the deadline. Returns 1, or 0 when a shutdown or a
 * stop began already: the first one wins, with its deadline and status. */
LEM_API int lem_shutdown(lem_loop *loop, double seconds);

#endif
