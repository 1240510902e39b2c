/* main.c: the lem command: parse the command line, run the loops, exit with their status. */
#include <signal.h>
#include "runtime.h"

int main(int argc, char **argv)
{
	struct lem_cli cli;
	int status = lem_cli_parse(&cli, argc, argv);

	if (status >= 0)
		return status;
	/* A write to a closed peer must be an error return, not a dead process. */
	signal(SIGPIPE, SIG_IGN);
	return lem_run(&cli);
}
