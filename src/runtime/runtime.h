/* runtime.h: the lem process: its command line and start-up. */
#ifndef LEM_RUNTIME_H
#define LEM_RUNTIME_H

#include "../loop/loop.h"

/* An -e chunk or an -l library, in command-line order. */
struct lem_cli_opt {
	char kind;        /* 'e' or 'l' */
	const char *value;
};

struct lem_cli {
	int script;       /* argv index of the script ("-" for stdin), or 0 */
	struct lem_cli_opt *opts;   /* the -e and -l options, nopts of them */
	int nopts;
	int run_stdin;    /* the script is standard input: "-", or no script, no -e, no -v
	                     and stdin is not a terminal */
	int argc;
	char **argv;
	int loops;        /* --loops: how many loops (threads), 1 by default */
	int pin;          /* --pin: loop i on CPU i-1 */
	unsigned mailbox; /* --mailbox: capacity of each mailbox */
	double shutdown_timeout;   /* --shutdown-timeout: seconds from the shutdown to its deadline */
	int debug;        /* --debug: each coroutine keeps the traceback of where it was started */
	char *chunk;      /* the script's bytes, read once for every loop (start.c) */
	size_t chunk_len;
	char *chunkname;  /* "@script" or "=stdin" */
	int warn_blocking;   /* --warn-blocking, LEM_WARN_BLOCKING: ms, or 0 (off) */
};

/* The built-in modules (src/modules/<name>/), which start.c puts in package.preload. */
int luaopen_lem_utils(lua_State *L);
int luaopen_lem_loops(lua_State *L);
int luaopen_lem_io(lua_State *L);
int luaopen_lem_http(lua_State *L);
int luaopen_lem_signal(lua_State *L);

/* cli.c: returns -1 to go on, or the status to exit with (usage, --help, errors). */
int lem_cli_parse(struct lem_cli *cli, int argc, char **argv);
void lem_cli_free(struct lem_cli *cli);   /* with what lem_start_read read */

/* start.c: reads the script (a file, standard input, a pipe or a FIFO) once, in the main
 * thread, so that every loop gets the same bytes. Returns 0, or 1 once it has said why. */
int lem_start_read(struct lem_cli *cli);
/* Sets `arg` and queues LUA_INIT, -e, -l and the script as the loop's start-up steps,
 * each run in a coroutine once the one before has returned. Returns 0, or 1 with the
 * error message on top of loop->L. */
int lem_start(lem_loop *loop, const struct lem_cli *cli);

/* threads.c: runs cli->loops loops until all have finished; returns the exit status. */
int lem_threads_run(const struct lem_cli *cli);

/* The signal that interrupts a loop thread running Lua code (threads.c). SIGURG is what
 * the kernel sends only to a socket's owner set with F_SETOWN, which lem never sets; its
 * default action is to do nothing (the Go runtime preempts goroutines with it for these
 * reasons). */
#define LEM_SIGINTR SIGURG

/* signal.c: the process's signals and what wakes the main thread. */
enum {                        /* what loops tell the main thread (lem_signal_post) */
	LEM_EV_FINISHED = 1,      /* every loop has finished */
	LEM_EV_STOP = 2,          /* the group stops: interrupt the loops running Lua code */
	LEM_EV_SHUTDOWN = 4       /* the shutdown began: watch its deadline */
};
struct lem_group;
/* Main thread, before any loop: the pipe, SIGINT's and SIGTERM's handler. 0 or -errno. */
int lem_signal_open(void);
/* Any thread (not a signal handler): tells the main thread event. */
void lem_signal_post(unsigned event);
/* Main thread: waits for an event or a signal, at most timeout seconds (negative: no
 * limit). Returns the events (0 when it timed out); *sigs gets the signals caught. */
unsigned lem_signal_next(double timeout, uint64_t *sigs);
/* Main thread: hands each signal of sigs to the loops that catch it, or acts on it.
 * Returns 1 when the loops are to dump (a SIGQUIT that none catches), else 0. */
int lem_signal_dispatch(struct lem_group *g, uint64_t sigs);
/* A loop's thread, once its loop has finished: it catches no signal any more. */
void lem_signal_release(lem_loop *loop);

#endif
