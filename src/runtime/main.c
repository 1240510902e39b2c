/* main.c: the lem command: parse, start one loop, run it, exit with its status. */
#include <signal.h>
#include "runtime.h"

int main(int argc, char **argv)
{
	struct lem_cli cli;
	lem_loop *loop;
	int status = lem_cli_parse(&cli, argc, argv);

	if (status >= 0)
		return status;
	/* A write to a closed peer must be an error return, not a dead process. */
	signal(SIGPIPE, SIG_IGN);
	loop = lem_loop_new("lem");
	if (!loop)
		return 1;
	if (lem_start(loop, &cli) == 0)
		status = lem_loop_run(loop);
	else
		status = 1;
	lem_loop_free(loop);
	return status;
}
