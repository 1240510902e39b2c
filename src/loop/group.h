/* group.h: the loops of one process, their stop and their idle bookkeeping.
 *
 * Functions marked "any thread" may be called from any loop's thread (or the main
 * thread); the others only from the thread of the loop they name. */
#ifndef LEM_GROUP_H
#define LEM_GROUP_H

#include <pthread.h>
#include "lem.h"

struct lem_mbox;

/* The loops of one process, numbered 1..count. Idle bookkeeping: a loop whose only work
 * left is coroutines waiting for a message marks itself idle, strictly idle when none of
 * them has a timeout. When nothing is on its way to an idle loop, the receives of an
 * idle loop whose every other running loop is strictly idle hear that no message can
 * come. A loop waiting in a timed receive keeps the others' receives open, since its
 * coroutine may send once its receive times out. */
struct lem_group {
	int count;
	unsigned capacity;          /* of each mailbox */
	struct lem_mbox *mbox;      /* [count]; mbox[i - 1] is loop i's */
	pthread_mutex_t lock;       /* for what follows, and each mailbox's idle and epoch */
	int live, idle, strict;     /* loops not finished; of those, idle ones; strictly */
	int stopping, status;       /* utils.exit, an uncaught error or a signal: first wins */
	void (*on_finish)(struct lem_group *g);   /* called once every loop finished */
	void (*on_stop)(struct lem_group *g);     /* called once when the group stops, in
	                                             the thread that stops it, under lock */
};

struct lem_group *lem_group_new(int count, unsigned capacity);
void lem_group_free(struct lem_group *g);
/* Any thread: stops every loop with status (the first call wins). */
void lem_group_stop(struct lem_group *g, int status);
int lem_group_status(struct lem_group *g);
/* Owner of mb: marks its loop idle (LEM_IDLE_STRICT or LEM_IDLE_TIMED, mailbox.h) or
 * busy (0). */
void lem_group_idle(struct lem_group *g, struct lem_mbox *mb, int idle);
/* Owner of a mailbox that has just closed: its loop leaves the group. */
void lem_group_leave(struct lem_group *g);

#endif
