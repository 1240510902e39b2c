/* probe.c: seeing inside a running loop: the warning that a coroutine blocks its loop
 * (--warn-blocking) and the dump (SIGQUIT), each taken in the loop's own thread.
 *
 * Another thread (the runtime's watchdog, or the main thread on SIGQUIT) sets a bit of
 * the loop's mailbox's `probe` and sends the loop's thread the interrupt signal. Its
 * handler hooks the coroutine that runs now (lem_probe_arm: only stores, as for a stop,
 * see loop.c), and the hook, at that coroutine's next instruction, call or return, takes
 * the bits, puts back the hook it replaced and prints. A dump also wakes the mailbox:
 * a loop that runs no Lua code at that moment prints from its event loop instead
 * (lem_probe_dump); whichever takes the bit first prints. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "loop.h"
#include "mailbox.h"

#define PROBE_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT)
#define MAX_KEYS 64

long lem_probe_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct report {
	lem_loop *loop;
	lua_State *T;             /* the coroutine that runs, or NULL */
	int bits;                 /* LEM_PROBE_* */
};

static int cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* [-0, +1, m] "name value, name value..." of loop's figures, sorted by name. */
static void stats_line(lua_State *S, lem_loop *loop)
{
	const char *keys[MAX_KEYS];
	int n = 0, t;
	luaL_Buffer b;

	lem_stats(loop, S);
	t = lua_gettop(S);
	lua_pushnil(S);
	while (lua_next(S, t)) {
		if (lua_type(S, -2) == LUA_TSTRING && n < MAX_KEYS)
			keys[n++] = lua_tostring(S, -2);   /* the table keeps it */
		lua_pop(S, 1);
	}
	qsort(keys, n, sizeof *keys, cmp);
	luaL_buffinit(S, &b);
	for (int i = 0; i < n; i++) {
		char num[32];
		lua_Number v;

		lua_getfield(S, t, keys[i]);
		v = lua_tonumber(S, -1);
		if (lua_type(S, -1) == LUA_TNUMBER && v != (lua_Number)(long long)v) {
			snprintf(num, sizeof num, "%.6f", (double)v);   /* seconds: to the µs */
			lua_pushstring(S, num);
			lua_replace(S, -2);
		}
		lua_pushfstring(S, "%s%s %s", i ? ", " : "", keys[i],
		                lua_isstring(S, -1) ? lua_tostring(S, -1) : "?");
		lua_remove(S, -2);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	lua_remove(S, t);
}

/* [-0, +1, m] debug.traceback(co, msg, level) as it was at start-up; co may be S. */
static void traceback(lua_State *S, lem_loop *loop, lua_State *co, int level)
{
	lua_pushvalue(loop->H, LEM_TRACEBACK);
	lua_xmove(loop->H, S, 1);
	lua_insert(S, -2);                   /* traceback, msg */
	if (co != S) {
		lua_pushthread(co);
		lua_xmove(co, S, 1);
		lua_insert(S, -2);
	}
	lua_pushinteger(S, level);
	lua_call(S, co != S ? 3 : 2, 1);
}

/* [-0, +1, m] Every coroutine parked in a lem suspension (recorded with --debug), with
 * the function it waits in and its traceback. */
static void parked(lua_State *S, lem_loop *loop)
{
	int t;

	lua_pushliteral(S, "");              /* what it says */
	if (!loop->parked_slot)
		return;
	lem_anchor_push(loop, S, loop->parked_slot);
	t = lua_gettop(S);
	lua_pushnil(S);
	while (lua_next(S, t)) {
		lua_State *co = lua_tothread(S, -2);
		lua_Debug ar;
		const char *name = NULL;

		lua_pop(S, 1);
		/* parked: suspended (an even token on top), not woken (odd) */
		if (!co || lua_status(co) != LUA_YIELD || lua_gettop(co) == 0 ||
		    lua_type(co, -1) != LUA_TLIGHTUSERDATA ||
		    ((uintptr_t)lua_touserdata(co, -1) & 1))
			continue;
		if (lua_getstack(co, 0, &ar) && lua_getinfo(co, "n", &ar))
			name = ar.name;
		lua_pushvalue(S, t - 1);
		lua_pushfstring(S, "%s: parked in '%s'; its", loop->progname, name ? name : "?");
		traceback(S, loop, co, 0);
		lua_pushliteral(S, "\n");
		lua_concat(S, 3);
		lua_replace(S, t - 1);
	}
	lua_pop(S, 1);
}

/* Prints the report; runs protected, on the coroutine that runs or the scratch thread. */
static int report(lua_State *S)
{
	struct report *r = lua_touserdata(S, 1);
	lem_loop *loop = r->loop;
	char where[80];

	lua_checkstack(S, 16);
	if (r->bits & LEM_PROBE_BLOCKED) {
		/* level 1: where the hook fired */
		lem_stats_where(S, 1, where, sizeof where);
		lua_pushfstring(S, "%s: blocked %d ms in %s",
		                loop->progname, (int)(lem_probe_ms() -
		                __atomic_load_n(&loop->probe_since, __ATOMIC_RELAXED)), where);
		traceback(S, loop, S, 2);
		fprintf(stderr, "%s\n", lua_tostring(S, -1));
		fflush(stderr);
		lua_pop(S, 1);
	}
	if (r->bits & LEM_PROBE_DUMP) {
		lua_pushfstring(S, "%s: dump: ", loop->progname);
		stats_line(S, loop);
		if (r->T) {
			lua_pushfstring(S, "\n%s: runs at %s; its", loop->progname,
			                lem_stats_where(S, 1, where, sizeof where));
			traceback(S, loop, S, 2);
		} else {
			lua_pushfstring(S, "\n%s: runs nothing (it waits for events)", loop->progname);
		}
		lua_pushliteral(S, "\n");
		if (loop->debug)
			parked(S, loop);
		else
			lua_pushliteral(S, "");
		lua_concat(S, 5);
		fputs(lua_tostring(S, -1), stderr);
		fflush(stderr);
	}
	return 0;
}

static void probe_hook(lua_State *T, lua_Debug *ar)
{
	lem_loop *loop = lem_current;
	struct report r = { loop, T, 0 };

	(void)ar;
	lua_sethook(T, loop->probe_saved, loop->probe_mask, loop->probe_count);
	r.bits = __atomic_exchange_n(&loop->mbox->probe, 0, __ATOMIC_SEQ_CST);
	if (loop->rseq != __atomic_load_n(&loop->probe_rseq, __ATOMIC_RELAXED))
		r.bits &= ~LEM_PROBE_BLOCKED;   /* that resume ended: a stale request */
	if (r.bits && lua_cpcall(T, report, &r) != 0)
		lua_pop(T, 1);                   /* out of memory: no report */
}

void lem_probe_arm(lem_loop *loop)
{
	lua_State *T = loop->inner;

	if (!T || !__atomic_load_n(&loop->mbox->probe, __ATOMIC_SEQ_CST) ||
	    lua_gethook(T) == probe_hook)
		return;
	loop->probe_saved = lua_gethook(T);
	loop->probe_mask = lua_gethookmask(T);
	loop->probe_count = lua_gethookcount(T);
	lua_sethook(T, probe_hook, PROBE_MASK, 1);
}

static int report_idle(lua_State *S, void *ud)
{
	lua_pushcfunction(S, report);
	lua_pushlightuserdata(S, ud);
	lua_call(S, 1, 0);
	return 0;
}

void lem_probe_dump(lem_loop *loop)
{
	struct report r = { loop, NULL, LEM_PROBE_DUMP };

	if (!(__atomic_fetch_and(&loop->mbox->probe, ~LEM_PROBE_DUMP, __ATOMIC_SEQ_CST) &
	      LEM_PROBE_DUMP))
		return;
	if (lem_protect(loop, loop->L, report_idle, &r) < 0)
		lua_pop(loop->L, 2);
}

/* --debug: records T, which is about to suspend, in a weak table. */
void lem_probe_parked(lem_loop *loop, lua_State *T)
{
	luaL_checkstack(T, 4, "parked coroutines");
	if (!loop->parked_slot) {
		lua_newtable(T);
		lua_createtable(T, 0, 1);
		lua_pushliteral(T, "k");
		lua_setfield(T, -2, "__mode");
		lua_setmetatable(T, -2);
		loop->parked_slot = lem_anchor(loop, T);
		if (!loop->parked_slot)
			return;
	}
	lem_anchor_push(loop, T, loop->parked_slot);
	lua_pushthread(T);
	lua_pushboolean(T, 1);
	lua_rawset(T, -3);
	lua_pop(T, 1);
}
