/* mailbox.c: each loop's mailbox, and lem.h's messages between loops; through the same
 * wake-up, the signals and the shutdown that reach a loop, and lem.h's signal hooks.
 *
 * Lock order: the group's lock before a mailbox's. Senders take only the target mailbox's
 * lock; ev_async_send runs under it, so that a mailbox whose loop has closed (and whose
 * ev_loop may be gone) is never signalled. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include "loop.h"
#include "mailbox.h"

#define LOAD(p) __atomic_load_n(p, __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n(p, v, __ATOMIC_SEQ_CST)

void lem_mbox_init(struct lem_mbox *mb)
{
	pthread_mutex_init(&mb->lock, NULL);
	mb->tail = &mb->head;   /* open: it takes messages before its loop starts */
}

void lem_mbox_destroy(struct lem_mbox *mb)
{
	pthread_mutex_destroy(&mb->lock);
}

void lem_mbox_request(struct lem_mbox *mb, int *flag)
{
	pthread_mutex_lock(&mb->lock);
	if (!mb->closed) {
		STORE(flag, 1);
		if (mb->loop)       /* else its loop sees the flag when it opens the mailbox */
			ev_async_send(mb->loop->ev, &mb->wake);
	}
	pthread_mutex_unlock(&mb->lock);
}

/* Owner: leaves the idle state, before anything may hand a message to a coroutine or
 * wake one while the loop may be idle. */
static void mbox_busy(lem_loop *loop)
{
	struct lem_mbox *mb = loop->mbox;

	if (LOAD(&mb->idle))
		lem_group_idle(loop->group, mb, 0);
}

/* Tells every signal hook of loop about event; returns the sum of what they return. */
static int mbox_tell(lem_loop *loop, int event)
{
	int sum = 0;

	for (int i = 0; i < loop->nsighooks; i++)
		sum += loop->sighooks[i].hook(loop, event, loop->sighooks[i].ud);
	return sum;
}

static void mbox_wake(struct ev_loop *ev, ev_async *w, int revents)
{
	struct lem_mbox *mb = w->data;
	lem_loop *loop = mb->loop;
	uint64_t sigs;

	(void)ev; (void)revents;
	if (LOAD(&mb->stop)) {
		lem_loop_stop(loop, lem_group_status(loop->group));
		return;
	}
	if (LOAD(&mb->probe) & LEM_PROBE_DUMP)   /* nothing runs: from here */
		lem_probe_dump(loop);
	/* Leave the idle state before any message is taken, or coroutine woken: an idle loop
	 * whose message was taken would look, to the group's verdict, like one that nothing
	 * can ever wake. */
	mbox_busy(loop);
	/* (loads first: an exchange is a locked instruction, and most wakes carry messages) */
	if (LOAD(&mb->shutdown) && __atomic_exchange_n(&mb->shutdown, 0, __ATOMIC_SEQ_CST) &&
	    !loop->shutdown) {
		loop->shutdown = 1;
		mbox_tell(loop, LEM_SHUTDOWN);
	}
	/* a signal that comes again meanwhile sets its bit again: it is heard once more */
	sigs = LOAD(&mb->signals) ? __atomic_exchange_n(&mb->signals, 0, __ATOMIC_SEQ_CST) : 0;
	for (; sigs; sigs &= sigs - 1)
		mbox_tell(loop, __builtin_ctzll(sigs) + 1);
	if (mb->hook && LOAD(&mb->pending) > 0)
		mb->hook(loop, LEM_MAIL_ARRIVED, 0, mb->hook_ud);
	if (LOAD(&mb->close) && __atomic_exchange_n(&mb->close, 0, __ATOMIC_SEQ_CST) && mb->hook)
		mb->hook(loop, LEM_MAIL_QUIET, LOAD(&mb->close_epoch), mb->hook_ud);
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
	ev_async_init(&mb->wake, mbox_wake);
	mb->wake.data = mb;
	ev_async_start(loop->ev, &mb->wake);
	ev_unref(loop->ev);   /* the mailbox alone keeps a loop alive only while idle */
	pthread_mutex_lock(&mb->lock);
	mb->loop = loop;      /* senders may signal it from now on */
	if (mb->head || LOAD(&mb->stop) || LOAD(&mb->shutdown) || LOAD(&mb->signals))
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
		/* Only waits for messages are left: sleep until a message, a stop or the
		 * verdict that nothing can come. Its kind comes from the waits of now: none can
		 * start while it is idle. */
		lem_group_idle(loop->group, mb, mb->ntimed ? LEM_IDLE_TIMED : LEM_IDLE_STRICT);
		ev_ref(loop->ev);
		ev_run(loop->ev, EVRUN_ONCE);
		ev_unref(loop->ev);
		lem_group_idle(loop->group, mb, 0);
	}
}

int lem_mbox_probe(struct lem_mbox *mb, int bits)
{
	int open;

	pthread_mutex_lock(&mb->lock);
	open = !mb->closed && mb->loop;
	if (open) {
		__atomic_fetch_or(&mb->probe, bits, __ATOMIC_SEQ_CST);
		if (bits & LEM_PROBE_DUMP)
			ev_async_send(mb->loop->ev, &mb->wake);
	}
	pthread_mutex_unlock(&mb->lock);
	return open;
}

int lem_mbox_signal(struct lem_mbox *mb, int sig)
{
	uint64_t bit = (uint64_t)1 << (sig - 1);
	int taken = 0;

	pthread_mutex_lock(&mb->lock);
	if (!mb->closed && (LOAD(&mb->catching) & bit)) {
		__atomic_fetch_or(&mb->signals, bit, __ATOMIC_SEQ_CST);
		if (mb->loop)
			ev_async_send(mb->loop->ev, &mb->wake);
		taken = 1;
	}
	pthread_mutex_unlock(&mb->lock);
	return taken;
}

void lem_mbox_report(lem_loop *loop)
{
	char what[160];
	int n = 0, waits;
	unsigned queued = loop->rq_len + loop->unrun;

	if (!loop->stopping || !lem_group_expired(loop->group))
		return;
	waits = mbox_tell(loop, LEM_DEADLINE);
	if (loop->interrupted)
		n += snprintf(what + n, sizeof what - n, "running Lua code");
	if (waits > 0)
		n += snprintf(what + n, sizeof what - n, "%s%d wait%s pending", n ? ", " : "",
		              waits, waits == 1 ? "" : "s");
	if (queued > 0)
		n += snprintf(what + n, sizeof what - n, "%s%u coroutine%s queued to run",
		              n ? ", " : "", queued, queued == 1 ? "" : "s");
	if (n == 0)
		snprintf(what, sizeof what, "no wait that lem counts");
	fprintf(stderr, "lem: shutdown deadline passed in loop %d (%s)\n", loop->id, what);
}

static void mbox_free_list(lem_msg *m)
{
	while (m) {
		lem_msg *next = m->next;
		free(m);
		m = next;
	}
}

void lem_mbox_close(lem_loop *loop)
{
	struct lem_mbox *mb = loop->mbox;

	if (!mb)
		return;
	pthread_mutex_lock(&mb->lock);
	mb->closed = 1;
	mbox_free_list(mb->head);
	mb->head = NULL;
	mb->tail = &mb->head;
	pthread_mutex_unlock(&mb->lock);
	mbox_free_list(mb->lhead);
	mb->lhead = NULL;
	STORE(&mb->pending, 0);
	if (mb->hook)
		mb->hook(loop, LEM_MAIL_CLOSED, 0, mb->hook_ud);
	ev_ref(loop->ev);
	ev_async_stop(loop->ev, &mb->wake);
	loop->mbox = NULL;
	lem_group_leave(loop->group);
}

/* ---- lem.h's messages between loops ---- */

int lem_loops(lem_loop *loop, int *id)
{
	*id = loop->id;
	return loop->group->count;
}

int lem_post(lem_loop *loop, int to, lem_msg *m)
{
	struct lem_group *g = loop->group;
	struct lem_mbox *mb;
	int err = 0;

	if (to < 1 || to > g->count)   /* no such loop: none will ever take it */
		return -EPIPE;
	mb = &g->mbox[to - 1];
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

/* The owner moves the whole shared queue at once: one lock per batch, not per message. */
lem_msg *lem_take(lem_loop *loop)
{
	struct lem_mbox *mb = loop->mbox;
	lem_msg *m;

	if (!mb)
		return NULL;
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

void lem_mail_hook_set(lem_loop *loop, lem_mail_hook *hook, void *ud)
{
	struct lem_mbox *mb = loop->mbox;

	if (mb) {
		mb->hook = hook;
		mb->hook_ud = ud;
	}
}

/* ---- lem.h's signal hooks and shutdown ---- */

int lem_signal_hook_add(lem_loop *loop, lem_signal_hook *hook, void *ud)
{
	struct lem_sighook *h = realloc(loop->sighooks, (loop->nsighooks + 1) * sizeof *h);

	if (!h)
		return -ENOMEM;
	loop->sighooks = h;
	h[loop->nsighooks].hook = hook;
	h[loop->nsighooks++].ud = ud;
	return loop->shutdown;
}

int lem_shutdown(lem_loop *loop, double seconds)
{
	return loop->group ? lem_group_shutdown(loop->group, 0, seconds) : 0;
}

uint64_t lem_mail_wait(lem_loop *loop, int delta, int timed)
{
	struct lem_mbox *mb = loop->mbox;

	if (!mb)
		return 0;
	mb->nwaiting += delta;
	if (timed)
		mb->ntimed += delta;
	if (delta < 0) {
		/* the wait may end in a callback (a timeout) while the loop is idle: it runs a
		 * coroutine now */
		mbox_busy(loop);
	} else if (mb->lhead) {
		/* messages moved out of the shared queue, their ev_async_send handled, may wait
		 * behind waiters that are gone: the hook hears of them again */
		ev_async_send(loop->ev, &mb->wake);
	}
	return mb->epoch;
}
