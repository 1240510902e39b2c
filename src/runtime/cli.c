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
#include "runtime.h"

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
		"Environment: LUA_INIT (a chunk, or @file, run first), LUA_PATH, LUA_CPATH.\n",
		prog);
}

static int bad(const char *prog, const char *fmt, const char *what)
{
	fprintf(stderr, "%s: ", prog);
	fprintf(stderr, fmt, what);
	fputc('\n', stderr);
	usage(stderr, prog);
	return 1;
}

int lem_cli_parse(struct lem_cli *cli, int argc, char **argv)
{
	const char *prog = "lem";
	int i, has_e = 0, has_v = 0;

	memset(cli, 0, sizeof *cli);
	cli->argc = argc;
	cli->argv = argv;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (a[0] != '-' || strcmp(a, "-") == 0) {
			cli->script = i;
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
			continue;
		}
		return bad(prog, "unrecognized option '%s'", a);
	}
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
