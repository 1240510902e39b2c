/* group.c: the loops of one process: their stop, their shutdown, handing out signals, and
 * the idle protocol's verdict.
 *
 * Lock order: the group's lock before a mailbox's (mailbox.c). */
#include <stdlib.h>
#include <time.h>
#include "mailbox.h"

#define LOAD(p) __atomic_load_n(p, __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n(p, v, __ATOMIC_SEQ_CST)

struct lem_group *lem_group_new(int count, unsigned capacity)
{
	struct lem_group *g = calloc(1, sizeof *g);

	if (!g || !(g->mbox = calloc(count, sizeof *g->mbox))) {
		free(g);
		return NULL;
	}
	g->count = g->live = count;
	g->capacity = capacity;
	pthread_mutex_init(&g->lock, NULL);
	for (int i = 0; i < count; i++)
		lem_mbox_init(&g->mbox[i]);
	return g;
}

void lem_group_free(struct lem_group *g)
{
	for (int i = 0; i < g->count; i++)
		lem_mbox_destroy(&g->mbox[i]);
	pthread_mutex_destroy(&g->lock);
	free(g->mbox);
	free(g);
}

/* A field of g read under its lock. */
static int group_read(struct lem_group *g, const int *field)
{
	int v;

	pthread_mutex_lock(&g->lock);
	v = *field;
	pthread_mutex_unlock(&g->lock);
	return v;
}

int lem_group_status(struct lem_group *g)
{
	return group_read(g, &g->status);
}

/* Under the group's lock. */
static void group_stop(struct lem_group *g, int status)
{
	if (g->stopping)
		return;
	g->stopping = 1;
	g->status = status;
	for (int i = 0; i < g->count; i++)
		lem_mbox_request(&g->mbox[i], &g->mbox[i].stop);
	if (g->on_stop)
		g->on_stop(g);
}

void lem_group_stop(struct lem_group *g, int status)
{
	pthread_mutex_lock(&g->lock);
	group_stop(g, status);
	pthread_mutex_unlock(&g->lock);
}

/* ---- the shutdown ----
 * Every loop hears that it began through its mailbox (mailbox.c hands it to the loop's
 * signal hooks) and goes on until nothing is left, as any loop does. The main thread
 * watches the deadline (runtime/threads.c) and then stops the group as utils.exit
 * would, which interrupts the loops still running Lua code. */

static double group_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int lem_group_shutdown(struct lem_group *g, int status, double seconds)
{
	int began = 0;

	pthread_mutex_lock(&g->lock);
	if (!g->stopping && !g->shutdown) {
		g->shutdown = began = 1;
		g->shutdown_status = status;
		g->deadline = group_now() + (seconds < 0 ? g->shutdown_timeout : seconds);
		for (int i = 0; i < g->count; i++)
			lem_mbox_request(&g->mbox[i], &g->mbox[i].shutdown);
		if (g->on_shutdown)
			g->on_shutdown(g);
	}
	pthread_mutex_unlock(&g->lock);
	return began;
}

double lem_group_deadline(struct lem_group *g)
{
	double left = -1;

	pthread_mutex_lock(&g->lock);
	if (g->shutdown && !g->stopping) {
		left = g->deadline - group_now();
		if (left < 0)
			left = 0;
	}
	pthread_mutex_unlock(&g->lock);
	return left;
}

void lem_group_expire(struct lem_group *g)
{
	pthread_mutex_lock(&g->lock);
	if (g->shutdown && !g->stopping) {
		g->expired = 1;
		group_stop(g, g->shutdown_status ? g->shutdown_status : LEM_EXIT_LATE);
	}
	pthread_mutex_unlock(&g->lock);
}

int lem_group_expired(struct lem_group *g)
{
	return group_read(g, &g->expired);
}

int lem_group_exit_status(struct lem_group *g)
{
	return g->stopping ? g->status : g->shutdown ? g->shutdown_status : 0;
}

/* ---- signals ---- */

int lem_group_signal(struct lem_group *g, int sig)
{
	int n = 0;

	for (int i = 0; i < g->count; i++)
		n += lem_mbox_signal(&g->mbox[i], sig);
	return n;
}

int lem_group_catch(struct lem_group *g, int id, int sig, int on)
{
	uint64_t bit = (uint64_t)1 << (sig - 1), *catching = &g->mbox[id - 1].catching;

	if (on)
		return (__atomic_fetch_or(catching, bit, __ATOMIC_SEQ_CST) & bit) != 0;
	return (__atomic_fetch_and(catching, ~bit, __ATOMIC_SEQ_CST) & bit) != 0;
}

uint64_t lem_group_catching(struct lem_group *g, int id)
{
	return LOAD(&g->mbox[id - 1].catching);
}

/* Under the group's lock: an idle loop hears that no message can come when every other
 * running loop is strictly idle and no message is on its way to an idle loop. So when
 * every running loop is idle, all their waits end if all are strictly idle, and only the
 * timed one's if one is not; with two timed ones, each waits for its timeout. A sender is
 * never idle, and a message counts in its target's pending from before its sender can
 * become idle. The news of the shutdown or of a signal, not yet heard by an idle loop,
 * counts as a message: it may wake a coroutine there, which may send. */
static void group_quiet(struct lem_group *g)
{
	int i, idle;

	if (g->live == 0 || g->idle < g->live || g->strict < g->live - 1 || g->stopping)
		return;
	for (i = 0; i < g->count; i++) {
		struct lem_mbox *mb = &g->mbox[i];
		if (LOAD(&mb->idle) && (LOAD(&mb->pending) > 0 || LOAD(&mb->shutdown) ||
		                        LOAD(&mb->signals)))
			return;
	}
	for (i = 0; i < g->count; i++) {
		struct lem_mbox *mb = &g->mbox[i];
		if ((idle = LOAD(&mb->idle)) && (g->strict == g->live || idle == LEM_IDLE_TIMED)) {
			/* the verdict holds for this idle period: a timeout may end it, and its
			 * coroutine wait again, before the loop sees the request */
			STORE(&mb->close_epoch, mb->epoch);
			lem_mbox_request(mb, &mb->close);
		}
	}
}

void lem_group_idle(struct lem_group *g, struct lem_mbox *mb, int idle)
{
	pthread_mutex_lock(&g->lock);
	int was = LOAD(&mb->idle);
	if (was != idle) {
		if (idle)
			mb->epoch++;
		STORE(&mb->idle, idle);
		g->idle += (idle != 0) - (was != 0);
		g->strict += (idle == LEM_IDLE_STRICT) - (was == LEM_IDLE_STRICT);
		if (idle)
			group_quiet(g);
	}
	pthread_mutex_unlock(&g->lock);
}

/* A loop that leaves may be the last busy one the others' verdict waited for. */
void lem_group_leave(struct lem_group *g)
{
	int last;

	pthread_mutex_lock(&g->lock);
	last = --g->live == 0;
	group_quiet(g);
	pthread_mutex_unlock(&g->lock);
	if (last && g->on_finish)
		g->on_finish(g);
}
