/* socket.c: lem.io's sockets: addresses, the arguments that name them, and name lookups
 * on the thread pool, shared by listeners and connects. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <arpa/inet.h>
#include "io.h"

/* ---- addresses ---- */

int io_pushaddr(lua_State *T, const struct sockaddr *sa, unsigned len)
{
	char buf[INET6_ADDRSTRLEN];
	const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
	size_t n;

	switch (sa->sa_family) {
	case AF_INET:
		inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
		break;
	case AF_INET6:    /* an IPv4 client of a dual-stack ('*') listener: shown as IPv4 */
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf, sizeof buf);
		else
			inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
		break;
	case AF_UNIX:
		n = len > offsetof(struct sockaddr_un, sun_path)
		  ? strnlen(un->sun_path, len - offsetof(struct sockaddr_un, sun_path)) : 0;
		lua_pushlstring(T, un->sun_path, n);
		return 1;
	default:
		lua_pushnil(T);
		lua_pushliteral(T, "unknown address family");
		return 2;
	}
	lua_pushstring(T, buf);
	lua_pushinteger(T, ntohs(sa->sa_family == AF_INET ? in->sin_port : in6->sin6_port));
	return 2;
}

/* [-0, +0, v] The host name or address at idx: a C string whose end is the Lua string's
 * (a zero byte inside would make it another name than the one given). */
const char *io_checkhost(lua_State *T, int idx)
{
	size_t len;
	const char *host = luaL_checklstring(T, idx, &len);

	if (memchr(host, 0, len))
		luaL_argerror(T, idx, "zero byte in host name");
	return host;
}

int io_checkport(lua_State *T, int idx)
{
	lua_Number n = luaL_checknumber(T, idx);

	if (!(n >= 0 && n <= 65535) || n != (lua_Number)(int)n)
		luaL_argerror(T, idx, "port must be a whole number from 0 to 65535");
	return (int)n;
}

/* [-0, +0, v] The Unix socket address of the path at idx. */
void io_checkunix(lua_State *T, int idx, struct sockaddr_un *un)
{
	size_t len;
	const char *path = luaL_checklstring(T, idx, &len);

	if (len == 0 || len >= sizeof un->sun_path)
		luaL_argerror(T, idx, len ? "path too long for a Unix socket" : "empty path");
	if (memchr(path, 0, len))    /* the kernel would take the path up to it */
		luaL_argerror(T, idx, "zero byte in path");
	memset(un, 0, sizeof *un);
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, path, len);
}

/* Resolves host only where it is a numeric address: no lookup, so no blocking. Returns
 * getaddrinfo's answer: 0, or an EAI_ code (EAI_NONAME: host is a name). */
int io_numeric_addr(const char *host, int port, int passive, struct addrinfo **res)
{
	struct addrinfo hints;
	char serv[8];

	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	snprintf(serv, sizeof serv, "%d", port);
	return getaddrinfo(host, serv, &hints, res);
}

/* ---- name lookups on the thread pool ----
 * getaddrinfo may block for seconds: it runs on the pool (lem_async_run) while the object
 * that asked waits, anchored by the lookup, and its caller stays suspended. */

static void socket_lookup_work(void *arg)
{
	struct io_lookup *r = arg;
	struct addrinfo hints;
	char serv[8];
	int gai;

	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG | (r->passive ? AI_PASSIVE : 0);
	snprintf(serv, sizeof serv, "%d", r->port);
	errno = 0;
	gai = getaddrinfo(r->host, serv, &hints, &r->res);
	if (gai) {
		/* glibc says EAI_NONAME when it could not open /etc/hosts or its other sources:
		 * out of descriptors, the name was never looked up */
		if (gai == EAI_NONAME && (errno == EMFILE || errno == ENFILE))
			gai = EAI_SYSTEM;
		r->err = io_eai(gai, errno);
		r->res = NULL;
	}
}

static void socket_lookup_done(lem_loop *loop, void *arg)
{
	struct io_lookup *r = arg;
	lua_State *L = lem_state(loop);

	lem_anchor_push(loop, L, r->obj);
	lem_unanchor(loop, r->obj);
	if (r->obj)              /* 0: taken while the loop closed, nobody waits */
		r->done(L, lua_touserdata(L, -1), r);
	lua_pop(L, 1);
	if (r->res)
		freeaddrinfo(r->res);
	free(r);
}

/* [-0, +0, m] Starts the lookup of host for the object at idx of T; done gets its result.
 * Returns 0 or an error < 0 (and then done never runs). */
int io_lookup_start(lua_State *T, int idx, const char *host, int port, int passive,
                    io_lookup_done *done)
{
	lem_loop *loop = lem_loop_of(T);
	size_t len = strlen(host);
	struct io_lookup *r;
	int obj, err;

	lua_pushvalue(T, idx);
	obj = lem_anchor(loop, T);          /* first: it may raise */
	if (!(r = malloc(sizeof *r + len + 1))) {
		lem_unanchor(loop, obj);
		return -ENOMEM;
	}
	memcpy(r->host, host, len + 1);
	r->port = port;
	r->passive = passive;
	r->res = NULL;
	r->err = 0;
	r->obj = obj;
	r->done = done;
	err = lem_async_run(loop, socket_lookup_work, socket_lookup_done, r);
	if (err) {
		lem_unanchor(loop, obj);
		free(r);
	}
	return err;
}
