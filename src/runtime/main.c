/* main.c: the lem command: parse the command line, run the loops, exit with their status. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
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

static void on_sigpipe(int sig)
{
	(void)sig;
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
