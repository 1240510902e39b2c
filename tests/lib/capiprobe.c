/* capiprobe.c: for tests/capi.lua, the error returns of lem.h that no built-in module
 * shows to Lua (they check their arguments first). Each function calls one of lem.h and
 * returns its result: 0 (or 1), or the name of the negative errno ('EPIPE', ...).
 *     capiprobe.post(to)          lem_post of an empty message to loop `to`
 *                                 (only ids that are no loop: lem.loops reads the others)
 *     capiprobe.signal(sig)       lem_signal(sig, LEM_SIG_CATCH)
 *     capiprobe.async()           lem_async_run of a job that does nothing
 *     capiprobe.hook()            lem_signal_hook_add of a hook that does nothing
 *     capiprobe.anchor()          lem_anchor of nil (its slot, freed again: 0 when refused) */
#include <errno.h>
#include <stdlib.h>
#include <lem.h>

static int result(lua_State *T, int r)
{
	switch (r) {
	case -EPIPE: lua_pushliteral(T, "EPIPE"); break;
	case -ENOSPC: lua_pushliteral(T, "ENOSPC"); break;
	case -EINVAL: lua_pushliteral(T, "EINVAL"); break;
	case -ECANCELED: lua_pushliteral(T, "ECANCELED"); break;
	case -ENOMEM: lua_pushliteral(T, "ENOMEM"); break;
	default: lua_pushinteger(T, r);
	}
	return 1;
}

static int probe_post(lua_State *T)
{
	int to = (int)luaL_checkinteger(T, 1);
	lem_msg *m = malloc(sizeof *m);
	int r;

	if (!m)
		return luaL_error(T, "not enough memory");
	r = lem_post(lem_loop_of(T), to, m);
	if (r < 0)
		free(m);                         /* still ours on failure */
	return result(T, r);
}

static int probe_signal(lua_State *T)
{
	return result(T, lem_signal(lem_loop_of(T), (int)luaL_checkinteger(T, 1), LEM_SIG_CATCH));
}

static void nothing_work(void *arg) { (void)arg; }
static void nothing_done(lem_loop *loop, void *arg) { (void)loop; (void)arg; }

static int probe_async(lua_State *T)
{
	return result(T, lem_async_run(lem_loop_of(T), nothing_work, nothing_done, NULL));
}

static int nothing_hook(lem_loop *loop, int event, void *ud)
{
	(void)loop; (void)event; (void)ud;
	return 0;
}

static int probe_hook(lua_State *T)
{
	return result(T, lem_signal_hook_add(lem_loop_of(T), nothing_hook, NULL));
}

static int probe_anchor(lua_State *T)
{
	lem_loop *loop = lem_loop_of(T);
	int slot;

	lua_pushnil(T);
	slot = lem_anchor(loop, T);
	lem_unanchor(loop, slot);
	lua_pushinteger(T, slot);
	return 1;
}

int luaopen_capiprobe(lua_State *L)
{
	static const luaL_Reg f[] = {
		{ "post", probe_post }, { "signal", probe_signal }, { "async", probe_async },
		{ "hook", probe_hook }, { "anchor", probe_anchor }, { NULL, NULL }
	};

	lua_newtable(L);
	luaL_register(L, NULL, f);
	return 1;
}
