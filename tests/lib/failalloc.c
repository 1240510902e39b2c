/* failalloc.c: for the tests, allocations that fail on demand.
 *
 * Preloaded into a lem (LD_PRELOAD), it takes the place of malloc, calloc and realloc;
 * required as the Lua module 'failalloc' by a script of that same lem (the dynamic
 * linker hands back the preloaded copy), it arms them for the calling thread only, so
 * that one loop may fail where the others do not:
 *     failalloc.above(bytes)   requests larger than bytes fail (NULL, ENOMEM); nil: none
 *     failalloc.failures()     how many requests failed in this thread
 * The requests it lets through go to glibc's own allocator. Not for sanitizer builds,
 * whose runtimes replace the allocator themselves. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include <lauxlib.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

/* initial-exec: reading them must not allocate (a preloaded library has static TLS) */
static __thread size_t limit __attribute__((tls_model("initial-exec"))) = SIZE_MAX;
static __thread unsigned long failed __attribute__((tls_model("initial-exec")));

static int refuse(size_t n)
{
	if (n <= limit)
		return 0;
	failed++;
	errno = ENOMEM;
	return 1;
}

void *malloc(size_t n)
{
	return refuse(n) ? NULL : __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
	return size && n > SIZE_MAX / size ? __libc_calloc(n, size) :
	       refuse(n * size) ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
	return refuse(n) ? NULL : __libc_realloc(p, n);
}

static int failalloc_above(lua_State *L)
{
	limit = lua_isnoneornil(L, 1) ? SIZE_MAX : (size_t)luaL_checknumber(L, 1);
	return 0;
}

static int failalloc_failures(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)failed);
	return 1;
}

int luaopen_failalloc(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "above", failalloc_above },
		{ "failures", failalloc_failures },
		{ NULL, NULL }
	};

	lua_newtable(L);
	luaL_register(L, NULL, funcs);
	return 1;
}
