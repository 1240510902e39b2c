/* mailbox.c: each loop's mailbox, the group of loops, and the idle protocol.
 *
 * Lock order: the group's lock before a mailbox's. Senders take only the target mailbox's
 * lock; ev_async_send runs under it, so that a mailbox whose loop has closed (and whose
 * ev_loop may be gone) is never signalled. */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include "loop.h"
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
	for (int i = 0; i < count; i++) {
		struct lem_mbox *mb = &g->mbox[i];
		pthread_mutex_init(&mb->lock, NULL);
		mb->tail = &mb->head;   /* open: it takes messages before its loop starts */
	}
	return g;
}

void lem_group_free(struct lem_group *g)
{
	for (int i = 0; i < g->count; i++)
		pthread_mutex_destroy(&g->mbox[i].lock);
	pthread_mutex_destroy(&g->lock);
	free(g->mbox);
	free(g);
}

int lem_group_status(struct lem_group *g)
{
	int status;

	pthread_mutex_lock(&g->lock);
	status = g->status;
	pthread_mutex_unlock(&g->lock);
	return status;
}

/* Sets a request flag on an open mailbox and wakes its loop. Under the group's lock. */
static void request(struct lem_mbox *mb, int *flag)
{
	pthread_mutex_lock(&mb->lock);
	if (!mb->closed) {
		STORE(flag, 1);
		if (mb->loop)       /* else its loop sees the flag when it opens the mailbox */
			ev_async_send(mb->loop->ev, &mb->wake);
	}
	pthread_mutex_unlock(&mb->lock);
}

void lem_group_stop(struct lem_group *g, int status)
{
	pthread_mutex_lock(&g->lock);
	if (!g->stopping) {
		g->stopping = 1;
		g->status = status;
		for (int i = 0; i < g->count; i++)
			request(&g->mbox[i], &g->mbox[i].stop);
		if (g->on_stop)
			g->on_stop(g);
	}
	pthread_mutex_unlock(&g->lock);
}

/* Under the group's lock: an idle loop hears that no message can come when every other
 * running loop is strictly idle and no message is on its way to an idle loop. So when
 * every running loop is idle, all their receives are closed if all are strictly idle,
 * and only the timed one's if one is not; with two timed ones, each waits for its
 * timeout. A sender is never idle, and a message counts in its target's pending from
 * before its sender can become idle. */
static void check_quiet(struct lem_group *g)
{
	int i, idle;

	if (g->live == 0 || g->idle < g->live || g->strict < g->live - 1 || g->stopping)
		return;
	for (i = 0; i < g->count; i++)
		if (LOAD(&g->mbox[i].idle) && LOAD(&g->mbox[i].pending) > 0)
			return;
	for (i = 0; i < g->count; i++) {
		struct lem_mbox *mb = &g->mbox[i];
		if ((idle = LOAD(&mb->idle)) && (g->strict == g->live || idle == LEM_IDLE_TIMED)) {
			/* the verdict holds for this idle period: a timeout may end it, and its
			 * coroutine receive again, before the loop sees the request */
			STORE(&mb->close_epoch, mb->epoch);
			request(mb, &mb->close);
		}
	}
}

/* Owner: idle (its kind from the receives waiting now: none can start while it is idle)
 * or not. */
static void set_idle(struct lem_group *g, struct lem_mbox *mb, int idle)
{
	if (idle)
		idle = mb->ntimed ? LEM_IDLE_TIMED : LEM_IDLE_STRICT;
	pthread_mutex_lock(&g->lock);
	int was = LOAD(&mb->idle);
	if (was != idle) {
		if (idle)
			mb->epoch++;
		STORE(&mb->idle, idle);
		g->idle += (idle != 0) - (was != 0);
		g->strict += (idle == LEM_IDLE_STRICT) - (was == LEM_IDLE_STRICT);
		if (idle)
			check_quiet(g);
	}
	pthread_mutex_unlock(&g->lock);
}

static void wake_cb(struct ev_loop *ev, ev_async *w, int revents)
{
	struct lem_mbox *mb = w->data;
	lem_loop *loop = mb->loop;

	(void)ev; (void)revents;
	if (LOAD(&mb->stop)) {
		lem_loop_stop(loop, lem_group_status(loop->group));
		return;
	}
	/* Leave the idle state before taking any message: an idle loop whose message was
	 * taken would look, to check_quiet, like one that nothing can ever wake. */
	lem_mbox_busy(loop);
	lem_loops_deliver(loop);
	if (__atomic_exchange_n(&mb->close, 0, __ATOMIC_SEQ_CST))
		lem_loops_close_waiting(loop, LOAD(&mb->close_epoch));
}

void lem_mbox_busy(lem_loop *loop)
{
	struct lem_mbox *mb = loop->mbox;

	if (LOAD(&mb->idle))
		set_idle(loop->group, mb, 0);
}

int lem_mbox_open(struct lem_group *g, int id, lem_loop *loop)
{
	struct lem_mbox *mb = &g->mbox[id - 1];
	int fd;

	/* libev makes the descriptor that ev_async_send writes to (an eventfd) when the first
	 * async watcher starts, and aborts if it cannot: see that one can be had first. */
	fd = eventfd(0, EFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	close(fd);
	loop->group = g;
	loop->id = id;
	loop->mbox = mb;
	ev_async_init(&mb->wake, wake_cb);
	mb->wake.data = mb;
	ev_async_start(loop->ev, &mb->wake);
	ev_unref(loop->ev);   /* the mailbox alone keeps a loop alive only while idle */
	pthread_mutex_lock(&mb->lock);
	mb->loop = loop;      /* senders may signal it from now on */
	if (mb->head || LOAD(&mb->stop))
		ev_async_send(loop->ev, &mb->wake);
	pthread_mutex_unlock(&mb->lock);
	return 0;
}

void lem_mbox_run(lem_loop *loop)
{
	struct lem_mbox *mb = loop->mbox;

	/* A stop that arrives while the loop idles ends the ev_run below with ev_break, and
	 * ev_run forgets a break when it starts: check before each run, or the next one would
	 * spin on the idle watcher that lem_loop_stop started. */
	while (!loop->stopping) {
		ev_run(loop->ev, 0);
		if (loop->stopping || mb->nwaiting == 0)
			return;
		/* Only receivers are left: sleep until a message, a stop or the verdict that
		 * nothing can come. */
		set_idle(loop->group, mb, 1);
		ev_ref(loop->ev);
		ev_run(loop->ev, EVRUN_ONCE);
		ev_unref(loop->ev);
		set_idle(loop->group, mb, 0);
	}
}

static void free_msgs(struct lem_vmsg *m)
{
	while (m) {
		struct lem_vmsg *next = m->next;
		free(m);
		m = next;
	}
}

void lem_mbox_close(lem_loop *loop)
{
	struct lem_mbox *mb = loop->mbox;
	struct lem_group *g = loop->group;
	int last;

	if (!mb)
		return;
	pthread_mutex_lock(&mb->lock);
	mb->closed = 1;
	free_msgs(mb->head);
	mb->head = NULL;
	mb->tail = &mb->head;
	pthread_mutex_unlock(&mb->lock);
	free_msgs(mb->lhead);
	mb->lhead = NULL;
	STORE(&mb->pending, 0);
	lem_loops_drop_waiting(loop);
	ev_ref(loop->ev);
	ev_async_stop(loop->ev, &mb->wake);

	pthread_mutex_lock(&g->lock);
	last = --g->live == 0;
	check_quiet(g);
	pthread_mutex_unlock(&g->lock);
	loop->mbox = NULL;
	if (last && g->on_finish)
		g->on_finish(g);
}

int lem_mbox_send(struct lem_group *g, int to, struct lem_vmsg *m)
{
	struct lem_mbox *mb = &g->mbox[to - 1];
	int err = 0;

	m->next = NULL;
	pthread_mutex_lock(&mb->lock);
	if (mb->closed) {
		err = -EPIPE;
	} else if (LOAD(&mb->pending) >= g->capacity) {
		err = -ENOSPC;
	} else {
		*mb->tail = m;
		mb->tail = &m->next;
		__atomic_add_fetch(&mb->pending, 1, __ATOMIC_SEQ_CST);
		if (mb->loop)
			ev_async_send(mb->loop->ev, &mb->wake);
	}
	pthread_mutex_unlock(&mb->lock);
	return err;
}

struct lem_vmsg *lem_mbox_take(struct lem_mbox *mb)
{
	struct lem_vmsg *m;

	if (!mb->lhead) {
		pthread_mutex_lock(&mb->lock);
		mb->lhead = mb->head;
		mb->head = NULL;
		mb->tail = &mb->head;
		pthread_mutex_unlock(&mb->lock);
		if (!mb->lhead)
			return NULL;
	}
	m = mb->lhead;
	mb->lhead = m->next;
	__atomic_sub_fetch(&mb->pending, 1, __ATOMIC_SEQ_CST);
	return m;
}
