/* pool.h: the thread pool that runs blocking work for the loops (lem_async_run).
 *
 * This is the one process-wide piece of lem: its worker threads and its job queue are
 * shared by every loop of the process, whatever thread runs it. Everything else a job
 * touches belongs to the loop that submitted it: each loop has its own completion queue
 * and ev_async (struct lem_jobs, made on its first job, at loop->jobs). A worker runs
 * work(arg), appends the job to its loop's completion queue and wakes that loop with
 * ev_async_send; the loop then runs done(loop, arg) in its own thread.
 *
 * The workers are started on demand (at most POOL_THREADS) with every signal blocked, so
 * that signals go to the loops, and joined by an atexit handler unless they are inside a
 * job's blocking call, which the exit does not wait for. */
#ifndef LEM_POOL_H
#define LEM_POOL_H

#include "../loop/loop.h"

/* In the loop's thread, from lem_loop_free, while the Lua state is still open: runs the
 * done callbacks of the jobs that have returned (loop->closing is set: lem_wake and the
 * anchors do nothing then), abandons those still queued or running (their done never
 * runs), frees loop->jobs or leaves it to the workers. */
void lem_pool_loop_free(lem_loop *loop);

#endif
