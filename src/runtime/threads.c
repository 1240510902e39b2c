/* threads.c: running the loops, one per thread, and ending the process.
 *
 * Every loop, the first one included, runs in a thread of its own; the main thread only
 * starts them, waits, and handles SIGINT and SIGTERM for all of them (libev lets a single
 * loop watch a signal, and these concern the process). A signal handler may do little:
 * it writes the signal's number to a pipe that the main thread reads. A second such
 * signal, for a loop busy in Lua code that never returns to its event loop, kills the
 * process at once. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "runtime.h"
#include "../loop/mailbox.h"

struct thread {
	pthread_t tid;
	int id;
	const struct lem_cli *cli;
	struct lem_group *group;
	char progname[16];
};

static int signal_pipe[2] = { -1, -1 };   /* written by signal handlers: process-wide */
static volatile sig_atomic_t signalled;

static void on_signal(int sig)
{
	unsigned char b = (unsigned char)sig;
	int saved = errno;

	if (signalled) {          /* the second one: stop now */
		signal(sig, SIG_DFL);
		raise(sig);
	}
	signalled = sig;
	if (write(signal_pipe[1], &b, 1) < 0) { /* nothing to do: the pipe is full */ }
	errno = saved;
}

static void on_finish(struct lem_group *g)
{
	unsigned char b = 0;

	(void)g;
	if (write(signal_pipe[1], &b, 1) < 0) { /* cannot happen: the pipe is empty */ }
}

/* Reports a start-up failure once per process, whichever loop meets it first. */
static void start_failed(struct thread *t, lem_loop *loop)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static int reported;

	pthread_mutex_lock(&lock);
	if (!reported++)
		fprintf(stderr, "lem: %s\n", lua_tostring(loop->L, -1));
	pthread_mutex_unlock(&lock);
	lem_group_stop(t->group, 1);
}

static void *loop_thread(void *arg)
{
	struct thread *t = arg;
	lem_loop *loop = lem_loop_new(t->progname);

	if (!loop) {
		lem_group_stop(t->group, 1);
		/* nobody else will open this mailbox: leave the group for it */
		pthread_mutex_lock(&t->group->lock);
		int last = --t->group->live == 0;
		pthread_mutex_unlock(&t->group->lock);
		if (last)
			on_finish(t->group);
		return NULL;
	}
	lem_mbox_open(t->group, t->id, loop);
	if (lem_start(loop, t->cli) == 0)
		lem_loop_run(loop);
	else {
		start_failed(t, loop);
		lem_mbox_close(loop);
	}
	lem_loop_free(loop);
	return NULL;
}

static void pin(struct thread *t, int ncpu)
{
	cpu_set_t set;
	int err;

	CPU_ZERO(&set);
	CPU_SET((t->id - 1) % ncpu, &set);
	err = pthread_setaffinity_np(t->tid, sizeof set, &set);
	if (err)
		fprintf(stderr, "lem: cannot pin loop %d to CPU %d (%s); it runs unpinned\n",
		        t->id, (t->id - 1) % ncpu, strerror(err));
}

int lem_run(const struct lem_cli *cli)
{
	int n = cli->loops, i, status, ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	struct lem_group *g = lem_group_new(n, cli->mailbox);
	struct thread *threads = calloc(n, sizeof *threads);
	struct sigaction sa;
	unsigned char b;

	if (!g || !threads || pipe(signal_pipe) != 0) {
		fprintf(stderr, "lem: cannot start: %s\n", strerror(errno ? errno : ENOMEM));
		return 1;
	}
	g->on_finish = on_finish;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	for (i = 0; i < n; i++) {
		struct thread *t = &threads[i];
		t->id = i + 1;
		t->cli = cli;
		t->group = g;
		if (n == 1)
			strcpy(t->progname, "lem");
		else
			snprintf(t->progname, sizeof t->progname, "lem[%d]", t->id);
		if (pthread_create(&t->tid, NULL, loop_thread, t) != 0) {
			fprintf(stderr, "lem: cannot start loop %d: %s\n", t->id, strerror(errno));
			lem_group_stop(g, 1);
			n = i;   /* join the ones that started; the others never open their mailbox */
			pthread_mutex_lock(&g->lock);
			g->live -= cli->loops - i;
			int none = g->live == 0;
			pthread_mutex_unlock(&g->lock);
			if (none)
				on_finish(g);
			break;
		}
		if (cli->pin)
			pin(t, ncpu > 0 ? ncpu : 1);
	}
	/* Wait for the last loop to finish, stopping them all on SIGINT or SIGTERM. */
	for (;;) {
		ssize_t r = read(signal_pipe[0], &b, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r != 1 || b == 0)
			break;
		lem_group_stop(g, 128 + b);   /* SIGINT: 130, SIGTERM: 143 */
	}
	for (i = 0; i < n; i++)
		pthread_join(threads[i].tid, NULL);
	status = g->stopping ? g->status : 0;
	lem_group_free(g);
	free(threads);
	return status;
}
