/* socket.c: lem.io's sockets: addresses and name lookups, listeners (accept, autospawn),
 * and connecting TCP and Unix streams. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "io.h"

#define ACCEPTS_MAX   64       /* accept() calls per event: other watchers' turn then */
#define EMFILE_PAUSE  0.1      /* seconds autospawn stops accepting when out of descriptors */

#define METATABLE lua_upvalueindex(1)   /* upvalue of the listener methods */

enum { CONNECT_NONE, CONNECT_RESOLVING, CONNECT_WAITING };

/* ---- addresses ---- */

int io_pushaddr(lua_State *T, const struct sockaddr *sa, unsigned len)
{
	char buf[INET6_ADDRSTRLEN];

	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
		lua_pushstring(T, buf);
		lua_pushinteger(T, ntohs(in->sin_port));
		return 2;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		/* An IPv4 client of a dual-stack ('*') listener: show it as IPv4. */
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf, sizeof buf);
		else
			inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
		lua_pushstring(T, buf);
		lua_pushinteger(T, ntohs(in6->sin6_port));
		return 2;
	}
	case AF_UNIX: {
		const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
		size_t n = len > offsetof(struct sockaddr_un, sun_path)
		         ? strnlen(un->sun_path, len - offsetof(struct sockaddr_un, sun_path)) : 0;

		lua_pushlstring(T, un->sun_path, n);
		return 1;
	}
	}
	lua_pushnil(T);
	lua_pushliteral(T, "unknown address family");
	return 2;
}

static int checkport(lua_State *T, int idx)
{
	lua_Number n = luaL_checknumber(T, idx);

	if (!(n >= 0 && n <= 65535) || n != (lua_Number)(int)n)
		luaL_argerror(T, idx, "port must be a whole number from 0 to 65535");
	return (int)n;
}

static lua_Number opttimeout(lua_State *T, int idx)
{
	lua_Number t;

	if (lua_isnoneornil(T, idx))
		return -1;
	t = luaL_checknumber(T, idx);
	if (t != t)
		luaL_argerror(T, idx, "timeout is not a number");
	return t < 0 ? 0 : t;
}

static void fill_unix(lua_State *T, int idx, struct sockaddr_un *un)
{
	size_t len;
	const char *path = luaL_checklstring(T, idx, &len);

	if (len == 0 || len >= sizeof un->sun_path)
		luaL_argerror(T, idx, len ? "path too long for a Unix socket" : "empty path");
	memset(un, 0, sizeof *un);
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, path, len);
}

/* getaddrinfo's failures as messages: its own text, lower-cased like strerror's. */
static const char *lookup_text(int err, int syserr, char buf[128])
{
	if (err == EAI_SYSTEM)
		return io_strerror(syserr, buf);
	snprintf(buf, 128, "%s", gai_strerror(err));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] += 'a' - 'A';
	return buf;
}

static int lookup_error(lua_State *T, int err, int syserr)
{
	char buf[128];

	lua_pushnil(T);
	lua_pushstring(T, lookup_text(err, syserr, buf));
	return 2;
}

/* Resolves host only where it is a numeric address: no lookup, so no blocking. */
static int numeric_addr(const char *host, int port, int passive, struct addrinfo **res)
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
 * that asked waits, anchored, and its caller stays suspended. */

struct resolve {
	/* set by the loop thread, read by the worker */
	int port;
	int passive;
	/* set by the worker, read by the loop thread in resolve_done */
	struct addrinfo *res;
	int err, syserr;
	/* loop thread only */
	int obj;                  /* anchor slot of the listener or stream that waits */
	int is_listener;
	char host[];
};

static void resolve_work(void *arg)
{
	struct resolve *r = arg;
	struct addrinfo hints;
	char serv[8];

	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG | (r->passive ? AI_PASSIVE : 0);
	snprintf(serv, sizeof serv, "%d", r->port);
	errno = 0;
	r->err = getaddrinfo(r->host, serv, &hints, &r->res);
	r->syserr = errno;
	if (r->err)
		r->res = NULL;
}

static void listener_resolved(struct io_listener *l, struct resolve *r);
static void connect_resolved(struct io_stream *s, struct resolve *r);

static void resolve_done(lem_loop *loop, void *arg)
{
	struct resolve *r = arg;
	lua_State *L = loop->L;

	if (!loop->closing) {
		lem_anchor_push(loop, L, r->obj);
		lem_unanchor(loop, r->obj);
		if (r->is_listener)
			listener_resolved(lua_touserdata(L, -1), r);
		else
			connect_resolved(lua_touserdata(L, -1), r);
		lua_pop(L, 1);
	}
	if (r->res)
		freeaddrinfo(r->res);
	free(r);
}

/* Starts the lookup of host for the object at idx of T, whose caller waits in iw.
 * Returns 0, or pushes nil, message and returns 2. */
static int resolve_start(lua_State *T, int idx, const char *host, int port, int is_listener,
                         struct io_wait *iw)
{
	lem_loop *loop = lem_current;
	size_t len = strlen(host);
	struct resolve *r = malloc(sizeof *r + len + 1);
	int err;

	if (!r)
		return io_error(T, ENOMEM);
	memcpy(r->host, host, len + 1);
	r->port = port;
	r->passive = is_listener;                 /* listen: addresses to bind */
	r->res = NULL;
	r->err = r->syserr = 0;
	r->is_listener = is_listener;
	lua_pushvalue(T, idx);
	r->obj = lem_anchor(loop, T);
	err = lem_async_run(loop, resolve_work, resolve_done, r);
	if (err) {
		lem_unanchor(loop, r->obj);
		free(r);
		return io_error(T, -err);
	}
	io_anchor_co(loop, iw);
	return 0;
}

/* ---- listeners ---- */

static void listener_readable(struct ev_loop *ev, ev_io *w, int revents);
static void listener_timer(struct ev_loop *ev, ev_timer *w, int revents);

static struct io_listener *listener_new(lua_State *T, lem_loop *loop, int kind)
{
	struct io_listener *l = lua_newuserdata(T, sizeof *l);

	memset(l, 0, sizeof *l);
	l->loop = loop;
	l->S = io_scratch(T);
	l->fd = -1;
	l->kind = (unsigned char)kind;
	ev_init(&l->r, listener_readable);
	ev_init(&l->timer, listener_timer);
	luaL_getmetatable(T, IO_LISTENER_MT);
	lua_setmetatable(T, -2);
	return l;
}

/* A listening socket on sa. dual: an IPv6 wildcard that takes IPv4 too. Every loop of
 * the process (and every process) may bind the same TCP port: SO_REUSEPORT has the
 * kernel spread the connections over them. Returns 0 (l->fd set) or -errno. */
static int listener_bind(struct io_listener *l, const struct sockaddr *sa, socklen_t len,
                         int dual)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1, zero = 0, err;

	if (fd < 0)
		return -errno;
	if (sa->sa_family != AF_UNIX &&
	    (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	     setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0))
		goto err;
	if (dual && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0)
		goto err;
	if (bind(fd, sa, len) != 0 || listen(fd, l->backlog) != 0)
		goto err;
	l->fd = fd;
	ev_io_set(&l->r, fd, EV_READ);
	return 0;
err:
	err = errno;
	close(fd);
	return -err;
}

/* Binds the first address of ai that works. Returns 0 or -errno. */
static int listener_bind_list(struct io_listener *l, const struct addrinfo *ai)
{
	int err = -EADDRNOTAVAIL;

	for (; ai; ai = ai->ai_next)
		if ((err = listener_bind(l, ai->ai_addr, ai->ai_addrlen, 0)) == 0)
			break;
	return err;
}

static int listen_any(struct io_listener *l, int port)
{
	struct sockaddr_in6 in6;
	struct sockaddr_in in;
	int err;

	memset(&in6, 0, sizeof in6);
	in6.sin6_family = AF_INET6;
	in6.sin6_addr = in6addr_any;
	in6.sin6_port = htons(port);
	err = listener_bind(l, (struct sockaddr *)&in6, sizeof in6, 1);
	if (err != -EAFNOSUPPORT)
		return err;
	memset(&in, 0, sizeof in);                  /* a kernel without IPv6 */
	in.sin_family = AF_INET;
	in.sin_addr.s_addr = htonl(INADDR_ANY);
	in.sin_port = htons(port);
	return listener_bind(l, (struct sockaddr *)&in, sizeof in, 0);
}

static void listener_resolved(struct io_listener *l, struct resolve *r)
{
	lua_State *L = l->loop->L;                           /* the listener on top */
	char buf[128];
	int err;

	if (!l->acc.slot)
		return;
	if (r->err) {
		io_wake_msg(l->loop, l->S, &l->acc, lookup_text(r->err, r->syserr, buf));
		return;
	}
	err = listener_bind_list(l, r->res);
	if (err) {
		io_wake_error(l->loop, l->S, &l->acc, -err);     /* return nil, message */
		return;
	}
	lua_pushvalue(L, -1);                                /* return the listener */
	io_wake(l->loop, &l->acc, 1);
}

/* io.tcp.listen(host, port [, backlog]) --> listener | nil, message
 * host '*': every address, IPv4 and IPv6. */
static int tcp_listen(lua_State *T)
{
	lem_loop *loop = lem_current;
	const char *host = luaL_checkstring(T, 1);
	int port = checkport(T, 2);
	int backlog = (int)luaL_optinteger(T, 3, SOMAXCONN);
	struct io_listener *l;
	struct addrinfo *res;
	int err;

	if (backlog <= 0)
		luaL_argerror(T, 3, "backlog must be positive");
	lua_settop(T, 3);
	l = listener_new(T, loop, IO_TCP);
	l->backlog = backlog;
	if (strcmp(host, "*") == 0) {
		err = listen_any(l, port);
	} else if ((err = numeric_addr(host, port, 1, &res)) == 0) {
		err = listener_bind_list(l, res);
		freeaddrinfo(res);
	} else if (err == EAI_NONAME) {          /* a name: look it up on the pool */
		lem_sched_wait(T, &l->acc.w);
		if ((err = resolve_start(T, 4, host, port, 1, &l->acc)) != 0)
			return err;
		return lem_sched_yieldw(T, &l->acc.w);
	} else {
		return lookup_error(T, err, errno);
	}
	if (err)
		return io_error(T, -err);            /* return nil, message */
	return 1;                                /* return the listener */
}

/* io.unix.listen(path [, backlog]) --> listener | nil, message
 * The socket file is removed when the listener closes. */
static int unix_listen(lua_State *T)
{
	struct sockaddr_un un;
	int backlog = (int)luaL_optinteger(T, 2, SOMAXCONN);
	struct io_listener *l;
	char *path;
	int err;

	fill_unix(T, 1, &un);
	if (backlog <= 0)
		luaL_argerror(T, 2, "backlog must be positive");
	l = listener_new(T, lem_current, IO_UNIX);
	l->backlog = backlog;
	/* Copied before the bind: a listener that made the file must be able to remove it. */
	if (!(path = strdup(un.sun_path)))
		return io_error(T, ENOMEM);
	if ((err = listener_bind(l, (struct sockaddr *)&un, sizeof un, 0)) != 0) {
		free(path);
		return io_error(T, -err);
	}
	l->path = path;
	return 1;
}

/* A client just accepted: its descriptor and address, until its stream is made. */
struct accepted {
	struct io_listener *l;
	int fd;
	socklen_t len;
	union io_addr addr;
};

/* Accepts into c. Returns the new descriptor or -errno; -EAGAIN when nobody is waiting. */
static int listener_accept1(struct io_listener *l, struct accepted *c)
{
	int fd, one = 1;

	c->l = l;
	do {
		c->len = sizeof c->addr;
		fd = accept4(l->fd, &c->addr.sa, &c->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	} while (fd < 0 && (errno == EINTR || errno == ECONNABORTED));
	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (c->len > sizeof c->addr)
		c->len = sizeof c->addr;
	c->fd = fd;
	/* Requests and answers are small writes: send them at once, not after an ACK. */
	if (l->kind == IO_TCP)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/* [-0, +1, m] The accepted client's stream, which remembers its peer: peer() answers
 * even once the client reset and the kernel forgot it. */
static int push_stream(lua_State *S, void *ud)
{
	struct accepted *c = ud;
	struct io_stream *s = io_stream_new(S, c->l->loop, c->fd, c->l->kind);

	memcpy(&s->peer, &c->addr, c->len);
	s->peerlen = c->len;
	return 1;
}

/* Pushes on `to` the accepted client's stream, made protected (callbacks may call this);
 * or, out of memory, closes the client and pushes nil, message. Returns 1 or 2. */
static int accepted_push(struct accepted *c, lua_State *to)
{
	int n = io_protect(c->l->S, to, push_stream, c);

	if (n == 1)
		return 1;
	close(c->fd);
	return 2;
}

/* Stops accepting for EMFILE_PAUSE: out of descriptors or memory, the connection stays
 * queued and the socket readable, which a level-triggered poll would report at once. */
static void listener_pause(struct io_listener *l)
{
	ev_io_stop(l->loop->ev, &l->r);
	ev_timer_set(&l->timer, EMFILE_PAUSE, 0);
	ev_timer_start(l->loop->ev, &l->timer);
}

static void listener_spawn(struct io_listener *l)
{
	lem_loop *loop = l->loop;

	for (int i = 0; i < ACCEPTS_MAX && l->handler; i++) {
		struct accepted c;
		int fd = listener_accept1(l, &c);
		lua_State *co;

		if (fd < 0) {
			if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM)
				listener_pause(l);
			return;        /* EAGAIN, or a client that went: the next event */
		}
		co = lem_sched_pushthread(loop);           /* on loop->L */
		lem_anchor_push(loop, co, l->handler);
		if (accepted_push(&c, co) != 1) {      /* the client is closed */
			lem_sched_recycle(loop, co);
			lua_pop(loop->L, 1);
			listener_pause(l);
			return;
		}
		lem_sched_push(loop, co, 0, 1);        /* handler(client) */
		lua_pop(loop->L, 1);
	}
}

static void listener_readable(struct ev_loop *ev, ev_io *w, int revents)
{
	struct io_listener *l = (struct io_listener *)w;
	struct accepted c;
	int fd;

	(void)revents;
	if (l->handler) {
		listener_spawn(l);
		return;
	}
	fd = listener_accept1(l, &c);
	if (fd == -EAGAIN || fd == -EPROTO || fd == -EPERM)
		return;
	ev_io_stop(ev, &l->r);
	ev_timer_stop(ev, &l->timer);
	if (fd < 0) {
		io_wake_error(l->loop, l->S, &l->acc, -fd);     /* return nil, message */
		return;
	}
	/* return the stream (or nil, message); if stale, it is garbage and gets closed */
	io_wake(l->loop, &l->acc, accepted_push(&c, l->loop->L));
}

static void listener_timer(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct io_listener *l = lem_container_of(w, struct io_listener, timer);

	(void)revents;
	if (l->handler) {                          /* the pause after EMFILE is over */
		ev_io_start(ev, &l->r);
		return;
	}
	ev_io_stop(ev, &l->r);
	io_wake_msg(l->loop, l->S, &l->acc, "timeout");   /* return nil, 'timeout' */
}

static void listener_shut(struct io_listener *l, int wake)
{
	lem_loop *loop = l->loop;

	ev_io_stop(loop->ev, &l->r);
	ev_timer_stop(loop->ev, &l->timer);
	if (l->acc.slot) {
		if (!wake) {
			io_release(loop, &l->acc);
		} else if (l->handler) {
			lua_pushboolean(loop->L, 1);       /* autospawn returns true */
			io_wake(loop, &l->acc, 1);
		} else {
			io_wake_msg(loop, l->S, &l->acc, "closed");   /* accept: nil, 'closed' */
		}
	}
	lem_unanchor(loop, l->handler);
	l->handler = 0;
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
	if (l->path) {
		unlink(l->path);
		free(l->path);
		l->path = NULL;
	}
}

static struct io_listener *checklistener(lua_State *T)
{
	struct io_listener *l = lua_touserdata(T, 1);

	if (!l || !lua_getmetatable(T, 1) || !lua_rawequal(T, -1, METATABLE))
		luaL_typerror(T, 1, "listener");
	lua_pop(T, 1);
	if (l->fd < 0)
		luaL_argerror(T, 1, "closed listener");
	return l;
}

/* Someone waits in accept or autospawn. A stale caller calling again is forgotten (see
 * stream.c). */
static int listener_busy(struct io_listener *l)
{
	if (!l->acc.slot)
		return 0;
	if (l->acc.w.co != l->loop->running)
		return 1;
	ev_io_stop(l->loop->ev, &l->r);
	ev_timer_stop(l->loop->ev, &l->timer);
	lem_unanchor(l->loop, l->handler);
	l->handler = 0;
	io_release(l->loop, &l->acc);
	return 0;
}

/* listener:accept([timeout]) --> stream | nil, 'timeout' | nil, 'closed' | nil, 'busy'
 *                                | nil, message */
static int listener_accept(lua_State *T)
{
	struct io_listener *l = checklistener(T);
	lua_Number timeout = opttimeout(T, 2);
	struct accepted c;
	int fd;

	if (listener_busy(l)) {
		lua_pushnil(T);
		lua_pushliteral(T, "busy");
		return 2;
	}
	fd = listener_accept1(l, &c);
	if (fd >= 0)
		return accepted_push(&c, T);              /* return the stream | nil, message */
	if (fd != -EAGAIN)
		return io_error(T, -fd);                  /* return nil, message */
	if (timeout == 0) {
		lua_pushnil(T);
		lua_pushliteral(T, "timeout");
		return 2;
	}
	lem_sched_wait(T, &l->acc.w);
	io_anchor_co(l->loop, &l->acc);
	ev_io_start(l->loop->ev, &l->r);
	if (timeout > 0) {
		ev_timer_set(&l->timer, timeout, 0);
		ev_timer_start(l->loop->ev, &l->timer);
	}
	return lem_sched_yieldw(T, &l->acc.w);
}

/* listener:autospawn(handler) --> true once the listener is closed | nil, 'busy'
 * Accepts every client and runs handler(client) in a new coroutine, right from the
 * watcher: no coroutine switch per accept. */
static int listener_autospawn(lua_State *T)
{
	struct io_listener *l = checklistener(T);
	lem_loop *loop = l->loop;

	luaL_checktype(T, 2, LUA_TFUNCTION);
	if (listener_busy(l)) {
		lua_pushnil(T);
		lua_pushliteral(T, "busy");
		return 2;
	}
	lem_sched_wait(T, &l->acc.w);
	lua_pushvalue(T, 2);
	l->handler = lem_anchor(loop, T);
	io_anchor_co(loop, &l->acc);
	ev_io_start(loop->ev, &l->r);
	return lem_sched_yieldw(T, &l->acc.w);
}

/* listener:port() --> the bound TCP port */
static int listener_port(lua_State *T)
{
	struct io_listener *l = checklistener(T);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (l->kind != IO_TCP)
		luaL_argerror(T, 1, "not a TCP listener");
	if (getsockname(l->fd, (struct sockaddr *)&ss, &len) != 0)
		return io_error(T, errno);
	io_pushaddr(T, (struct sockaddr *)&ss, len);
	return 1;                                  /* the port, above the address */
}

/* listener:close() --> true | nil, 'closed' (closed already)
 * accept returns nil, 'closed'; autospawn returns true. */
static int listener_close(lua_State *T)
{
	struct io_listener *l = lua_touserdata(T, 1);

	if (!l || !lua_getmetatable(T, 1) || !lua_rawequal(T, -1, METATABLE))
		luaL_typerror(T, 1, "listener");
	if (l->fd < 0 && !l->acc.slot) {
		lua_pushnil(T);
		lua_pushliteral(T, "closed");
		return 2;
	}
	listener_shut(l, 1);
	lua_pushboolean(T, 1);
	return 1;
}

static int listener_gc(lua_State *T)
{
	listener_shut(lua_touserdata(T, 1), 0);
	return 0;
}

static int listener_tostring(lua_State *T)
{
	struct io_listener *l = lua_touserdata(T, 1);

	if (l->fd < 0)
		lua_pushfstring(T, "listener (closed): %p", (void *)l);
	else
		lua_pushfstring(T, "listener (fd %d): %p", l->fd, (void *)l);
	return 1;
}

/* ---- connecting ---- */

static void connect_writable(struct ev_loop *ev, ev_io *w, int revents);
static void connect_timeout(struct ev_loop *ev, ev_timer *w, int revents);

/* Tries s->ai_next and the addresses after it until one connects or is in progress.
 * Returns 0 (connected), 1 (in progress; s->fd set) or -errno of the last failure. */
static int connect_next(struct io_stream *s, int err)
{
	while (s->ai_next) {
		struct addrinfo *ai = s->ai_next;
		int fd, r;

		s->ai_next = ai->ai_next;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = errno;
			continue;
		}
		r = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (r == 0 || errno == EINPROGRESS || errno == EINTR) {  /* EINTR: it goes on */
			s->fd = fd;
			s->peerlen = ai->ai_addrlen <= sizeof s->peer ? ai->ai_addrlen : 0;
			memcpy(&s->peer, ai->ai_addr, s->peerlen);
			return r == 0 ? 0 : 1;
		}
		err = errno;
		close(fd);
	}
	return -err;
}

/* The connect ended: pushes the caller's results, wakes it. err 0: connected. */
static void connect_end(struct io_stream *s, int err)
{
	lem_loop *loop = s->loop;
	lua_State *L = loop->L;
	int one = 1, self = s->wdata;

	ev_io_stop(loop->ev, &s->w);
	ev_timer_stop(loop->ev, &s->timer);
	if (s->ai) {
		freeaddrinfo(s->ai);
		s->ai = s->ai_next = NULL;
	}
	s->connecting = CONNECT_NONE;
	s->wdata = 0;
	if (err) {
		if (s->fd >= 0) {
			close(s->fd);
			s->fd = -1;
		}
		lem_unanchor(loop, self);
		io_wake_error(loop, s->S, &s->rd, err);      /* return nil, message */
		return;
	}
	if (s->kind == IO_TCP)
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	io_stream_ready(s, s->fd);
	lem_anchor_push(loop, L, self);                  /* return the stream */
	lem_unanchor(loop, self);
	io_wake(loop, &s->rd, 1);
}

/* Waits for the connect in progress on s->fd, or ends. */
static void connect_go(struct io_stream *s, int r)
{
	if (r == 1) {
		ev_io_init(&s->w, connect_writable, s->fd, EV_WRITE);
		ev_io_start(s->loop->ev, &s->w);
		s->connecting = CONNECT_WAITING;
	} else {
		connect_end(s, -r);
	}
}

static void connect_writable(struct ev_loop *ev, ev_io *w, int revents)
{
	struct io_stream *s = lem_container_of(w, struct io_stream, w);
	int err = 0;
	socklen_t len = sizeof err;

	(void)revents;
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err == 0) {
		connect_end(s, 0);
		return;
	}
	ev_io_stop(ev, &s->w);
	close(s->fd);
	s->fd = -1;
	connect_go(s, connect_next(s, err));      /* the next address, if any */
}

static void connect_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	(void)ev; (void)revents;
	connect_end(io_timer_stream(w), ETIMEDOUT);  /* nil, 'timeout' */
}

static void connect_resolved(struct io_stream *s, struct resolve *r)
{
	char buf[128];

	if (s->connecting != CONNECT_RESOLVING || !s->rd.slot)
		return;                               /* timed out meanwhile */
	if (r->err) {
		int self = s->wdata;

		ev_timer_stop(s->loop->ev, &s->timer);
		s->connecting = CONNECT_NONE;
		s->wdata = 0;
		lem_unanchor(s->loop, self);
		io_wake_msg(s->loop, s->S, &s->rd, lookup_text(r->err, r->syserr, buf));
		return;
	}
	s->ai = s->ai_next = r->res;              /* the stream owns the list now */
	r->res = NULL;
	connect_go(s, connect_next(s, EADDRNOTAVAIL));
}

/* io.tcp.connect(host, port [, timeout]) --> stream | nil, message
 * Tries every address of host in turn; timeout covers the lookup and every attempt. */
static int tcp_connect(lua_State *T)
{
	lem_loop *loop = lem_current;
	const char *host = luaL_checkstring(T, 1);
	int port = checkport(T, 2);
	lua_Number timeout = opttimeout(T, 3);
	struct io_stream *s;
	struct addrinfo *res;
	int err, r;

	lua_settop(T, 3);
	s = io_stream_new(T, loop, -1, IO_TCP);   /* 4: the stream */
	err = numeric_addr(host, port, 0, &res);
	if (err != 0 && err != EAI_NONAME)
		return lookup_error(T, err, errno);
	if (err == 0) {
		s->ai = s->ai_next = res;
		r = connect_next(s, EADDRNOTAVAIL);
		if (r <= 0) {
			freeaddrinfo(s->ai);
			s->ai = s->ai_next = NULL;
			if (r < 0)
				return io_error(T, -r);       /* return nil, message */
			io_stream_ready(s, s->fd);        /* connected at once */
			setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
			return 1;                         /* return the stream */
		}
	}
	if (timeout == 0) {
		io_stream_shut(s, 0);
		return io_error(T, ETIMEDOUT);
	}
	lem_sched_wait(T, &s->rd.w);
	lua_pushvalue(T, 4);
	s->wdata = lem_anchor(loop, T);           /* the stream, while only watchers know it */
	if (err == 0) {
		io_anchor_co(loop, &s->rd);
		connect_go(s, 1);
	} else {
		s->connecting = CONNECT_RESOLVING;
		if ((r = resolve_start(T, 4, host, port, 0, &s->rd)) != 0) {
			lem_unanchor(loop, s->wdata);
			s->wdata = 0;
			s->connecting = CONNECT_NONE;
			return r;
		}
	}
	if (timeout > 0) {
		ev_timer_init(&s->timer, connect_timeout, timeout, 0);
		ev_timer_start(loop->ev, &s->timer);
	}
	return lem_sched_yieldw(T, &s->rd.w);
}

/* io.unix.connect(path [, timeout]) --> stream | nil, message
 * A Unix connect never waits: it succeeds or fails at once (with 'resource temporarily
 * unavailable' when the listener's backlog is full). timeout is accepted for symmetry. */
static int unix_connect(lua_State *T)
{
	struct sockaddr_un un;
	struct io_stream *s;
	int fd;

	fill_unix(T, 1, &un);
	opttimeout(T, 2);
	s = io_stream_new(T, lem_current, -1, IO_UNIX);   /* before the descriptor: no leak */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return io_error(T, errno);
	if (connect(fd, (struct sockaddr *)&un, sizeof un) != 0) {
		int err = errno;

		close(fd);
		return io_error(T, err);              /* return nil, message */
	}
	io_stream_ready(s, fd);
	memcpy(&s->peer.un, &un, sizeof un);
	s->peerlen = sizeof un;
	return 1;                                 /* return the stream */
}

/* Sets io.tcp and io.unix in the module table on top of L. */
void io_socket_open(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "accept", listener_accept },
		{ "autospawn", listener_autospawn },
		{ "port", listener_port },
		{ "close", listener_close },
		{ NULL, NULL }
	};
	static const luaL_Reg tcp[] = {
		{ "listen", tcp_listen },
		{ "connect", tcp_connect },
		{ NULL, NULL }
	};
	static const luaL_Reg unx[] = {
		{ "listen", unix_listen },
		{ "connect", unix_connect },
		{ NULL, NULL }
	};

	io_class(L, IO_LISTENER_MT, listener_gc, listener_tostring, "listener", methods);

	lua_newtable(L);
	luaL_register(L, NULL, tcp);
	lua_setfield(L, -2, "tcp");
	lua_newtable(L);
	luaL_register(L, NULL, unx);
	lua_setfield(L, -2, "unix");
}
