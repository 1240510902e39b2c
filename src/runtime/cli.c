/* cli.c: parsing lem's command line, in the manner of the standalone lua. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <lualib.h>
#ifdef LEM_LUAJIT
#include <luajit.h>
#define LEM_VM LUAJIT_VERSION
#else
#define LEM_VM LUA_RELEASE
#endif
#include <stdlib.h>
#include "runtime.h"
#include "../loop/mailbox.h"

#define MAX_LOOPS 1024
#define MAX_MAILBOX (1u << 24)
#define SHUTDOWN_TIMEOUT 10         /* seconds, as systemd's and Kubernetes' grace periods
                                       are longer: lem is done before they kill it */
#define MAX_SHUTDOWN_TIMEOUT 1e6
#define MAX_WARN_BLOCKING 3600000   /* ms: an hour */

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"usage: %s [options] [script [args]]\n"
		"Runs a Lua script on an event loop; every chunk runs in a coroutine.\n"
		"Options:\n"
		"  -e chunk       run the string 'chunk'\n"
		"  -l name        require library 'name'\n"
		"  -v, --version  print the version\n"
		"  -h, --help     print this help and exit\n"
		"  --             stop handling options\n"
		"  -              run standard input and stop handling options\n"
		"  --loops N      run N loops in N threads, each running the script (1 to %d,\n"
		"                 or 'auto': one per online CPU; default 1)\n"
		"  --pin          pin loop i to CPU i-1\n"
		"  --mailbox N    messages a loop's mailbox holds before send says 'full'\n"
		"                 (1 to %u; default %u)\n"
		"  --shutdown-timeout S\n"
		"                 seconds the loops have to end after SIGTERM, SIGINT or\n"
		"                 utils.shutdown before lem stops them (0 to %.0f; default %d)\n"
		"  --warn-blocking MS\n"
		"                 print where a coroutine runs MS milliseconds or more without\n"
		"                 suspending, once each time (1 to %d; default off)\n"
		"  --debug        an uncaught error's report shows the traceback of the place\n"
		"                 where its coroutine was spawned, and so on up the chain;\n"
		"                 SIGQUIT's dump lists every parked coroutine too\n"
		"Environment: LUA_INIT (a chunk, or @file, run first), LUA_PATH, LUA_CPATH,\n"
		"LEM_WARN_BLOCKING (as --warn-blocking).\n",
		prog, MAX_LOOPS, MAX_MAILBOX, (unsigned)LEM_MAILBOX_DEFAULT, MAX_SHUTDOWN_TIMEOUT, SHUTDOWN_TIMEOUT,
		MAX_WARN_BLOCKING);
}

static int bad(const char *prog, const char *fmt, const char *what)
{
	fprintf(stderr, "%s: ", prog);
	fprintf(stderr, fmt, what);
	fputc('\n', stderr);
	usage(stderr, prog);
	return 1;
}

/* A whole number from 1 to max, or 0. */
static long whole(const char *s, long max)
{
	char *end;
	long v;

	if (*s < '0' || *s > '9')
		return 0;
	v = strtol(s, &end, 10);
	return *end == '\0' && v >= 1 && v <= max ? v : 0;
}

/* A number of seconds from 0 to max (decimals allowed), or -1. */
static double seconds(const char *s, double max)
{
	char *end;
	double v;

	if ((*s < '0' || *s > '9') && *s != '.')
		return -1;
	v = strtod(s, &end);
	return *end == '\0' && v >= 0 && v <= max ? v : -1;
}

/* --name value or --name=value: the value, or NULL (and *i moves past it); NULL with
 * *missing set for --name last on the line, where nothing can be a value. */
static const char *long_value(int argc, char **argv, int *i, const char *name, int *missing)
{
	size_t n = strlen(name);
	const char *a = argv[*i];

	if (strncmp(a, name, n) != 0)
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (a[n] != '\0')
		return NULL;
	if (*i + 1 < argc)
		return argv[++*i];
	*missing = 1;
	return NULL;
}

#define STR_(x) #x
#define STR(x) STR_(x)

/* A bad value for an option: says what it expects; the status to exit with. */
static int expects(const char *prog, const char *option, const char *what, const char *v)
{
	fprintf(stderr, "%s: %s expects %s, got '%s'\n", prog, option, what, v);
	return 1;
}

int lem_cli_parse(struct lem_cli *cli, int argc, char **argv)
{
	const char *prog = "lem";
	int i, has_e = 0, has_v = 0, missing = 0;
	const char *v0;

	memset(cli, 0, sizeof *cli);
	cli->argc = argc;
	cli->argv = argv;
	cli->loops = 1;
	cli->mailbox = LEM_MAILBOX_DEFAULT;
	cli->shutdown_timeout = SHUTDOWN_TIMEOUT;
	if (!(cli->opts = malloc(argc * sizeof *cli->opts))) {
		fprintf(stderr, "%s: not enough memory\n", prog);
		return 1;
	}
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v;

		if (a[0] != '-' || strcmp(a, "-") == 0) {
			cli->script = i;
			cli->run_stdin = a[0] == '-';   /* after --, "-" is a file's name, as in lua */
			break;
		}
		if (strcmp(a, "--") == 0) {
			if (i + 1 < argc)
				cli->script = i + 1;
			break;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout, prog);
			return 0;
		}
		if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
			has_v = 1;
			continue;
		}
		if (a[1] == 'e' || a[1] == 'l') {   /* -e chunk, -echunk, -l name, -lname */
			if (a[2] == '\0' && ++i >= argc)
				return bad(prog, "'%s' needs an argument", a);
			has_e |= a[1] == 'e';
			cli->opts[cli->nopts].kind = a[1];
			cli->opts[cli->nopts++].value = a[2] ? a + 2 : argv[i];
			continue;
		}
		if ((v = long_value(argc, argv, &i, "--loops", &missing))) {
			long cpus = sysconf(_SC_NPROCESSORS_ONLN);
			cli->loops = strcmp(v, "auto") == 0 ? (int)(cpus > 0 ? (cpus < MAX_LOOPS ? cpus : MAX_LOOPS) : 1)
			                                   : (int)whole(v, MAX_LOOPS);
			if (!cli->loops)
				return expects(prog, "--loops", "a whole number from 1 to " STR(MAX_LOOPS)
				               " or 'auto'", v);
			continue;
		}
		if ((v = long_value(argc, argv, &i, "--mailbox", &missing))) {
			cli->mailbox = (unsigned)whole(v, MAX_MAILBOX);
			if (!cli->mailbox)
				return expects(prog, "--mailbox", "a whole number from 1 to 16777216", v);
			continue;
		}
		if ((v = long_value(argc, argv, &i, "--shutdown-timeout", &missing))) {
			cli->shutdown_timeout = seconds(v, MAX_SHUTDOWN_TIMEOUT);
			if (cli->shutdown_timeout < 0)
				return expects(prog, "--shutdown-timeout", "a number of seconds from 0 to "
				               "1000000", v);
			continue;
		}
		if ((v = long_value(argc, argv, &i, "--warn-blocking", &missing))) {
			if (!(cli->warn_blocking = (int)whole(v, MAX_WARN_BLOCKING)))
				return expects(prog, "--warn-blocking", "a whole number of milliseconds "
				               "from 1 to " STR(MAX_WARN_BLOCKING), v);
			continue;
		}
		if (strcmp(a, "--debug") == 0) {
			cli->debug = 1;
			continue;
		}
		if (strcmp(a, "--pin") == 0) {
			cli->pin = 1;
			continue;
		}
		if (missing)                /* as -e without its argument */
			return bad(prog, "'%s' needs an argument", a);
		if (strcmp(a, "-i") == 0)   /* lua's, which users of lua will try */
			return bad(prog, "'%s': lem has no interactive mode", a);
		return bad(prog, "unrecognized option '%s'", a);
	}
	if (!cli->warn_blocking && (v0 = getenv("LEM_WARN_BLOCKING")) && *v0 &&
	    !(cli->warn_blocking = (int)whole(v0, MAX_WARN_BLOCKING)))
		return expects(prog, "LEM_WARN_BLOCKING", "a whole number of milliseconds from 1 "
		               "to " STR(MAX_WARN_BLOCKING), v0);
	if (has_v)
		printf("lem %s (%s, libev %d.%d)\n", LEM_VERSION, LEM_VM,
		       ev_version_major(), ev_version_minor());
	if (!cli->script && !has_e && !has_v) {
		if (isatty(STDIN_FILENO)) {
			usage(stderr, prog);
			return 1;
		}
		cli->run_stdin = 1;
	}
	return -1;
}

void lem_cli_free(struct lem_cli *cli)
{
	free(cli->opts);
	free(cli->chunk);
	free(cli->chunkname);
	cli->opts = NULL;
	cli->chunk = cli->chunkname = NULL;
}
