/* trampoline.c: the Lua function that runs a C function as a coroutine's body (PUC 5.1).
 *
 * PUC Lua 5.1 cannot resume a coroutine whose main function is a C function that yielded
 * (which is why its coroutine.create takes Lua functions only), yet utils.spawn(s.sleep, s)
 * or pcall(utils.yield) are fair code. Such bodies run under function(f, ...) return f(...)
 * end, which calls nothing else (so that hooks see the body's call and return alone).
 * Compiled from source, that function would add its own position ("[string]:1:") to the
 * errors that the C function raises with luaL_error or error(): its line information is
 * dropped from the binary chunk so that, like a C caller, it adds none; so are its local
 * names, so that the body is not named after them in tracebacks and hooks. LuaJIT resumes C
 * bodies itself and needs none of this. */
#include <string.h>
#include "loop.h"

#ifndef LEM_LUAJIT
struct buf {
	char data[512];
	size_t len;
	int overflow;
};

static int collect(lua_State *L, const void *p, size_t sz, void *ud)
{
	struct buf *b = ud;

	(void)L;
	if (b->len + sz > sizeof b->data) {
		b->overflow = 1;
		return 1;
	}
	memcpy(b->data + b->len, p, sz);
	b->len += sz;
	return 0;
}

static const char *reader(lua_State *L, void *ud, size_t *size)
{
	struct buf *b = ud;

	(void)L;
	*size = b->len;
	b->len = 0;
	return *size ? b->data : NULL;
}

/* Reads an integer of n bytes (n is the dump's sizeof(int) or sizeof(size_t)). */
static size_t get(const char *p, int n)
{
	unsigned long long v = 0;

	memcpy(&v, p, (size_t)n < sizeof v ? (size_t)n : sizeof v);   /* little-endian dumps */
	return (size_t)v;
}

/* Finds the line information and the local names of a dumped function without nested
 * functions, and removes them. Returns 0, or -1 if the dump is not laid out as expected. */
static int strip_lines(struct buf *b)
{
	const char *d = b->data;
	size_t i = 12, n, k, j;
	int si, ss, sn;

	if (b->len < 12 || d[4] != 0x51 || d[6] != 1)   /* version 5.1, little-endian */
		return -1;
	si = d[7]; ss = d[8]; sn = d[10];
	n = get(d + i, ss); i += ss + n;                   /* source */
	i += 2 * si + 4;                                   /* lines defined, nups .. stack */
	n = get(d + i, si); i += si + n * d[9];            /* code */
	n = get(d + i, si); i += si;                       /* constants */
	for (k = 0; k < n && i < b->len; k++) {
		switch (d[i++]) {
		case LUA_TNIL: break;
		case LUA_TBOOLEAN: i += 1; break;
		case LUA_TNUMBER: i += sn; break;
		case LUA_TSTRING: i += ss + get(d + i, ss); break;
		default: return -1;
		}
	}
	if (i + si > b->len || get(d + i, si) != 0)         /* nested functions: none */
		return -1;
	i += si;
	j = i;                                             /* what to drop starts here */
	n = get(d + i, si); i += si + n * si;              /* line information */
	if (i + si > b->len)
		return -1;
	n = get(d + i, si); i += si;                       /* local names, with their ranges */
	for (k = 0; k < n && i + ss <= b->len; k++)
		i += ss + get(d + i, ss) + 2 * si;
	if (k < n || i > b->len)
		return -1;
	memset(b->data + j, 0, 2 * si);                    /* no lines, no locals */
	memmove(b->data + j + 2 * si, d + i, b->len - i);
	b->len -= i - (j + 2 * si);
	return 0;
}
#endif

/* Pushes the trampoline. */
void lem_trampoline_push(lua_State *L)
{
	static const char src[] = "return function(f, ...) return f(...) end";

	if (luaL_loadbuffer(L, src, sizeof src - 1, "=[C body]") != 0)
		lua_error(L);
	lua_call(L, 0, 1);
#ifndef LEM_LUAJIT
	{
		struct buf b = { .len = 0, .overflow = 0 };

		if (lua_dump(L, collect, &b) == 0 && !b.overflow && strip_lines(&b) == 0 &&
		    lua_load(L, reader, &b, "=[C body]") == 0)
			lua_remove(L, -2);   /* else keep the one with line information */
	}
#endif
}
