/* mailbox.h: what crosses threads: each loop's mailbox (the group of loops: group.h).
 *
 * Loops share no Lua value. A message is a block its sender made (lem.loops encodes Lua
 * values into one), appended under the target mailbox's mutex and announced with
 * ev_async_send; the target's thread hands it to the module that registered the
 * mailbox's hook (lem.h). Functions marked "any thread" may be called from any loop's
 * thread; the others only from the mailbox owner's thread. */
#ifndef LEM_MAILBOX_H
#define LEM_MAILBOX_H

#include <pthread.h>
#include <stdint.h>
#include "lem.h"
#include "group.h"

#define LEM_MAILBOX_DEFAULT 65536   /* messages a mailbox holds before send says 'full' */

struct lem_mbox {
	/* shared with senders: under lock */
	pthread_mutex_t lock;
	lem_msg *head, **tail;
	int closed;                 /* the owner finished: posts fail with -EPIPE */
	/* shared, atomics */
	unsigned pending;           /* messages posted and not yet taken */
	int idle;                   /* the owner only waits for messages: LEM_IDLE_STRICT, or
	                               LEM_IDLE_TIMED with a timed wait among them */
	int stop, close;            /* requests from other threads: stop the loop; end the
	                               waits (LEM_MAIL_QUIET) ... */
	uint64_t close_epoch;       /* ... that began before this idle period */
	int shutdown;               /* request: the shutdown began (LEM_SHUTDOWN); set until
	                               the loop hears it */
	uint64_t signals;           /* signals for its hooks, not yet heard: bit sig - 1 */
	uint64_t catching;          /* signals its loop catches (lem_signal), bit sig - 1 */
	/* the owner's */
	uint64_t epoch;             /* idle periods begun; written under the group's lock */
	lem_loop *loop;
	ev_async wake;
	lem_msg *lhead;             /* moved from the shared queue, not yet taken */
	int nwaiting;               /* coroutines waiting for a message (lem_mail_wait) */
	int ntimed;                 /* of those, waits with a timeout */
	lem_mail_hook *hook;        /* the receiving module's (lem_mail_hook_set) */
	void *hook_ud;
	/* shared, atomic */
	int probe;                  /* requests for probe.c: LEM_PROBE_* bits */
};

enum { LEM_IDLE_STRICT = 1, LEM_IDLE_TIMED };

/* Before its loop opens it (lem_group_new), and after every thread is done with it. */
void lem_mbox_init(struct lem_mbox *mb);
void lem_mbox_destroy(struct lem_mbox *mb);
/* Any thread, under the group's lock: sets *flag (mb's stop or close) while mb is open,
 * and wakes its loop. */
void lem_mbox_request(struct lem_mbox *mb, int *flag);
/* Any thread: hands signal sig to mb's loop if it is open and catches sig. Returns 1 if
 * so, else 0. */
int lem_mbox_signal(struct lem_mbox *mb, int sig);
/* Any thread: asks mb's loop for a probe (bits: LEM_PROBE_*, loop.h), waking it for a
 * dump. Returns 1 if its loop is open, else 0: the caller then interrupts its thread. */
int lem_mbox_probe(struct lem_mbox *mb, int bits);
/* Sets up the mailbox of loop id on its loop, before the loop runs and while no other
 * thread makes descriptors. Returns 0, or a negative errno (no descriptor left). */
int lem_mbox_open(struct lem_group *g, int id, lem_loop *loop);
/* Owner: run the loop with the idle protocol; returns when the loop has finished. */
void lem_mbox_run(lem_loop *loop);
/* Owner, once the loop has run: if the shutdown's deadline stopped it, prints what was
 * still there (its signal hooks count their waits). */
void lem_mbox_report(lem_loop *loop);
/* Owner: closes the mailbox, drops what it holds (LEM_MAIL_CLOSED), and leaves the
 * group. Does nothing if the mailbox is not open. */
void lem_mbox_close(lem_loop *loop);

#endif
