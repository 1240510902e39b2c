/* utils.h: lem.utils's files: the module (utils.c), sleepers (sleeper.c), timers (timer.c). */
#ifndef LEM_UTILS_H
#define LEM_UTILS_H

#include "lem.h"

/* Upvalues of every function of lem.utils. */
#define UTILS_SLEEPER  lua_upvalueindex(1)   /* the sleepers' metatable */
#define UTILS_TIMER    lua_upvalueindex(2)   /* the timers' metatable */
#define UTILS_STATE    lua_upvalueindex(3)   /* the module's struct utils (a userdata) */

struct sleep_timer;

/* The module's state in one loop. */
struct utils {
	lem_loop *loop;
	struct sleep_timer *free, *all;   /* timers of timed sleeps, reused; all of them */
	struct sleep_timer *spare;        /* taken by a sleep whose suspension raised */
	int closed;                       /* lua_close freed the timers */
	int waits;                        /* timed sleeps and timers pending */
	const void *sleeper_mt, *timer_mt;   /* the metatables, to check types at one call */
	int timers;                       /* timers pending (utils.stats) */
	int sleeping;                     /* coroutines in a sleep, timed or not */
	int timeout;                      /* the registry's "timeout": a callback pushes it
	                                   * without the collector step a new string may run */
};

static inline struct utils *utils_state(lua_State *T)
{
	return lua_touserdata(T, UTILS_STATE);
}

/* [-0, +1, v] Raises a "bad argument" error unless the value at idx has the metatable mt
 * (a struct utils's); leaves that metatable on the stack (popping it would cost a call
 * on the sleepers' hot path). */
int utils_typeerror(lua_State *T, int idx, const char *name);
static inline void utils_check(lua_State *T, int idx, const void *mt, const char *name)
{
	if (!lua_getmetatable(T, idx) || lua_topointer(T, -1) != mt)
		utils_typeerror(T, idx, name);
}

/* sleeper.c */
int sleeper_new(lua_State *T);
int sleeper_sleep(lua_State *T);
int sleeper_wakeup(lua_State *T);
void sleeper_free_timers(struct utils *u);

/* timer.c */
int timer_new(lua_State *T);
int timer_cancel(lua_State *T);

#endif
