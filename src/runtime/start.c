/* start.c: turning the command line into the loop's start-up steps. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "runtime.h"

/* ---- start-up steps ----
 * LUA_INIT, each -e and -l, then the script: each runs in a coroutine of its own once the
 * one before it has returned, as lua.c runs them one after another. The list is a table
 * anchored in the loop: {n = count, next = index, [i] = {func, args...}}. */

/* Appends the function on top of L, with the n values below it as its arguments. */
static void add_step(lem_loop *loop, int n)
{
	lua_State *L = loop->L;
	int i;

	lem_anchor_push(loop, L, loop->steps);
	lua_getfield(L, -1, "n");
	i = (int)lua_tointeger(L, -1) + 1;
	lua_pop(L, 1);
	lua_pushinteger(L, i);
	lua_setfield(L, -2, "n");
	lua_insert(L, -n - 2);                  /* steps, args..., func */
	lua_createtable(L, n + 1, 0);
	lua_insert(L, -n - 2);                  /* steps, step, args..., func */
	lua_rawseti(L, -n - 2, 1);
	for (int k = n + 1; k >= 2; k--)
		lua_rawseti(L, -k, k);
	lua_rawseti(L, -2, i);
	lua_pop(L, 1);
}

/* Queues the next step, if any (the loop's step_done). */
static void next_step(lem_loop *loop)
{
	lua_State *L = loop->L, *co;
	int i, n;

	loop->step = NULL;
	lem_anchor_push(loop, L, loop->steps);
	lua_getfield(L, -1, "next");
	i = (int)lua_tointeger(L, -1) + 1;
	lua_pop(L, 1);
	lua_rawgeti(L, -1, i);
	if (lua_isnil(L, -1) || loop->stopping) {
		lua_pop(L, 2);
		lem_unanchor(loop, loop->steps);
		loop->steps = 0;
		return;
	}
	lua_pushinteger(L, i);
	lua_setfield(L, -3, "next");
	lua_pushnil(L);
	lua_rawseti(L, -3, i);                  /* the step needs no anchor any more */
	n = (int)lua_objlen(L, -1);
	co = lem_sched_pushthread(loop);        /* steps, step, co */
	luaL_checkstack(L, n, "too many arguments");
	lua_checkstack(co, n);
	for (int k = 1, step = lua_gettop(L) - 1; k <= n; k++)
		lua_rawgeti(L, step, k);
	lua_xmove(L, co, n);
	loop->step = co;
	lem_sched_start(loop, co, n - 1);
	lua_pop(L, 3);
}

static int failed(lem_loop *loop)
{
	(void)loop;   /* the message stays on the stack for the caller to report */
	return 1;
}

/* arg[0] is the script; the interpreter and its options go below it, the script's
 * arguments above. With no script, arg[0] is the interpreter. */
static void set_arg(lua_State *L, const struct lem_cli *cli)
{
	int base = cli->script ? cli->script : 0;

	lua_createtable(L, cli->argc - base, base);
	for (int i = 0; i < cli->argc; i++) {
		lua_pushstring(L, cli->argv[i]);
		lua_rawseti(L, -2, i - base);
	}
	lua_setglobal(L, "arg");
}

/* The built-in modules, loaded by require (as Lua's linit.c lists its libraries). */
static const luaL_Reg modules[] = {
	{ "lem.utils", luaopen_lem_utils },
	{ "lem.loops", luaopen_lem_loops },
	{ "lem.io", luaopen_lem_io },
	{ "lem.signal", luaopen_lem_signal },
	{ "lem.http", luaopen_lem_http },
	{ NULL, NULL }
};

/* lem's shared modules (lem.redis, lem.postgres) are found beside the binary: in the
 * build tree, modules/lem/NAME.so; installed, ../lib/lem/lem/NAME.so. Those patterns go
 * first in package.cpath. */
static void add_cpath(lua_State *L)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	char *slash;

	if (n <= 0)
		return;
	exe[n] = '\0';
	if (!(slash = strrchr(exe, '/')))
		return;
	*slash = '\0';
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "cpath");
	lua_pushfstring(L, "%s/modules/?.so;%s/../lib/lem/?.so;%s", exe, exe,
	                lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
	lua_setfield(L, -3, "cpath");
	lua_pop(L, 2);
}

static void preload(lua_State *L)
{
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	for (const luaL_Reg *m = modules; m->name; m++) {
		lua_pushcfunction(L, m->func);
		lua_setfield(L, -2, m->name);
	}
	lua_pop(L, 2);
}

int lem_start(lem_loop *loop, const struct lem_cli *cli)
{
	lua_State *L = loop->L;
	const char *init = getenv("LUA_INIT");
	int i;

	loop->debug = cli->debug;
	preload(L);
	add_cpath(L);
	set_arg(L, cli);
	lua_newtable(L);
	loop->steps = lem_anchor(loop, L);
	loop->step_done = next_step;
	if (init && init[0] == '@') {
		if (luaL_loadfile(L, init + 1) != 0)
			return failed(loop);
		add_step(loop, 0);
	} else if (init) {
		if (luaL_loadbuffer(L, init, strlen(init), "=LUA_INIT") != 0)
			return failed(loop);
		add_step(loop, 0);
	}
	for (i = 0; i < cli->nopts; i++) {
		const char *v = cli->opts[i].value;

		if (cli->opts[i].kind == 'e') {
			if (luaL_loadbuffer(L, v, strlen(v), "=(command line)") != 0)
				return failed(loop);
			add_step(loop, 0);
		} else {
			lua_pushstring(L, v);
			lua_getglobal(L, "require");
			add_step(loop, 1);
		}
	}
	if (cli->chunkname) {
		const char *p = cli->chunk, *end = p + cli->chunk_len;
		int n = 0;

		/* as luaL_loadfile: a first line starting with '#' is skipped, its newline kept
		 * so that line numbers hold (a precompiled chunk may follow it directly) */
		if (p < end && *p == '#') {
			while (p < end && *p != '\n')
				p++;
			if (end - p > 1 && p[1] == LUA_SIGNATURE[0])
				p++;
		}
		if (cli->script)
			for (i = cli->script + 1; i < cli->argc; i++, n++)
				lua_pushstring(L, cli->argv[i]);
		if (luaL_loadbuffer(L, p, end - p, cli->chunkname) != 0)
			return failed(loop);
		add_step(loop, n);
	}
	next_step(loop);
	return 0;
}

/* The whole of fd; NULL with errno set on failure. */
static char *read_all(int fd, size_t *len)
{
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap), *p;
	ssize_t r;

	while (buf) {
		if (n == cap) {
			if (!(p = realloc(buf, cap *= 2)))
				break;
			buf = p;
		}
		r = read(fd, buf + n, cap - n);
		if (r > 0) {
			n += r;
		} else if (r == 0) {
			*len = n;
			return buf;
		} else if (errno != EINTR) {
			break;
		}
	}
	free(buf);
	return NULL;
}

int lem_start_read(struct lem_cli *cli)
{
	const char *name = cli->script ? cli->argv[cli->script] : "-";
	int std = cli->run_stdin, fd = std ? STDIN_FILENO : open(name, O_RDONLY | O_CLOEXEC);
	const char *what = "open";
	size_t n;

	if (!cli->script && !cli->run_stdin)
		return 0;
	if (fd >= 0) {
		what = "read";
		cli->chunk = read_all(fd, &cli->chunk_len);
		if (!std) {
			int saved = errno;
			close(fd);
			errno = saved;
		}
	}
	if (!cli->chunk) {   /* the message of luaL_loadfile */
		fprintf(stderr, "lem: cannot %s %s: %s\n", what, std ? "stdin" : name, strerror(errno));
		return 1;
	}
	n = std ? sizeof "=stdin" : strlen(name) + 2;
	if (!(cli->chunkname = malloc(n))) {
		fprintf(stderr, "lem: not enough memory\n");
		return 1;
	}
	if (std)
		strcpy(cli->chunkname, "=stdin");
	else
		snprintf(cli->chunkname, n, "@%s", name);
	return 0;
}
