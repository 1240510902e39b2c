/* group.h: the loops of one process: their stop, their shutdown, the signals they catch
 * and their idle bookkeeping.
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
	int stopping, status;       /* utils.exit, an uncaught error or the deadline: first wins */
	int shutdown;               /* the shutdown began (lem_group_shutdown) */
	int shutdown_status;        /* the status if every loop ends before the deadline */
	double deadline;            /* the shutdown's, CLOCK_MONOTONIC seconds */
	double shutdown_timeout;    /* seconds, when the caller names none (--shutdown-timeout) */
	int expired;                /* the deadline stopped the group */
	void (*on_finish)(struct lem_group *g);   /* called once every loop finished */
	void (*on_stop)(struct lem_group *g);     /* called once when the group stops, in
	                                             the thread that stops it, under lock */
	void (*on_shutdown)(struct lem_group *g); /* the same, when the shutdown begins */
};

/* The status when the deadline of a shutdown that no signal began passes: the one
 * timeout(1) reports for a command it had to stop. */
#define LEM_EXIT_LATE 124

struct lem_group *lem_group_new(int count, unsigned capacity);
void lem_group_free(struct lem_group *g);
/* Any thread: stops every loop with status (the first call wins). */
void lem_group_stop(struct lem_group *g, int status);
int lem_group_status(struct lem_group *g);
/* Any thread: begins the shutdown, with status if it ends in time, and its deadline
 * `seconds` from now (negative: shutdown_timeout). Returns 1, or 0 if a shutdown or a
 * stop began before. */
int lem_group_shutdown(struct lem_group *g, int status, double seconds);
/* Any thread: the seconds left before the shutdown's deadline (0 once it passed), or a
 * negative number while no shutdown runs (none began, or the group stops). */
double lem_group_deadline(struct lem_group *g);
/* Main thread, at the deadline: stops every loop with the shutdown's late status
 * (its signal's, else LEM_EXIT_LATE), unless the group stops already. */
void lem_group_expire(struct lem_group *g);
/* Any thread: whether the deadline stopped the group. */
int lem_group_expired(struct lem_group *g);
/* Main thread, once every loop has finished: the process's exit status. */
int lem_group_exit_status(struct lem_group *g);
/* Any thread: hands signal sig to every open loop that catches it. Returns how many. */
int lem_group_signal(struct lem_group *g, int sig);
/* Any thread: loop id catches sig (on) or not; returns whether it did before. */
int lem_group_catch(struct lem_group *g, int id, int sig, int on);
/* Any thread: the signals loop id catches, bit sig - 1. */
uint64_t lem_group_catching(struct lem_group *g, int id);
/* Owner of mb: marks its loop idle (LEM_IDLE_STRICT or LEM_IDLE_TIMED, mailbox.h) or
 * busy (0). */
void lem_group_idle(struct lem_group *g, struct lem_mbox *mb, int idle);
/* Owner of a mailbox that has just closed: its loop leaves the group. */
void lem_group_leave(struct lem_group *g);

#endif
