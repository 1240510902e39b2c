/* main.c: the lem command: parse the command line, run the loops, exit with their status. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "runtime.h"

/* Started with a standard descriptor closed, lem's own descriptors (the signal pipe, a
 * loop's epoll) would take its number, and print or a read from stdin would use them.
 * As daemons do, such a descriptor is opened on /dev/null first. */
static int reserve_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		if (open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
			return -1;   /* cannot happen: the lowest free number is fd */
	}
	return 0;
}

/* Standard output or error whose reader has gone: the process dies of SIGPIPE, as lua
 * and every filter do (`lem gen.lua | head -1` ends), since print cannot report the error
 * and a script that goes on writing would never end. Go's rule for descriptors 1 and 2.
 * The signal does not say which write raised it; one while 1 or 2 is broken ends the
 * process, which the next print would end anyway. Other descriptors (sockets, pipes to
 * commands) get EPIPE. */
static void on_sigpipe(int sig)
{
	int saved = errno;

	for (int fd = 1; fd <= 2; fd++) {
		struct stat st;
		struct pollfd p = { .fd = fd };

		if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) &&
		    poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP))) {
			signal(sig, SIG_DFL);
			raise(sig);   /* blocked in its handler: delivered, fatal, once it returns */
		}
	}
	errno = saved;
}

int main(int argc, char **argv)
{
	struct lem_cli cli;
	int status;

	if (reserve_std_fds() != 0)
		return 1;
	status = lem_cli_parse(&cli, argc, argv);

	if (status >= 0) {
		lem_cli_free(&cli);
		return status;
	}
	/* A write to a closed peer must be an error return (EPIPE), not a dead process. A
	 * handler that does nothing, not SIG_IGN: an ignored signal stays ignored across exec,
	 * and the commands of os.execute and io.popen expect SIGPIPE as usual. */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigpipe;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	status = lem_start_read(&cli) != 0 ? 1 : lem_threads_run(&cli);
	lem_cli_free(&cli);
	return status;
}
