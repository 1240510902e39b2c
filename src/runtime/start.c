/* start.c: turning the command line into the loop's start-up steps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

/* Appends the function on top of L as the next step, with the n values below it as
 * its arguments. */
static void add_step(lem_loop *loop, int n)
{
	lua_State *L = loop->L;
	int i = loop->steps_len++;

	lua_rawseti(L, LEM_STEPS, 2 * i + 1);
	if (n > 0) {
		lua_createtable(L, n, 1);
		lua_insert(L, -n - 1);
		for (int k = n; k >= 1; k--)
			lua_rawseti(L, -k - 1, k);
		lua_pushinteger(L, n);
		lua_setfield(L, -2, "n");
		lua_rawseti(L, LEM_STEPS, 2 * i + 2);
	}
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

int lem_start(lem_loop *loop, const struct lem_cli *cli)
{
	lua_State *L = loop->L;
	const char *init = getenv("LUA_INIT");
	int i, end = cli->script ? cli->script : cli->argc;

	set_arg(L, cli);
	if (init && init[0] == '@') {
		if (luaL_loadfile(L, init + 1) != 0)
			return failed(loop);
		add_step(loop, 0);
	} else if (init) {
		if (luaL_loadbuffer(L, init, strlen(init), "=LUA_INIT") != 0)
			return failed(loop);
		add_step(loop, 0);
	}
	for (i = 1; i < end; i++) {
		const char *a = cli->argv[i], *v;

		if (a[0] != '-' || (a[1] != 'e' && a[1] != 'l'))
			continue;
		v = a[2] ? a + 2 : cli->argv[++i];
		if (a[1] == 'e') {
			if (luaL_loadbuffer(L, v, strlen(v), "=(command line)") != 0)
				return failed(loop);
			add_step(loop, 0);
		} else {
			lua_pushstring(L, v);
			lua_getglobal(L, "require");
			add_step(loop, 1);
		}
	}
	if (cli->script || cli->run_stdin) {
		const char *name = cli->script ? cli->argv[cli->script] : "-";
		int n = 0;

		if (cli->script)
			for (i = cli->script + 1; i < cli->argc; i++, n++)
				lua_pushstring(L, cli->argv[i]);
		if (luaL_loadfile(L, strcmp(name, "-") == 0 ? NULL : name) != 0)
			return failed(loop);
		add_step(loop, n);
	}
	return 0;
}
