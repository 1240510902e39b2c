/* threads.c: running the loops, one per thread, stopping them, and ending the process.
 *
 * The main thread makes every loop, one after another, before any of them runs: that is
 * when each takes its descriptors, and libev aborts when it cannot make the one it needs
 * to be woken (see lem_mbox_open), so nothing else may take them meanwhile. Then every
 * loop, the first one included, runs in a thread of its own; the main thread waits for
 * the process's signals (signal.c) and the loops' news, hands signals out, begins the
 * shutdown on SIGINT or SIGTERM, and stops the loops at the shutdown's deadline.
 *
 * The special problem of busy loops: the main thread asks every loop to stop through its
 * mailbox. A loop that runs Lua code without returning to its event loop never reads its
 * mailbox, so the main thread also sends each loop thread LEM_SIGINTR, whose handler, in
 * that thread, sets a hook on the coroutine it is running (as lua.c does on Ctrl-C): the
 * next instruction raises "interrupted!". It does so whenever the group stops: at the
 * deadline, or when a loop stops it (utils.exit, an uncaught error). A second SIGINT or
 * SIGTERM, for code that no hook reaches (a blocking C call, a LuaJIT trace), kills the
 * process at once. Without one, such a loop would keep the process alive for ever once
 * the others are gone: a loop that has not left STOP_GRACE seconds after the group
 * stopped is abandoned, and the process exits without it. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "runtime.h"
#include "../loop/mailbox.h"

/* Seconds a loop has to leave its event loop once the group stops. Leaving needs no
 * more than the interrupt's next instruction and the loop's report; finalizers run
 * after it and are not counted. */
#define STOP_GRACE 2

struct watch;

struct thread {
	pthread_t tid;
	lem_loop *loop;
	const struct lem_cli *cli;
	char progname[16];
	struct watch *watch;      /* the watchdog, or NULL */
	int gone;                 /* under the watchdog's lock: the loop is being freed */
	unsigned long seen;       /* the watchdog's: the loop's rseq when it last looked, */
	long since;               /* since when it has been that, */
	unsigned long warned;     /* and the resume it last warned about */
};

/* ---- the watchdog (--warn-blocking) ----
 * A thread that looks at every loop's count of resumes (loop.h's rseq, odd while one
 * runs) every quarter of the limit: a resume that runs longer than the limit is still
 * running, with the same count, when it looks again. It asks that loop for a warning
 * (probe.c), once per resume, and interrupts its thread, whose handler hooks the
 * coroutine: the traceback is taken in the loop's own thread, where it runs. */
struct watch {
	pthread_t tid;
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* signalled to stop it */
	int stop;
	long ms;                  /* the limit */
	struct thread *threads;
	int n;
	int started;              /* its thread runs */
};

static void *watch_thread(void *arg)
{
	struct watch *w = arg;
	long period = w->ms / 4 > 0 ? w->ms / 4 : 1;
	struct timespec at;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&w->lock);
	clock_gettime(CLOCK_MONOTONIC, &at);
	while (!w->stop) {
		at.tv_nsec += period % 1000 * 1000000;
		at.tv_sec += period / 1000 + at.tv_nsec / 1000000000;
		at.tv_nsec %= 1000000000;
		if (pthread_cond_timedwait(&w->cond, &w->lock, &at) != ETIMEDOUT)
			continue;
		long now = lem_probe_ms();
		for (int i = 0; i < w->n; i++) {
			struct thread *t = &w->threads[i];
			unsigned long seq;

			if (t->gone)
				continue;
			seq = __atomic_load_n(&t->loop->rseq, __ATOMIC_RELAXED);
			if (!(seq & 1) || seq != t->seen) {
				t->seen = seq;
				t->since = now;
			} else if (now - t->since >= w->ms && seq != t->warned) {
				t->warned = seq;
				__atomic_store_n(&t->loop->probe_rseq, seq, __ATOMIC_RELAXED);
				__atomic_store_n(&t->loop->probe_since, t->since, __ATOMIC_RELAXED);
				if (lem_mbox_probe(t->loop->mbox, LEM_PROBE_BLOCKED))
					pthread_kill(t->tid, LEM_SIGINTR);
			}
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* The watchdog's state, made before the loop threads start (they forget themselves in
 * it); NULL, after saying why, if it cannot be. */
static struct watch *watch_new(struct thread *threads, int n, long ms)
{
	struct watch *w = calloc(1, sizeof *w);
	pthread_condattr_t ca;

	if (!w) {
		fprintf(stderr, "lem: cannot watch for blocked loops: %s\n", strerror(ENOMEM));
		return NULL;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	w->ms = ms;
	w->threads = threads;
	for (int i = 0; i < n; i++)
		threads[i].watch = w;
	return w;
}

/* Once the n loop threads run (their ids are known). */
static void watch_start(struct watch *w, int n)
{
	int err;

	if (!w)
		return;
	w->n = n;
	if ((err = pthread_create(&w->tid, NULL, watch_thread, w)) == 0)
		w->started = 1;
	else
		fprintf(stderr, "lem: cannot watch for blocked loops: %s\n", strerror(err));
}

/* Once every loop thread has ended. */
static void watch_stop(struct watch *w)
{
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->stop = 1;
		pthread_cond_signal(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->tid, NULL);
	}
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

/* A loop's thread, before it frees its loop: the watchdog looks at it no more. */
static void watch_forget(struct thread *t)
{
	if (!t->watch)
		return;
	pthread_mutex_lock(&t->watch->lock);
	t->gone = 1;
	pthread_mutex_unlock(&t->watch->lock);
}

/* SIGQUIT: every open loop prints its figures and what it runs (probe.c). */
static void dump(struct lem_group *g, struct thread *threads, int n)
{
	for (int i = 0; i < n; i++)
		if (lem_mbox_probe(&g->mbox[i], LEM_PROBE_DUMP))
			pthread_kill(threads[i].tid, LEM_SIGINTR);
}

/* In a loop's thread, sent by the main thread: interrupt the Lua code it runs. */
static void on_interrupt(int sig)
{
	(void)sig;
	lem_loop_interrupt(lem_current);   /* NULL outside a loop's thread */
}

static void on_finish(struct lem_group *g)
{
	(void)g;
	lem_signal_post(LEM_EV_FINISHED);
}

static void on_stop(struct lem_group *g)
{
	(void)g;
	lem_signal_post(LEM_EV_STOP);
}

static void on_shutdown(struct lem_group *g)
{
	(void)g;
	lem_signal_post(LEM_EV_SHUTDOWN);
}

/* Reports a start-up failure once per process, whichever loop meets it first. */
static void start_failed(lem_loop *loop)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static int reported;

	pthread_mutex_lock(&lock);
	if (!reported++)
		fprintf(stderr, "lem: %s\n", lua_tostring(lem_state(loop), -1));
	pthread_mutex_unlock(&lock);
	lem_group_stop(loop->group, 1);
}

static void *loop_thread(void *arg)
{
	struct thread *t = arg;
	lem_loop *loop = t->loop;
	sigset_t intr;

	lem_current = loop;
	if (lem_start(loop, t->cli) == 0)
		lem_loop_run(loop);
	else {
		start_failed(loop);
		lem_mbox_close(loop);
	}
	lem_signal_release(loop);
	watch_forget(t);
	/* no interrupt may look at the loop while and once it is freed */
	sigemptyset(&intr);
	sigaddset(&intr, LEM_SIGINTR);
	pthread_sigmask(SIG_BLOCK, &intr, NULL);
	lem_loop_free(loop);
	lem_current = NULL;
	return NULL;
}

/* Frees a loop that never ran (its thread could not start), in the main thread. */
static void discard(lem_loop *loop)
{
	sigset_t intr, old;

	sigemptyset(&intr);
	sigaddset(&intr, LEM_SIGINTR);
	pthread_sigmask(SIG_BLOCK, &intr, &old);
	lem_current = loop;
	lem_mbox_close(loop);
	lem_loop_free(loop);
	lem_current = NULL;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void pin(struct thread *t, int id, int ncpu)
{
	cpu_set_t set;
	int err;

	CPU_ZERO(&set);
	CPU_SET((id - 1) % ncpu, &set);
	err = pthread_setaffinity_np(t->tid, sizeof set, &set);
	if (err)
		fprintf(stderr, "lem: cannot pin loop %d to CPU %d (%s); it runs unpinned\n",
		        id, (id - 1) % ncpu, strerror(err));
}

static void handle(int sig, void (*handler)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int has_left(struct lem_mbox *mb)
{
	int closed;

	pthread_mutex_lock(&mb->lock);
	closed = mb->closed;
	pthread_mutex_unlock(&mb->lock);
	return closed;
}

/* STOP_GRACE after the stop: says which loops are stuck, lets those that left finish
 * their finalizers (as long again at most), and ends the process with the group's
 * status. A stuck thread may hold the lock of stdout or stderr (blocked writing to a
 * full pipe): stderr is written around it, stdout flushed only if its lock is free. */
static void abandon(struct lem_group *g, struct thread *threads, int n)
{
	struct timespec until;

	for (int i = 0; i < n; i++)
		if (!has_left(&g->mbox[i]))
			dprintf(STDERR_FILENO, "lem: loop %d did not stop within %d s (a call that no "
			        "interrupt reaches); lem exits without it\n", i + 1, STOP_GRACE);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += STOP_GRACE;
	for (int i = 0; i < n; i++)
		if (has_left(&g->mbox[i]))
			pthread_timedjoin_np(threads[i].tid, NULL, &until);
	if (ftrylockfile(stdout) == 0) {
		fflush(stdout);
		funlockfile(stdout);
	}
	_exit(lem_group_status(g));
}

/* Makes loops 1..n with their mailboxes. Returns how many it made: fewer than n after
 * reporting why the next one could not be made. */
static int make_loops(struct lem_group *g, struct thread *threads, int n)
{
	int i, err;

	for (i = 0; i < n; i++) {
		struct thread *t = &threads[i];

		if (n == 1)
			strcpy(t->progname, "lem");
		else
			snprintf(t->progname, sizeof t->progname, "lem[%d]", i + 1);
		errno = 0;
		t->loop = lem_loop_new(t->progname);
		err = t->loop ? -lem_mbox_open(g, i + 1, t->loop) : (errno ? errno : ENOMEM);
		if (err) {
			fprintf(stderr, "lem: cannot start loop %d: %s\n", i + 1, strerror(err));
			if (t->loop)
				lem_loop_free(t->loop);
			break;
		}
	}
	lem_current = NULL;   /* lem_loop_new set it: the main thread runs no loop */
	return i;
}

int lem_threads_run(const struct lem_cli *cli)
{
	int n = cli->loops, i, made, err = 0, status, ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	struct lem_group *g = lem_group_new(n, cli->mailbox);
	struct thread *threads = calloc(n, sizeof *threads);
	struct watch *watch = NULL;
	double left = -1, stopped = -1;
	uint64_t sigs;
	unsigned ev;

	if (!g || !threads || (err = -lem_signal_open()) != 0) {
		fprintf(stderr, "lem: cannot start: %s\n", strerror(g && threads ? err : ENOMEM));
		return 1;
	}
	g->on_finish = on_finish;
	g->on_stop = on_stop;
	g->on_shutdown = on_shutdown;
	g->shutdown_timeout = cli->shutdown_timeout;
	handle(LEM_SIGINTR, on_interrupt);

	made = make_loops(g, threads, n);
	if (made < n) {
		for (i = 0; i < made; i++)
			discard(threads[i].loop);
		lem_group_free(g);
		free(threads);
		return 1;
	}
	if (cli->warn_blocking)
		watch = watch_new(threads, n, cli->warn_blocking);
	for (i = 0; i < n; i++) {
		struct thread *t = &threads[i];

		t->cli = cli;
		err = pthread_create(&t->tid, NULL, loop_thread, t);
		if (err) {   /* pthread_create returns its error; errno is not set */
			fprintf(stderr, "lem: cannot start loop %d: %s\n", i + 1, strerror(err));
			lem_group_stop(g, 1);
			for (int k = i; k < n; k++)
				discard(threads[k].loop);
			n = i;   /* the threads to join */
			break;
		}
		if (cli->pin)
			pin(t, i + 1, ncpu > 0 ? ncpu : 1);
	}
	watch_start(watch, n);
	/* Wait for the last loop to finish; hand signals out; stop the loops at the
	 * shutdown's deadline, and interrupt those that run Lua code whenever the group
	 * stops. */
	for (;;) {
		ev = lem_signal_next(left, &sigs);
		if (ev & LEM_EV_FINISHED)
			break;
		if (lem_signal_dispatch(g, sigs))
			dump(g, threads, n);
		left = lem_group_deadline(g);
		if (left == 0) {
			lem_group_expire(g);
			left = -1;
		}
		if (ev & LEM_EV_STOP) {
			for (i = 0; i < n; i++)
				pthread_kill(threads[i].tid, LEM_SIGINTR);
			if (stopped < 0)
				stopped = now();
		}
		if (stopped >= 0) {
			if ((left = stopped + STOP_GRACE - now()) <= 0)
				abandon(g, threads, n);
		}
	}
	for (i = 0; i < n; i++)
		pthread_join(threads[i].tid, NULL);
	watch_stop(watch);
	status = lem_group_exit_status(g);
	lem_group_free(g);
	free(threads);
	return status;
}
