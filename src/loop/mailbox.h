/* mailbox.h: what crosses threads: each loop's mailbox, and the group of loops.
 *
 * Loops share no Lua value. A message is encoded by its sender into one buffer
 * (message.c), appended under the target mailbox's mutex, and announced with ev_async_send;
 * the target's thread decodes it into its own lua_State. Functions marked "any thread" may
 * be called from any loop's thread; the others only from the mailbox owner's thread. */
#ifndef LEM_MAILBOX_H
#define LEM_MAILBOX_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "lem.h"

#define LEM_MAILBOX_DEFAULT 65536   /* messages a mailbox holds before send says 'full' */

struct lem_vmsg {
	struct lem_vmsg *next, *prev;      /* prev: only among the handed (loops.c) */
	int from;                   /* sender's loop id */
	int nvalues;                /* top-level values */
	size_t len, cap;            /* bytes of data used, allocated */
	unsigned char data[];       /* encoded values (message.c) */
};

struct lem_recv;                    /* a coroutine waiting in receive (loops.c) */

struct lem_mbox {
	/* shared with senders: under lock */
	pthread_mutex_t lock;
	struct lem_vmsg *head, **tail;
	int closed;                 /* the owner finished: sends fail with 'closed' */
	/* shared, atomics */
	unsigned pending;           /* messages sent and not yet received */
	int idle;                   /* the owner only waits in receive: LEM_IDLE_STRICT, or
	                               LEM_IDLE_TIMED with a timed receive among them */
	int stop, close;            /* requests from other threads: stop the loop; fail the
	                               receivers with 'closed' ... */
	uint64_t close_epoch;       /* ... that wait since before this idle period began */
	/* the owner's */
	uint64_t epoch;             /* idle periods begun; written under the group's lock */
	lem_loop *loop;
	ev_async wake;
	struct lem_vmsg *lhead;            /* taken from the shared queue, not yet received */
	struct lem_recv *whead, *wlast;   /* waiting receivers, first come first served */
	int nwaiting;
	int ntimed;                       /* of those, receives with a timeout */
	struct lem_vmsg *handed;           /* given to woken receivers, not yet decoded */
	struct lem_recv *spare;           /* a receiver allocated before a suspension that
	                                     raised, for the next one (loops.c) */
	unsigned burst;                   /* receives served at once since the last yield */
};

enum { LEM_IDLE_STRICT = 1, LEM_IDLE_TIMED };

/* The loops of one process, numbered 1..count. Idle bookkeeping: a loop whose only work
 * left is coroutines waiting in receive marks itself idle, strictly idle when none of
 * them has a timeout. When nothing is on its way to an idle loop, the receives of an
 * idle loop whose every other running loop is strictly idle return nil, 'closed': no
 * message can come to them. A loop waiting in a timed receive keeps the others' receives
 * open, since its coroutine may send once its receive times out. */
struct lem_group {
	int count;
	unsigned capacity;          /* of each mailbox */
	struct lem_mbox *mbox;      /* [count]; mbox[i - 1] is loop i's */
	pthread_mutex_t lock;       /* for what follows */
	int live, idle, strict;     /* loops not finished; of those, idle ones; strictly */
	int stopping, status;       /* utils.exit, an uncaught error or a signal: first wins */
	void (*on_finish)(struct lem_group *g);   /* called once every loop finished */
	void (*on_stop)(struct lem_group *g);     /* called once when the group stops, in
	                                             the thread that stops it, under lock */
	void *data;
};

struct lem_group *lem_group_new(int count, unsigned capacity);
void lem_group_free(struct lem_group *g);
/* Any thread: stops every loop with status (the first call wins). */
void lem_group_stop(struct lem_group *g, int status);
int lem_group_status(struct lem_group *g);

/* Sets up the mailbox of loop id on its loop, before the loop runs and while no other
 * thread makes descriptors. Returns 0, or a negative errno (no descriptor left). */
int lem_mbox_open(struct lem_group *g, int id, lem_loop *loop);
/* Owner: run the loop with the idle protocol; returns when the loop has finished. */
void lem_mbox_run(lem_loop *loop);
/* Owner: leaves the idle state, before a callback wakes a receiver while the loop may be
 * idle (its timeout). */
void lem_mbox_busy(lem_loop *loop);
/* Owner: closes the mailbox, drops what it holds, and leaves the group. */
void lem_mbox_close(lem_loop *loop);

/* Any thread: appends m to loop to's mailbox and wakes it. Takes m on success.
 * Returns 0, -EPIPE (closed) or -ENOSPC (full). */
int lem_mbox_send(struct lem_group *g, int to, struct lem_vmsg *m);
/* Owner: the next message not yet received, removed from the mailbox, or NULL. */
struct lem_vmsg *lem_mbox_take(struct lem_mbox *mb);

/* message.c: encoding values [first, last] of L; NULL and a message on L's stack for
 * errors that name argument numbers (the caller raises). Decoding pushes the values and
 * raises when it fails (out of memory): it runs protected, where the message is freed. */
struct lem_vmsg *lem_msg_encode(lua_State *L, int first, int last, int *badarg);
void lem_msg_decode(lua_State *L, const struct lem_vmsg *m);
struct lem_vmsg *lem_msg_copy(const struct lem_vmsg *m);

/* loops.c: the receivers' side, called by the mailbox owner. */
void lem_loops_deliver(lem_loop *loop);           /* hand messages to waiting receivers */
void lem_loops_close_waiting(lem_loop *loop, uint64_t epoch);   /* nil, 'closed' to the
                                                   receives waiting since before epoch */
void lem_loops_drop_waiting(lem_loop *loop);      /* free receivers and the handed
                                                     messages at close */

#endif
