/* signal.c: the process's signals (the one piece of signal handling that is process-wide)
 * and the self-pipe that wakes the main thread; lem.h's lem_signal.
 *
 * The special problem of signals and threads: a signal goes to whichever thread the
 * kernel picks, and its handler may do little. So the handler only records it, in a mask,
 * and writes a byte to a pipe; the main thread, which waits on that pipe, hands it to
 * every loop that catches it (group.h: each loop's mailbox wakes that loop, whose signal
 * hooks hear it), or, for SIGTERM and SIGINT that no loop catches, begins the shutdown.
 * Loops tell the main thread their own news (finished, stopped, shutdown begun) the same
 * way. The mask, not the byte, carries what happened: a full pipe loses nothing, and a
 * burst of one signal comes out as fewer deliveries, never without its last one (a
 * signal that arrives after the main thread took the mask is in the next one).
 *
 * A signal that some loop catches has no other effect; one that no loop catches takes
 * the action set last by lem_signal (LEM_SIG_DEFAULT or LEM_SIG_IGNORE), which for
 * SIGTERM and SIGINT is lem's own by default: the shutdown; for SIGQUIT, the dump of
 * every loop (probe.c), after which the process goes on. A second SIGTERM or SIGINT
 * that lem acts on ends the process at once, from the handler, killed by that signal:
 * for code that no interrupt reaches, and for the impatient. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include "runtime.h"
#include "../loop/group.h"

#define LOAD(p) __atomic_load_n(p, __ATOMIC_SEQ_CST)
#define BIT(sig) ((uint64_t)1 << ((sig) - 1))
#define NSIG_LEM 64               /* signals 1..64 fit a mask */

static int signal_pipe[2] = { -1, -1 };
static uint64_t arrived;          /* caught by the handler, not yet taken: bit sig - 1 */
static unsigned events;           /* LEM_EV_*, from the loops */
static int stops;                 /* SIGTERM and SIGINT that lem acted on */

/* What lem_signal set, under lock. */
static pthread_mutex_t signal_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t caught;           /* signals some loop catches (the handler reads it) */
static int catchers[NSIG_LEM + 1];   /* how many loops catch each */
static uint64_t ignored;          /* LEM_SIG_IGNORE was the last word on these */

static void signal_wake(void)
{
	char b = 0;

	if (write(signal_pipe[1], &b, 1) < 0) { /* full: the main thread wakes anyway */ }
}

static void signal_caught(int sig)
{
	int saved = errno;

	if ((sig == SIGTERM || sig == SIGINT) && !(LOAD(&caught) & BIT(sig)) &&
	    __atomic_fetch_add(&stops, 1, __ATOMIC_SEQ_CST) > 0) {
		signal(sig, SIG_DFL);    /* the second one: stop now */
		raise(sig);
	}
	__atomic_fetch_or(&arrived, BIT(sig), __ATOMIC_SEQ_CST);
	signal_wake();
	errno = saved;
}

/* Under signal_lock: sets sig's action from who catches it and what was set last. */
static int signal_install(int sig)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	if (catchers[sig] > 0 ||
	    (!(ignored & BIT(sig)) && (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT)))
		sa.sa_handler = signal_caught;
	else
		sa.sa_handler = (ignored & BIT(sig)) ? SIG_IGN : SIG_DFL;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL) == 0 ? 0 : -errno;
}

int lem_signal_open(void)
{
	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		return -errno;
	pthread_mutex_lock(&signal_lock);
	signal_install(SIGINT);
	signal_install(SIGTERM);
	signal_install(SIGQUIT);
	pthread_mutex_unlock(&signal_lock);
	return 0;
}

void lem_signal_post(unsigned event)
{
	__atomic_fetch_or(&events, event, __ATOMIC_SEQ_CST);
	signal_wake();
}

unsigned lem_signal_next(double timeout, uint64_t *sigs)
{
	struct pollfd p = { .fd = signal_pipe[0], .events = POLLIN };
	int ms = timeout < 0 ? -1 : timeout * 1000 >= INT_MAX ? INT_MAX : (int)(timeout * 1000 + 0.999);
	char buf[256];

	if (poll(&p, 1, ms) > 0)
		while (read(signal_pipe[0], buf, sizeof buf) == (ssize_t)sizeof buf)
			;
	*sigs = __atomic_exchange_n(&arrived, 0, __ATOMIC_SEQ_CST);
	return __atomic_exchange_n(&events, 0, __ATOMIC_SEQ_CST);
}

int lem_signal_dispatch(struct lem_group *g, uint64_t sigs)
{
	int dump = 0;

	for (; sigs; sigs &= sigs - 1) {
		int sig = __builtin_ctzll(sigs) + 1;

		/* None catches it: it raced with the last loop that stopped catching it, or it
		 * is SIGTERM, SIGINT or SIGQUIT with lem's own action. */
		if (lem_group_signal(g, sig) != 0 || (LOAD(&ignored) & BIT(sig)))
			continue;
		if (sig == SIGTERM || sig == SIGINT)
			lem_group_shutdown(g, 128 + sig, -1);   /* SIGINT: 130, SIGTERM: 143 */
		else if (sig == SIGQUIT)
			dump = 1;
	}
	return dump;
}

/* Whether lem may hand sig to loops: not what cannot be caught, what a fault raises in
 * the thread that made it, nor what lem uses itself (SIGPIPE: main.c, LEM_SIGINTR:
 * threads.c), nor the real-time signals below SIGRTMIN that the C library keeps. */
static int signal_valid(int sig)
{
	switch (sig) {
	case SIGKILL: case SIGSTOP:
	case SIGSEGV: case SIGBUS: case SIGFPE: case SIGILL: case SIGTRAP: case SIGSYS:
	case SIGABRT:
	case SIGPIPE: case LEM_SIGINTR:
		return 0;
	}
	return sig >= 1 && sig <= NSIG_LEM && (sig < 32 || (sig >= SIGRTMIN && sig <= SIGRTMAX));
}

int lem_signal(lem_loop *loop, int sig, int how)
{
	int err = 0;

	if (!signal_valid(sig) || how < LEM_SIG_CATCH || how > LEM_SIG_IGNORE || !loop->group)
		return -EINVAL;
	pthread_mutex_lock(&signal_lock);
	if (how == LEM_SIG_CATCH) {
		if (!lem_group_catch(loop->group, loop->id, sig, 1) && catchers[sig]++ == 0) {
			__atomic_fetch_or(&caught, BIT(sig), __ATOMIC_SEQ_CST);
			err = signal_install(sig);
		}
	} else {
		if (how == LEM_SIG_IGNORE)
			__atomic_fetch_or(&ignored, BIT(sig), __ATOMIC_SEQ_CST);
		else
			__atomic_fetch_and(&ignored, ~BIT(sig), __ATOMIC_SEQ_CST);
		if (lem_group_catch(loop->group, loop->id, sig, 0) && --catchers[sig] == 0)
			__atomic_fetch_and(&caught, ~BIT(sig), __ATOMIC_SEQ_CST);
		err = signal_install(sig);
	}
	pthread_mutex_unlock(&signal_lock);
	return err;
}

void lem_signal_release(lem_loop *loop)
{
	uint64_t mask;

	if (!loop->group)
		return;
	pthread_mutex_lock(&signal_lock);
	for (mask = lem_group_catching(loop->group, loop->id); mask; mask &= mask - 1) {
		int sig = __builtin_ctzll(mask) + 1;

		lem_group_catch(loop->group, loop->id, sig, 0);
		if (--catchers[sig] == 0) {
			__atomic_fetch_and(&caught, ~BIT(sig), __ATOMIC_SEQ_CST);
			signal_install(sig);
		}
	}
	pthread_mutex_unlock(&signal_lock);
}
