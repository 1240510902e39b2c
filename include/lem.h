/* lem.h: the C API for modules of the Lua Event Machine. */
#ifndef LEM_H
#define LEM_H

#include <stdint.h>
#include <lua.h>
#include <lauxlib.h>
#include <ev.h>

#if !EV_MULTIPLICITY
#error "lem needs libev built with EV_MULTIPLICITY (one ev_loop per lem loop)"
#endif

#define LEM_VERSION "0.1.0"

/* The calls below are what the lem binary exports to modules; everything else in it is
 * built hidden, so that a loaded module cannot collide with lem's internals. */
#ifndef LEM_API
#define LEM_API __attribute__((visibility("default")))
#endif

/* One event loop: its ev_loop, its lua_State and every coroutine of that state. Each loop
 * runs in one thread; none of these functions may be called from another thread. */
typedef struct lem_loop lem_loop;

/* What lem_wake needs to resume a suspended coroutine; filled by lem_wait. */
typedef struct lem_waiter {
	lua_State *co;    /* the coroutine to resume */
	uintptr_t token;  /* identifies this suspension: a stale or second wake is ignored */
} lem_waiter;

/* The loop that owns T (any coroutine of that loop's lua_State). */
LEM_API lem_loop *lem_loop_of(lua_State *T);
/* That loop's libev loop, for watchers: ev_io_start(lem_ev(loop), &w). */
LEM_API struct ev_loop *lem_ev(lem_loop *loop);

/* A new (or recycled) coroutine with an empty stack, anchored until lem_forget.
 * Push a function and its arguments, then lem_queue it. */
LEM_API lua_State *lem_newthread(lem_loop *loop);
/* Drops the anchor of lem_newthread or lem_hold. */
LEM_API void lem_forget(lem_loop *loop, lua_State *T);
/* Anchors T until lem_forget. */
LEM_API void lem_hold(lem_loop *loop, lua_State *T);
/* Schedules a coroutine that has not started: a function and nargs arguments on its stack. */
LEM_API void lem_queue(lem_loop *loop, lua_State *T, int nargs);

/* Suspending the coroutine that runs a lua_CFunction, until an event:
 *     lem_waiter w;
 *     lem_wait(T, &w);        fills w, or raises where T cannot suspend
 *     ...register w: start a watcher, hold w.co...
 *     return lem_yield(T, &w);
 * lem_wake(loop, &w, from, n) later resumes it; the lua_CFunction returns those n values.
 * T cannot suspend inside a coroutine that lem does not run (coroutine.resume/wrap).
 * In PUC Lua 5.1 lem_yield itself raises across a metamethod or C-call boundary; w is
 * then stale: its lem_wake does nothing and returns 0, so the watcher still cleans up. */
LEM_API void lem_wait(lua_State *T, lem_waiter *w);
LEM_API int lem_yield(lua_State *T, const lem_waiter *w);
/* Schedules the suspended coroutine w->co to resume with the nargs values on top of
 * `from`, which it moves: from is the coroutine running the caller's lua_CFunction, or in
 * a watcher's callback lem_state(loop). Never push values on w->co itself: an allocation
 * there may run a finalizer on that suspended coroutine, which PUC Lua 5.1 does not
 * survive. Returns 1, or 0 (and pops the values) when w is stale: woken already, or never
 * suspended because lem_yield raised. */
LEM_API int lem_wake(lem_loop *loop, const lem_waiter *w, lua_State *from, int nargs);
/* The loop's main state: never running Lua, a place for callbacks to build values. */
LEM_API lua_State *lem_state(lem_loop *loop);

/* Stops every loop of the process: pending coroutines never run; each loop's lua_close
 * runs its finalizers; the process exits with status. The first call wins. */
LEM_API void lem_exit(lem_loop *loop, int status);

/* Blocking work (a name lookup, a file's fsync) off the loop's thread:
 *     lem_async_run(loop, work, done, arg)
 * runs work(arg) on a thread of the process-wide pool (the one piece lem shares between
 * loops), then done(loop, arg) in loop's own thread, from its event loop: the place to
 * lem_wake the coroutine waiting for the result. work runs in another thread: it must not
 * touch any Lua state, loop or watcher, only arg. While a job is pending, the loop keeps
 * running. Returns 0, or a negative errno and then neither function runs: -ENOMEM, or
 * -ECANCELED while the loop or the process shuts down. When the loop is freed first,
 * lem_loop_free waits for work and runs done before closing the Lua state; lem_wake does
 * nothing then. Call it from loop's thread, like the rest of this API. */
LEM_API int lem_async_run(lem_loop *loop, void (*work)(void *arg),
                  void (*done)(lem_loop *loop, void *arg), void *arg);

#endif
