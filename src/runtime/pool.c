/* pool.c: the process-wide thread pool for blocking work, and each loop's completion queue
 * (design notes in pool.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "lem.h"
#include "pool.h"

/* Enough for name lookups of a few loops at once: the pool is for occasional blocking
 * calls, not a place to run a server's requests. */
#define POOL_THREADS 4

struct lem_job {
	struct lem_job *next;      /* in the pool's queue, then in its loop's done list */
	struct lem_jobs *jobs;     /* the submitting loop's completion queue */
	void (*work)(void *arg);
	void (*done)(lem_loop *loop, void *arg);
	void *arg;
};

/* A loop's completion queue. The loop thread and the workers share it under lock. */
struct lem_jobs {
	ev_async async;            /* a worker's ev_async_send wakes the loop */
	struct ev_loop *ev;        /* the loop's, for the workers: they never touch lem_loop */
	lem_loop *loop;
	pthread_mutex_t lock;      /* guards done_head, done_tail, outstanding, abandoned */
	struct lem_job *done_head, *done_tail;
	unsigned outstanding;      /* jobs queued or running on the pool */
	int abandoned;             /* the loop is gone: its jobs go to pool.orphans */
	unsigned active;           /* jobs whose done has not run yet; loop thread only */
};

/* The process-wide part: the queue and its workers, all under pool.lock. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t more;       /* a job was queued, or quit was set */
	struct lem_job *head, *tail;
	pthread_t threads[POOL_THREADS];
	int busy[POOL_THREADS];    /* worker i runs a job's work */
	int nthreads;              /* started */
	int idle;                  /* waiting on more */
	int quit;                  /* set at exit: workers return, no job is taken */
	int atexit_set;
	struct lem_job *orphans;   /* jobs of loops freed while they ran, kept to the end */
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, { 0 }, { 0 }, 0, 0, 0, 0, NULL };

/* ---- workers ---- */

static void *pool_worker(void *index)
{
	int self = (int)(intptr_t)index;

	pthread_mutex_lock(&pool.lock);
	for (;;) {
		struct lem_job *job;
		struct lem_jobs *jobs;
		int orphan;

		while (!pool.head && !pool.quit) {
			pool.idle++;
			pthread_cond_wait(&pool.more, &pool.lock);
			pool.idle--;
		}
		if (pool.quit)
			break;
		job = pool.head;
		pool.head = job->next;
		if (!pool.head)
			pool.tail = NULL;
		pool.busy[self] = 1;
		pthread_mutex_unlock(&pool.lock);

		job->work(job->arg);

		/* Hand the job back. The send happens under jobs->lock: lem_pool_loop_free takes
		 * that lock before it abandons the jobs, so the ev_async cannot go while we send.
		 * The mutex also orders what work wrote before done reads it. */
		jobs = job->jobs;
		job->next = NULL;
		pthread_mutex_lock(&jobs->lock);
		orphan = jobs->abandoned;
		if (!orphan) {
			if (jobs->done_tail)
				jobs->done_tail->next = job;
			else
				jobs->done_head = job;
			jobs->done_tail = job;
			ev_async_send(jobs->ev, &jobs->async);
		}
		jobs->outstanding--;
		pthread_mutex_unlock(&jobs->lock);

		pthread_mutex_lock(&pool.lock);
		pool.busy[self] = 0;
		if (orphan) {       /* its done never runs; it and its jobs stay reachable */
			job->next = pool.orphans;
			pool.orphans = job;
		}
	}
	pthread_mutex_unlock(&pool.lock);
	return NULL;
}

/* At exit: every loop has been freed, or the process exits from inside a script
 * (os.exit); queued jobs are dropped with their loops. The idle workers are joined; one
 * inside a blocking call (a name lookup that waits for a silent DNS server) is not
 * waited for: nobody wants its result, and the process would not end before it does. */
static void pool_shutdown(void)
{
	int n, busy[POOL_THREADS];

	pthread_mutex_lock(&pool.lock);
	pool.quit = 1;
	n = pool.nthreads;
	for (int i = 0; i < n; i++)
		busy[i] = pool.busy[i];
	pthread_cond_broadcast(&pool.more);
	pthread_mutex_unlock(&pool.lock);
	for (int i = 0; i < n; i++) {
		if (busy[i])
			pthread_detach(pool.threads[i]);
		else
			pthread_join(pool.threads[i], NULL);
	}
}

/* Under pool.lock. Returns 0 or -errno. */
static int pool_spawn(void)
{
	sigset_t all, old;
	int err;

	if (!pool.atexit_set) {
		if (atexit(pool_shutdown) != 0)
			return -ENOMEM;
		pool.atexit_set = 1;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);   /* the worker inherits it */
	err = pthread_create(&pool.threads[pool.nthreads], NULL, pool_worker,
	                     (void *)(intptr_t)pool.nthreads);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	pool.nthreads++;
	return 0;
}

/* ---- the loop's side ---- */

/* The loop thread: runs the done callbacks of the jobs handed back. */
static void jobs_done(struct ev_loop *ev, ev_async *w, int revents)
{
	struct lem_jobs *jobs = (struct lem_jobs *)w;
	struct lem_job *job, *next;

	(void)revents;
	pthread_mutex_lock(&jobs->lock);
	job = jobs->done_head;
	jobs->done_head = jobs->done_tail = NULL;
	pthread_mutex_unlock(&jobs->lock);
	for (; job; job = next) {
		next = job->next;
		jobs->active--;
		job->done(jobs->loop, job->arg);   /* may submit more: active goes up again */
		free(job);
	}
	/* Inactive, the ev_async keeps no loop alive that has nothing else to do. */
	if (jobs->active == 0)
		ev_async_stop(ev, &jobs->async);
}

static struct lem_jobs *jobs_new(lem_loop *loop)
{
	struct lem_jobs *jobs = calloc(1, sizeof *jobs);

	if (!jobs)
		return NULL;
	if (pthread_mutex_init(&jobs->lock, NULL) != 0)
		goto err;
	ev_async_init(&jobs->async, jobs_done);
	jobs->ev = loop->ev;
	jobs->loop = loop;
	return jobs;
err:
	free(jobs);
	return NULL;
}

int lem_async_run(lem_loop *loop, void (*work)(void *arg),
                  void (*done)(lem_loop *loop, void *arg), void *arg)
{
	struct lem_jobs *jobs = loop->jobs;
	struct lem_job *job;
	int err = 0;

	if (loop->closing)
		return -ECANCELED;
	if (!jobs) {
		if (!(jobs = loop->jobs = jobs_new(loop)))
			return -ENOMEM;
		loop->jobs_free = lem_pool_loop_free;
	}
	job = malloc(sizeof *job);
	if (!job)
		return -ENOMEM;
	job->next = NULL;
	job->jobs = jobs;
	job->work = work;
	job->done = done;
	job->arg = arg;

	/* Active before any worker can send: ev_async_start clears a send that came first. */
	if (jobs->active++ == 0)
		ev_async_start(loop->ev, &jobs->async);
	pthread_mutex_lock(&pool.lock);
	if (pool.quit)
		err = -ECANCELED;
	else if (pool.idle == 0 && pool.nthreads < POOL_THREADS)
		err = pool_spawn();
	if (err && (err == -ECANCELED || pool.nthreads == 0)) {
		pthread_mutex_unlock(&pool.lock);
		if (--jobs->active == 0)
			ev_async_stop(loop->ev, &jobs->async);
		free(job);
		return err;
	}
	/* outstanding counts the job before any worker can see it */
	pthread_mutex_lock(&jobs->lock);
	jobs->outstanding++;
	pthread_mutex_unlock(&jobs->lock);
	if (pool.tail)
		pool.tail->next = job;
	else
		pool.head = job;
	pool.tail = job;
	pthread_cond_signal(&pool.more);
	pthread_mutex_unlock(&pool.lock);
	return 0;
}

/* A loop that still has jobs on the pool is being stopped (while a job is pending, a
 * loop that ends by itself keeps running): the process ends. The stop is not to wait for
 * a job's blocking call, which may last as long as the system makes it (a name lookup
 * whose DNS server does not answer: timeout times attempts), so those jobs are abandoned
 * to the workers, with the completion queue. */
void lem_pool_loop_free(lem_loop *loop)
{
	struct lem_jobs *jobs = loop->jobs;
	int abandon;

	if (!jobs)
		return;
	pthread_mutex_lock(&jobs->lock);
	abandon = jobs->abandoned = jobs->outstanding > 0;
	pthread_mutex_unlock(&jobs->lock);
	jobs_done(loop->ev, &jobs->async, 0);
	loop->jobs = NULL;
	if (abandon) {
		ev_async_stop(loop->ev, &jobs->async);
		return;
	}
	if (jobs->active != 0)
		lem_fatal("thread pool: a job submitted while its loop closed");
	pthread_mutex_destroy(&jobs->lock);
	free(jobs);
}
