/* main.c: the lem command: parse the command line, run the loops, exit with their status. */
#include <signal.h>
#include <string.h>
#include "runtime.h"

static void on_sigpipe(int sig)
{
	(void)sig;
}

int main(int argc, char **argv)
{
	struct lem_cli cli;
	int status = lem_cli_parse(&cli, argc, argv);

	if (status >= 0)
		return status;
	/* A write to a closed peer must be an error return (EPIPE), not a dead process. A
	 * handler that does nothing, not SIG_IGN: an ignored signal stays ignored across exec,
	 * and the commands of os.execute and io.popen expect SIGPIPE as usual. */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigpipe;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	return lem_run(&cli);
}
