/* stats.c: a loop's figures (lem.h's lem_stats, utils.stats) and the timing of resumes.
 *
 * Timing costs what the resumes it times cost too: a switch takes some 40 ns and a read
 * of CLOCK_MONOTONIC some 25 ns, so a read per resume would slow the loop by half. lem
 * reads the clock at the start and the end of each batch, and between resumes only as
 * often as keeps those reads under a few thousandths of the time: while resumes last
 * STRIDE_TIME or more, after each one; while they are shorter, after groups of them
 * (up to STRIDE_MAX), the size taken from the group before. A batch that starts with one
 * coroutine queued times its resume alone: in a loop that waits for I/O most are. (Timing
 * alone the last resume of every batch would not do: where two coroutines wake each other,
 * every resume is the last one queued, and would pay two reads.) A group
 * that took longer than the longest resume so far counts as one resume, whose place is
 * unknown ("?"): its time is then the group's, which is what a slow resume among short
 * ones makes it anyway. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "loop.h"
#include "mailbox.h"

#define STRIDE_TIME 10e-6
#define STRIDE_MAX 256

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* "file:line" of the first frame from level up that has a line, or "?". */
const char *lem_stats_where(lua_State *T, int level, char *buf, size_t size)
{
	lua_Debug ar;

	for (; lua_getstack(T, level, &ar); level++)
		if (lua_getinfo(T, "Sl", &ar) && ar.currentline > 0) {
			snprintf(buf, size, "%s:%d", ar.short_src, ar.currentline);
			return buf;
		}
	snprintf(buf, size, "?");
	return buf;
}

/* Accounts for the resumes since the last read; T ran the last of them, or NULL. */
static void account(lem_loop *loop, lua_State *T)
{
	double t = now(), d = t - loop->tm_last, avg;
	unsigned long n = (loop->rseq - loop->tm_base) / 2;
	unsigned stride;

	loop->tm_last = t;
	loop->tm_base = loop->rseq;
	if (n == 0)
		return;
	if (d > loop->max_resume) {
		loop->max_resume = d;
		if (n == 1 && T)
			lem_stats_where(T, 0, loop->max_where, sizeof loop->max_where);
		else
			strcpy(loop->max_where, "?");
	}
	avg = d / (double)n;
	stride = avg >= STRIDE_TIME ? 1 : avg * STRIDE_MAX <= STRIDE_TIME ? STRIDE_MAX
	         : (unsigned)(STRIDE_TIME / avg);
	loop->tm_stride = stride;
	loop->tm_next = loop->rseq + 2ul * stride;
}

void lem_stats_time(lem_loop *loop, lua_State *T)
{
	account(loop, T);
}

void lem_stats_batch(lem_loop *loop, int start)
{
	if (!start) {
		if (loop->rseq != loop->tm_base)
			account(loop, NULL);
		return;
	}
	loop->tm_last = now();
	loop->tm_base = loop->rseq;
	loop->tm_next = loop->rseq + 2ul * (loop->rq_len == 1 || !loop->tm_stride ? 1 : loop->tm_stride);
}

int lem_stats_hook_add(lem_loop *loop, lem_stats_hook *hook, void *ud)
{
	struct lem_stathook *h = realloc(loop->stathooks, (loop->nstathooks + 1) * sizeof *h);

	if (!h)
		return -ENOMEM;
	loop->stathooks = h;
	h[loop->nstathooks].hook = hook;
	h[loop->nstathooks++].ud = ud;
	return 0;
}

void lem_stats_free(lem_loop *loop)
{
	free(loop->stathooks);
	loop->stathooks = NULL;
	loop->nstathooks = 0;
}

static void setnum(lua_State *T, const char *k, lua_Number v)
{
	lua_pushnumber(T, v);
	lua_setfield(T, -2, k);
}

void lem_stats(lem_loop *loop, lua_State *T)
{
	lua_createtable(T, 0, 24);
	setnum(T, "runnable", loop->rq_len);
	setnum(T, "spares", loop->nspares);
	setnum(T, "resumes", (lua_Number)((loop->rseq + 1) / 2));
	setnum(T, "iterations", ev_iteration(loop->ev));
	setnum(T, "max_resume", loop->max_resume);
	lua_pushstring(T, loop->max_resume > 0 ? loop->max_where : "?");
	lua_setfield(T, -2, "max_resume_where");
	setnum(T, "memory", lua_gc(T, LUA_GCCOUNT, 0) * 1024.0 + lua_gc(T, LUA_GCCOUNTB, 0));
	if (loop->mbox)
		setnum(T, "mailbox", __atomic_load_n(&loop->mbox->pending, __ATOMIC_RELAXED));
	for (int i = 0; i < loop->nstathooks; i++)
		loop->stathooks[i].hook(loop, T, loop->stathooks[i].ud);
}
