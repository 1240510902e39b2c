/* pcall.c: pcall and xpcall that a lem suspension can cross, for PUC Lua 5.1.
 *
 * PUC Lua 5.1 cannot yield across a C function, and its pcall is one. These versions run
 * the protected function in a coroutine of its own and pass lem's suspensions (and plain
 * coroutine.yield calls) up through the caller, which may itself be such a coroutine.
 * Error values come back unchanged. LuaJIT's own pcall and xpcall can be yielded across,
 * so that build keeps them.
 *
 * The helper coroutine is an implementation detail that the debug library would show: it
 * has hooks of its own, and its stack ends where the protected function starts. So the
 * PUC build also brings its own debug.sethook and debug.gethook (hooks move between the
 * caller and the helper, and the wrappers' own calls and instructions are not reported),
 * and debug.traceback, debug.getinfo, debug.getlocal, debug.setlocal and error, whose
 * stack levels go on from a helper into the caller's stack, where the wrapper is seen as
 * the C function that pcall is in stock Lua. */
#include <string.h>
#include "loop.h"

#ifndef LEM_LUAJIT
/* The wrapper chunk; lines matter: LOOP_LINE is where loop is defined. */
#define WRAPPER_SRC "=[lem pcall]"
#define LOOP_LINE 2
static const char wrappers[] =
	"local step, yield, error = ...\n"
	"local function loop(h, co, done, ...)\n"
	"  if done then return ... end\n"
	"  return loop(h, step(h, co, yield(...)))\n"
	"end\n"
	"function pcall(...)\n"
	"  return loop(nil, step(nil, nil, ...))\n"
	"end\n"
	"function xpcall(f, h)\n"
	"  if h == nil then error(\"bad argument #2 to 'xpcall' (value expected)\", 2) end\n"
	"  return loop(h, step(h, nil, f))\n"
	"end\n";

/* Registry keys: the hook functions by thread (a light userdata), and pcall and xpcall
 * as the wrapper chunk made them. */
static const char hooks_key, pcall_key, xpcall_key;

/* The loop's record of the helpers being resumed now (struct lem_pcall, loop.h). */
#define nest     (lem_current->pcall.nest)
#define nest_len (lem_current->pcall.len)
#define hook_thread (lem_current->pcall.in_hook)
#define NEST_MAX LEM_NEST_MAX

static struct lem_nest *find_nest(lua_State *co)
{
	for (int i = (nest_len < NEST_MAX ? nest_len : NEST_MAX) - 1; i >= 0; i--)
		if (nest[i].co == co)
			return &nest[i];
	return NULL;
}

static int is_src(const lua_Debug *ar, const char *src)
{
	return ar->source && strcmp(ar->source, src) == 0;
}

/* ---- hooks ---- */

static int db_getinfo(lua_State *L);
static int db_getlocal(lua_State *L);
static int db_setlocal(lua_State *L);

/* Whether the event at the top of L's stack belongs to the machinery of pcall: the
 * wrappers (but for pcall's own call and return) and the C functions
 * they call, and the stock debug functions that ours call. */
static int hidden(lua_State *L, int event)
{
	lua_Debug ar;
	lua_CFunction f;

	if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "S", &ar))
		return 0;
	if (is_src(&ar, WRAPPER_SRC))
		return !(event == LUA_HOOKRET ||
		         (event == LUA_HOOKCALL && ar.linedefined != LOOP_LINE));
	if (*ar.what != 'C' || !lua_getstack(L, 1, &ar) || !lua_getinfo(L, "Sf", &ar))
		return 0;
	f = lua_tocfunction(L, -1);
	lua_pop(L, 1);
	return is_src(&ar, WRAPPER_SRC) || f == db_getinfo || f == db_getlocal ||
	       f == db_setlocal;
}

static void hookf(lua_State *L, lua_Debug *ar)
{
	static const char *const names[] = { "call", "return", "line", "count", "tail return" };
	lua_State *saved;

	if (hidden(L, ar->event))
		return;
	lua_pushlightuserdata(L, (void *)&hooks_key);
	lua_rawget(L, LUA_REGISTRYINDEX);
	lua_pushlightuserdata(L, L);
	lua_rawget(L, -2);
	lua_remove(L, -2);
	if (!lua_isfunction(L, -1)) {
		lua_pop(L, 1);
		return;
	}
	lua_pushstring(L, names[ar->event]);
	if (ar->currentline >= 0)
		lua_pushinteger(L, ar->currentline);
	else
		lua_pushnil(L);
	saved = hook_thread;
	hook_thread = L;
	lua_call(L, 2, 0);   /* an error skips the restore: the pcall around restores it */
	hook_thread = saved;
}

/* Pushes the hook function of T as the hook table has it (nil if none). */
static void push_hookfunc(lua_State *L, lua_State *T)
{
	lua_pushlightuserdata(L, (void *)&hooks_key);
	lua_rawget(L, LUA_REGISTRYINDEX);
	lua_pushlightuserdata(L, T);
	lua_rawget(L, -2);
	lua_remove(L, -2);
}

/* Sets T's hook, and its function to the value on top of L (popped). */
static void set_hook(lua_State *L, lua_State *T, lua_Hook h, int mask, int count)
{
	lua_pushlightuserdata(L, (void *)&hooks_key);
	lua_rawget(L, LUA_REGISTRYINDEX);
	lua_pushlightuserdata(L, T);
	lua_pushvalue(L, -3);
	lua_rawset(L, -3);
	lua_pop(L, 2);
	lua_sethook(T, h, mask, count);
}

/* Gives `to` the hook of `from` (none included), working on L's stack. */
static void copy_hook(lua_State *L, lua_State *from, lua_State *to)
{
	lua_Hook h = lua_gethook(from);

	if (h == hookf)
		push_hookfunc(L, from);
	else
		lua_pushnil(L);
	set_hook(L, to, h, lua_gethookmask(from), lua_gethookcount(from));
}

static lua_State *get_thread(lua_State *L, int *arg)
{
	if (lua_isthread(L, 1)) {
		*arg = 1;
		return lua_tothread(L, 1);
	}
	*arg = 0;
	return L;
}

/* debug.sethook([thread,] [f, mask [, count]]) */
static int db_sethook(lua_State *L)
{
	int arg, mask = 0, count = 0;
	lua_State *T = get_thread(L, &arg);
	lua_Hook h = NULL;

	if (lua_isnoneornil(L, arg + 1)) {
		lua_settop(L, arg + 1);
	} else {
		const char *s = luaL_checkstring(L, arg + 2);
		luaL_checktype(L, arg + 1, LUA_TFUNCTION);
		count = luaL_optint(L, arg + 3, 0);
		mask = (strchr(s, 'c') ? LUA_MASKCALL : 0) | (strchr(s, 'r') ? LUA_MASKRET : 0) |
		       (strchr(s, 'l') ? LUA_MASKLINE : 0) | (count > 0 ? LUA_MASKCOUNT : 0);
		h = hookf;
	}
	lua_pushvalue(L, arg + 1);
	set_hook(L, T, h, mask, count);
	return 0;
}

/* debug.gethook([thread]): function, mask, count */
static int db_gethook(lua_State *L)
{
	int arg, mask;
	lua_State *T = get_thread(L, &arg);
	lua_Hook h = lua_gethook(T);
	char s[4], *p = s;

	(void)arg;
	mask = lua_gethookmask(T);
	if (h == NULL)
		lua_pushnil(L);
	else if (h != hookf)
		lua_pushliteral(L, "external hook");
	else
		push_hookfunc(L, T);
	if (mask & LUA_MASKCALL) *p++ = 'c';
	if (mask & LUA_MASKRET) *p++ = 'r';
	if (mask & LUA_MASKLINE) *p++ = 'l';
	lua_pushlstring(L, s, (size_t)(p - s));
	lua_pushinteger(L, lua_gethookcount(T));
	return 3;
}

/* ---- the helper's entry and exit (called by lem_sched_nested) ---- */

void lem_pcall_enter(lua_State *T, lua_State *co, int xp)
{
	struct lem_nest *n = nest_len < NEST_MAX ? &nest[nest_len] : NULL;
	int hooked = lua_gethook(T) != NULL && hook_thread != T;

	if (hooked)
		copy_hook(T, T, co);
	if (n) {
		n->co = co;
		n->T = T;
		n->in_hook = hook_thread;
		n->xp = (char)xp;
		n->hooked = (char)hooked;
	}
	nest_len++;
}

/* After each resume of co (and the xpcall handler): the hook goes back to T (if T lent it
 * or co set one) and co keeps none, so that a recycled helper carries no stale hook. */
void lem_pcall_leave(lua_State *T, lua_State *co)
{
	int hooked = 1;

	if (--nest_len < NEST_MAX) {
		hooked = nest[nest_len].hooked;
		hook_thread = nest[nest_len].in_hook;
	}
	if (lua_gethook(co) == NULL && !hooked)
		return;
	copy_hook(T, co, T);
	lua_pushnil(T);
	set_hook(T, co, NULL, 0, 0);
}

/* ---- stack levels across helpers ---- */

/* The number of levels of co's stack. */
static int depth(lua_State *co)
{
	lua_Debug ar;
	int lo = 0, hi = 1;

	if (!lua_getstack(co, 0, &ar))
		return 0;
	while (lua_getstack(co, hi, &ar)) {
		lo = hi;
		hi *= 2;
	}
	while (hi - lo > 1) {         /* lo exists, hi does not */
		int mid = lo + (hi - lo) / 2;
		if (lua_getstack(co, mid, &ar))
			lo = mid;
		else
			hi = mid;
	}
	return lo + 1;
}

enum { NONE, FRAME, WRAPPER };

/* A frame of the logical stack: the thread it is in and its level there. */
struct frame {
	lua_State *W;
	int level;
	struct lem_nest *n;          /* for WRAPPER: the helper's entry */
	lua_Debug ar;
};

/* Finds `level` of L's stack, seen as one stack with the callers of the helpers it runs
 * in. Returns NONE, FRAME, or WRAPPER for the frame of a pcall or xpcall wrapper. */
static int getstack(lua_State *L, int level, struct frame *fr)
{
	int skip = 0;   /* levels of L not shown: the step function and the wrapper's */

	fr->W = L;
	for (;;) {
		struct lem_nest *n = level >= 0 ? find_nest(L) : NULL;
		int d = 0;

		if (!n || skip + level < (d = depth(L))) {
			fr->level = skip + level;
			return lua_getstack(L, fr->level, &fr->ar) ? FRAME : NONE;
		}
		level -= d - skip;
		L = fr->W = n->T;
		if (!lua_getstack(L, 1, &fr->ar))   /* 0 is the step function, 1 the wrapper */
			return NONE;
		if (level-- == 0) {
			fr->level = 1;
			fr->n = n;
			return WRAPPER;
		}
		for (skip = 2; lua_getstack(L, skip, &fr->ar); skip++) {   /* its tail calls */
			lua_getinfo(L, "S", &fr->ar);
			if (*fr->ar.what != 't')
				break;
		}
	}
}

/* Pushes "source:line: " for the frame at `level`, as luaL_where does. */
static void where(lua_State *L, int level)
{
	struct frame fr;

	if (getstack(L, level, &fr) == FRAME) {
		lua_getinfo(fr.W, "Sl", &fr.ar);
		if (fr.ar.currentline > 0) {
			lua_pushfstring(L, "%s:%d: ", fr.ar.short_src, fr.ar.currentline);
			return;
		}
	}
	lua_pushliteral(L, "");
}

/* error(message [, level]) */
static int lem_error(lua_State *L)
{
	int level = luaL_optint(L, 2, 1);

	lua_settop(L, 1);
	if (lua_isstring(L, 1) && level > 0) {
		where(L, level);
		lua_pushvalue(L, 1);
		lua_concat(L, 2);
	}
	return lua_error(L);
}

/* Whether the wrapper frame ar of W is one of xpcall: its local h is the handler. */
static int wrapper_xp(lua_State *W, lua_Debug *ar)
{
	const char *name;

	if (!lua_checkstack(W, 1))
		return 0;
	for (int i = 1; (name = lua_getlocal(W, ar, i)) != NULL; i++) {
		int h = strcmp(name, "h") == 0, set = !lua_isnil(W, -1);
		lua_pop(W, 1);
		if (h)
			return set;
	}
	return 0;
}

/* debug.traceback([thread,] [message [, level]]) */
int lem_pcall_traceback(lua_State *L)
{
	enum { FIRST = 12, LAST = 10 };      /* levels shown before and after "..." */
	int arg, level, top, shown = 0, kind;
	lua_State *T = get_thread(L, &arg);
	struct frame fr;

	if (lua_isnumber(L, arg + 2)) {
		level = (int)lua_tointeger(L, arg + 2);
		lua_pop(L, 1);
	} else {
		level = T == L ? 1 : 0;      /* not this function itself */
	}
	if (lua_gettop(L) == arg)
		lua_pushliteral(L, "");
	else if (!lua_isstring(L, arg + 1))
		return 1;                    /* a message that is not a string is returned */
	else
		lua_pushliteral(L, "\n");
	lua_pushliteral(L, "stack traceback:");
	for (; (kind = getstack(T, level, &fr)) != NONE; level++) {
		if (++shown > FIRST && getstack(T, level + LAST, &fr) != NONE) {
			lua_pushliteral(L, "\n\t...");
			while (getstack(T, level + LAST + 1, &fr) != NONE)
				level++;
			shown = -2 * LAST;   /* no second "..." */
			continue;
		}
		top = lua_gettop(L);
		lua_getinfo(fr.W, "Snl", &fr.ar);
		if (kind == WRAPPER || is_src(&fr.ar, WRAPPER_SRC)) {
			lua_pushfstring(L, "\n\t[C]: in function '%s'", fr.ar.name ? fr.ar.name :
			                (kind == WRAPPER ? fr.n->xp : wrapper_xp(fr.W, &fr.ar)) ?
			                "xpcall" : "pcall");
		} else {
			lua_pushfstring(L, "\n\t%s:", fr.ar.short_src);
			if (fr.ar.currentline > 0)
				lua_pushfstring(L, "%d:", fr.ar.currentline);
			if (*fr.ar.namewhat)
				lua_pushfstring(L, " in function '%s'", fr.ar.name);
			else if (*fr.ar.what == 'm')
				lua_pushliteral(L, " in main chunk");
			else if (*fr.ar.what == 'C' || *fr.ar.what == 't')
				lua_pushliteral(L, " ?");
			else
				lua_pushfstring(L, " in function <%s:%d>", fr.ar.short_src,
				                fr.ar.linedefined);
		}
		lua_concat(L, lua_gettop(L) - top + 1);
	}
	lua_concat(L, lua_gettop(L) - arg);
	return 1;
}

/* Calls the stock debug function (upvalue 1) for the frame found, with this function's
 * arguments from arg + 2 on; returns the number of its results. Nothing but the call may
 * be on L's stack above the arguments: debug.getlocal(0, n) looks at this function's own
 * slots. */
static int call_stock(lua_State *L, int arg, const struct frame *fr)
{
	int top = lua_gettop(L);

	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushthread(fr->W);
	if (fr->W != L)
		lua_xmove(fr->W, L, 1);
	lua_pushinteger(L, fr->W == L ? fr->level + 1 : fr->level);   /* + the stock frame */
	for (int i = arg + 2; i <= top; i++)
		lua_pushvalue(L, i);
	lua_call(L, top - arg + 1, LUA_MULTRET);
	return lua_gettop(L) - top;
}

/* Makes the table on top describe the wrapper frame as the C function pcall is; the
 * wrapper's tail calls lose its name, which `named` gives back. */
static void as_c_function(lua_State *L, int xp, int named)
{
	static const struct { const char *k, *s; int i; } f[] = {
		{ "source", "=[C]", 0 }, { "short_src", "[C]", 0 }, { "what", "C", 0 },
		{ "currentline", NULL, -1 }, { "linedefined", NULL, -1 },
		{ "lastlinedefined", NULL, -1 }, { "nups", NULL, 0 },
	};

	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
		lua_getfield(L, -1, f[i].k);
		if (!lua_isnil(L, -1)) {
			if (f[i].s)
				lua_pushstring(L, f[i].s);
			else
				lua_pushinteger(L, f[i].i);
			lua_setfield(L, -3, f[i].k);
		}
		lua_pop(L, 1);
	}
	lua_pushnil(L);
	lua_setfield(L, -2, "activelines");
	lua_getfield(L, -1, "func");
	if (!lua_isnil(L, -1)) {
		lua_pushlightuserdata(L, (void *)(xp ? &xpcall_key : &pcall_key));
		lua_rawget(L, LUA_REGISTRYINDEX);
		lua_setfield(L, -3, "func");
	}
	lua_pop(L, 1);
	lua_getfield(L, -1, "namewhat");
	if (named && lua_isstring(L, -1) && *lua_tostring(L, -1) == '\0') {
		lua_pushstring(L, xp ? "xpcall" : "pcall");
		lua_setfield(L, -3, "name");
		lua_pushliteral(L, "global");
		lua_setfield(L, -3, "namewhat");
	}
	lua_pop(L, 1);
}

/* debug.getinfo([thread,] f | level [, what]) */
static int db_getinfo(lua_State *L)
{
	int arg, kind, xp = 0, named;
	lua_State *T = get_thread(L, &arg);
	const char *what = luaL_optstring(L, arg + 2, "flnSu");
	struct frame fr;
	lua_Debug ar;

	if (what[strspn(what, "SlnufL")] != '\0')
		return luaL_argerror(L, arg + 2, "invalid option");
	if (lua_isfunction(L, arg + 1)) {      /* nothing to do with levels */
		lua_pushvalue(L, lua_upvalueindex(1));
		lua_insert(L, 1);
		lua_call(L, lua_gettop(L) - 1, 1);
		return 1;
	}
	if (!lua_isnumber(L, arg + 1))
		return luaL_argerror(L, arg + 1, "function or level expected");
	kind = getstack(T, (int)lua_tointeger(L, arg + 1), &fr);
	if (kind == NONE)
		return 0;
	ar = fr.ar;
	if (kind == WRAPPER)
		xp = fr.n->xp;
	else if (lua_getinfo(fr.W, "S", &ar) && is_src(&ar, WRAPPER_SRC))
		kind = WRAPPER, xp = wrapper_xp(fr.W, &fr.ar);   /* a pcall's caller, or in a hook */
	named = 0;          /* unless it is a helper's body, called from C */
	for (int k = fr.level + 1; kind == WRAPPER && lua_getstack(fr.W, k, &ar); k++) {
		lua_getinfo(fr.W, "S", &ar);
		if (*ar.what != 't') {
			named = 1;
			break;
		}
	}
	lua_settop(L, arg + 2);
	if (lua_isnil(L, arg + 2)) {
		lua_pushstring(L, what);
		lua_replace(L, arg + 2);
	}
	call_stock(L, arg, &fr);
	if (kind == WRAPPER && lua_istable(L, -1))
		as_c_function(L, xp, named);
	return 1;
}

/* debug.getlocal([thread,] level, n) and debug.setlocal([thread,] level, n, value) */
static int local(lua_State *L, int nargs)
{
	int arg;
	lua_State *T = get_thread(L, &arg);
	struct frame fr;
	int kind = getstack(T, luaL_checkint(L, arg + 1), &fr);

	if (kind == NONE)
		return luaL_argerror(L, arg + 1, "level out of range");
	(void)luaL_checkint(L, arg + 2);
	if (nargs == 3)
		luaL_checkany(L, arg + 3);
	lua_settop(L, arg + nargs);
	if (kind == WRAPPER)
		return 0;     /* the wrappers' locals are no business of the program's */
	return call_stock(L, arg, &fr);
}

static int db_getlocal(lua_State *L)
{
	return local(L, 2);
}

static int db_setlocal(lua_State *L)
{
	return local(L, 3);
}

/* Replaces debug[name] by f, with the stock one as its upvalue. Stack: debug. */
static void replace(lua_State *L, const char *name, lua_CFunction f)
{
	lua_getfield(L, -1, name);
	lua_pushcclosure(L, f, 1);
	lua_setfield(L, -2, name);
}
#endif

void lem_pcall_open(lua_State *L)
{
#ifdef LEM_LUAJIT
	(void)L;
#else
	lua_pushcfunction(L, lem_error);
	lua_setglobal(L, "error");
	if (luaL_loadbuffer(L, wrappers, sizeof wrappers - 1, WRAPPER_SRC) != 0)
		lua_error(L);
	lua_pushcfunction(L, lem_sched_nested);
	lua_getglobal(L, "coroutine");
	lua_getfield(L, -1, "yield");
	lua_remove(L, -2);
	lua_getglobal(L, "error");
	lua_call(L, 3, 0);
	lua_pushlightuserdata(L, (void *)&pcall_key);
	lua_getglobal(L, "pcall");
	lua_rawset(L, LUA_REGISTRYINDEX);
	lua_pushlightuserdata(L, (void *)&xpcall_key);
	lua_getglobal(L, "xpcall");
	lua_rawset(L, LUA_REGISTRYINDEX);

	lua_pushlightuserdata(L, (void *)&hooks_key);
	lua_newtable(L);
	lua_rawset(L, LUA_REGISTRYINDEX);
	lua_getglobal(L, "debug");
	lua_pushcfunction(L, db_sethook);
	lua_setfield(L, -2, "sethook");
	lua_pushcfunction(L, db_gethook);
	lua_setfield(L, -2, "gethook");
	lua_pushcfunction(L, lem_pcall_traceback);
	lua_setfield(L, -2, "traceback");
	replace(L, "getinfo", db_getinfo);
	replace(L, "getlocal", db_getlocal);
	replace(L, "setlocal", db_setlocal);
	lua_pop(L, 1);
#endif
}
