/* runtime.h: the lem process: its command line and start-up. */
#ifndef LEM_RUNTIME_H
#define LEM_RUNTIME_H

#include "../loop/loop.h"

struct lem_cli {
	int script;       /* argv index of the script ("-" for stdin), or 0 */
	int run_stdin;    /* no script, no -e, no -v and stdin is not a terminal */
	int argc;
	char **argv;
	int loops;        /* --loops: how many loops (threads), 1 by default */
	int pin;          /* --pin: loop i on CPU i-1 */
	unsigned mailbox; /* --mailbox: capacity of each mailbox */
	char *chunk;      /* the script's bytes, read once for every loop (start.c) */
	size_t chunk_len;
	char *chunkname;  /* "@script" or "=stdin" */
};

/* The built-in modules (src/modules/<name>/), which start.c puts in package.preload. */
int luaopen_lem_utils(lua_State *L);
int luaopen_lem_loops(lua_State *L);
int luaopen_lem_io(lua_State *L);

/* cli.c: returns -1 to go on, or the status to exit with (usage, --help, errors). */
int lem_cli_parse(struct lem_cli *cli, int argc, char **argv);

/* start.c: reads the script (a file, standard input, a pipe or a FIFO) once, in the main
 * thread, so that every loop gets the same bytes. Returns 0, or 1 once it has said why. */
int lem_read_script(struct lem_cli *cli);
void lem_free_script(struct lem_cli *cli);
/* Sets `arg` and queues LUA_INIT, -e, -l and the script as the loop's start-up steps.
 * Returns 0, or 1 with the error message on top of loop->L. */
int lem_start(lem_loop *loop, const struct lem_cli *cli);

/* threads.c: runs cli->loops loops until all have finished; returns the exit status. */
int lem_run(const struct lem_cli *cli);

#endif
