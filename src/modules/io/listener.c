/* listener.c: lem.io's listeners: binding (io.tcp.listen, io.unix.listen), accept, and
 * autospawn, which starts a coroutine per client. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include "io.h"

#define ACCEPTS_MAX   64       /* accept() calls per event: other watchers' turn then */
#define EMFILE_PAUSE  0.1      /* seconds autospawn stops accepting when out of descriptors */

static void listener_readable(struct ev_loop *ev, ev_io *w, int revents);
static void listener_timer(struct ev_loop *ev, ev_timer *w, int revents);

/* ---- binding ---- */

/* [-0, +1, m] A new listener, without a socket yet. */
static struct io_listener *listener_new(lua_State *T, int kind, int backlog)
{
	struct io_listener *l = lua_newuserdata(T, sizeof *l);

	memset(l, 0, sizeof *l);
	l->type = &io_listener_type;
	l->loop = lem_loop_of(T);
	l->st = io_state(T);
	l->fd = -1;
	l->kind = (unsigned char)kind;
	l->backlog = backlog;
	ev_init(&l->r, listener_readable);
	ev_init(&l->timer, listener_timer);
	io_wait_init(&l->caller, l->st, &l->r, &l->timer);
	if ((l->next = l->st->listeners))
		l->next->pprev = &l->next;
	l->pprev = &l->st->listeners;
	l->st->listeners = l;
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
	err = -errno;
	close(fd);
	return err;
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

static int listener_bind_any(struct io_listener *l, int port)
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

/* The lookup of io.tcp.listen ended; the listener is on top of L. */
static void listener_resolved(lua_State *L, void *obj, struct io_lookup *r)
{
	struct io_listener *l = obj;
	int err;

	if (!l->caller.w.co)
		return;                          /* its suspension raised: nobody waits */
	err = r->err ? r->err : listener_bind_list(l, r->res);
	if (err) {
		io_wake_error(l->loop, &l->caller, L, err);   /* return nil, message */
		return;
	}
	lua_pushvalue(L, -1);                /* return the listener */
	io_wake(l->loop, &l->caller, L, 1);
}

/* io.tcp.listen(host, port [, backlog]) --> listener | nil, message
 * host '*': every address, IPv4 and IPv6. With ctx (io.tls.listen), every client
 * accepted speaks TLS. */
int io_listen_tcp_ctx(lua_State *T, struct io_tls_ctx *ctx)
{
	const char *host = io_checkhost(T, 1);
	int port = io_checkport(T, 2);
	int backlog = (int)luaL_optinteger(T, 3, SOMAXCONN);
	struct io_listener *l;
	struct addrinfo *res;
	int err;

	if (backlog <= 0)
		luaL_argerror(T, 3, "backlog must be positive");
	lua_settop(T, 3);
	l = listener_new(T, IO_TCP, backlog);   /* 4 */
	if (ctx)
		l->tls = io_tls_ctx_ref(ctx);
	if (strcmp(host, "*") == 0) {
		err = listener_bind_any(l, port);
	} else if ((err = io_numeric_addr(host, port, 1, &res)) == 0) {
		err = listener_bind_list(l, res);
		freeaddrinfo(res);
	} else if (err == EAI_NONAME) {          /* a name: look it up on the pool */
		if ((err = io_lookup_start(T, 4, host, port, 1, listener_resolved)) != 0)
			return io_error(T, err);
		l->spawning = 0;
		return io_suspend(l->loop, T, &l->caller, 0);
	} else {
		err = io_eai(err, errno);
	}
	if (err)
		return io_error(T, err);             /* return nil, message */
	return 1;                                /* return the listener */
}

int io_listen_tcp(lua_State *T)
{
	return io_listen_tcp_ctx(T, NULL);
}

/* io.unix.listen(path [, backlog]) --> listener | nil, message
 * The socket file is removed when the listener closes. */
int io_listen_unix(lua_State *T)
{
	struct sockaddr_un un;
	int backlog = (int)luaL_optinteger(T, 2, SOMAXCONN);
	struct io_listener *l;
	char *path;
	int err;

	io_checkunix(T, 1, &un);
	if (backlog <= 0)
		luaL_argerror(T, 2, "backlog must be positive");
	l = listener_new(T, IO_UNIX, backlog);
	/* Copied before the bind: a listener that made the file must be able to remove it. */
	if (!(path = strdup(un.sun_path)))
		return io_error(T, -ENOMEM);
	if ((err = listener_bind(l, (struct sockaddr *)&un, sizeof un, 0)) != 0) {
		free(path);
		return io_error(T, err);
	}
	l->path = path;
	return 1;
}

/* ---- accepting ---- */

/* A client just accepted: its descriptor and address, until its stream owns them. */
struct listener_client {
	struct io_listener *l;
	int fd;                   /* -1 once its stream owns it */
	socklen_t len;
	union io_addr addr;
};

/* Accepts into c. Returns the new descriptor or -errno; -EAGAIN when nobody is waiting. */
static int listener_accept1(struct io_listener *l, struct listener_client *c)
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
static int listener_push_stream(lua_State *S, void *ud)
{
	struct listener_client *c = ud;
	struct io_stream *s = io_stream_new(S, c->l->loop, c->fd, c->l->kind,
	                                    c->len);

	c->fd = -1;
	memcpy(&s->peer, &c->addr, c->len);
	s->peerlen = c->len;
	if (c->l->tls && io_tls_accepted(s, c->l->tls) < 0)
		luaL_error(S, "not enough memory");   /* the stream closes at its __gc */
	return 1;
}

/* Pushes on `to` the accepted client's stream, made protected (callbacks may call this);
 * or, out of memory, closes the client and pushes nil, message. Returns 1 or 2. */
static int listener_push_client(struct listener_client *c, lua_State *to)
{
	if (lem_protect(c->l->loop, to, listener_push_stream, c) == 1)
		return 1;
	if (c->fd >= 0)
		close(c->fd);
	return 2;
}

/* Stops accepting for EMFILE_PAUSE: out of descriptors or memory, the connection stays
 * queued and the socket readable, which a level-triggered poll would report at once. */
static void listener_pause(struct io_listener *l)
{
	struct ev_loop *ev = lem_ev(l->loop);

	ev_io_stop(ev, &l->r);
	ev_timer_set(&l->timer, EMFILE_PAUSE, 0);
	ev_timer_start(ev, &l->timer);
}

/* Out of descriptors or memory: a resource another coroutine may give back. */
static int listener_starved(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

/* accept's caller, starved (err), gets its error only after EMFILE_PAUSE (or its own
 * timeout, if shorter): returned at once, a loop that retries never yields, so no
 * other coroutine runs to close a descriptor and the loop is stuck for good. */
static void listener_starve(struct io_listener *l, int err, lua_Number timeout)
{
	struct ev_loop *ev = lem_ev(l->loop);

	l->err = err;
	ev_io_stop(ev, &l->r);
	ev_timer_stop(ev, &l->timer);
	ev_timer_set(&l->timer, timeout > 0 && timeout < EMFILE_PAUSE ? timeout : EMFILE_PAUSE, 0);
	ev_timer_start(ev, &l->timer);
}

/* handler(client), on top of L, in a new coroutine: spawned from S, under lem_protect,
 * so that running out of memory for it (its coroutine, the runqueue's room) is an error
 * here, not an abort. Moving values allocates nothing. */
static int listener_spawn_client(lua_State *S, void *ud)
{
	struct io_listener *l = ud;

	lua_xmove(lem_state(l->loop), S, 2);
	lem_spawn(l->loop, S, 1);
	return 0;
}

/* Autospawn: runs handler(client) for each client accepted, right from the watcher. */
static void listener_spawn(struct io_listener *l)
{
	lem_loop *loop = l->loop;
	lua_State *L = lem_state(loop);

	for (int i = 0; i < ACCEPTS_MAX && l->caller.w.co; i++) {
		struct listener_client c;
		struct io_stream *s;
		int fd = listener_accept1(l, &c);

		if (fd < 0) {
			if (listener_starved(fd))
				listener_pause(l);
			return;        /* EAGAIN, or a client that went: the next event */
		}
		lem_anchor_push(loop, L, l->caller.val_slot);    /* the handler */
		if (listener_push_client(&c, L) != 1) {          /* the client is closed */
			lua_pop(L, 3);
			listener_pause(l);
			return;
		}
		s = lua_touserdata(L, -1);
		if (lem_protect(loop, L, listener_spawn_client, l) != 0) {
			lua_pop(L, 2);                               /* nil, message */
			io_stream_shut(s, NULL);   /* the client is told at once, not at its __gc */
			listener_pause(l);
			return;
		}
	}
}

static void listener_readable(struct ev_loop *ev, ev_io *w, int revents)
{
	struct io_listener *l = (struct io_listener *)w;
	lua_State *L = lem_state(l->loop);
	struct listener_client c;
	int fd;

	(void)revents;
	if (l->spawning) {
		listener_spawn(l);
		return;
	}
	fd = listener_accept1(l, &c);
	if (fd == -EAGAIN || fd == -EPROTO || fd == -EPERM)
		return;
	if (listener_starved(fd)) {
		lua_Number left = ev_is_active(&l->timer) ? ev_timer_remaining(ev, &l->timer) : -1;

		listener_starve(l, fd, left < 0 || left > 1e-6 ? left : 1e-6);
		return;
	}
	if (fd < 0) {
		io_wake_error(l->loop, &l->caller, L, fd);   /* return nil, message */
		return;
	}
	/* return the stream (or nil, message); if stale, it is garbage and gets closed */
	io_wake(l->loop, &l->caller, L, listener_push_client(&c, L));
}

static void listener_timer(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct io_listener *l = io_container_of(w, struct io_listener, timer);

	(void)revents;
	if (l->spawning) {                         /* the pause after EMFILE is over */
		ev_io_start(ev, &l->r);
		return;
	}
	io_wake_error(l->loop, &l->caller, lem_state(l->loop), l->err ? l->err : -ETIMEDOUT);
}

/* Closes the listener. The caller of autospawn returns true, that of accept nil, 'closed'
 * (made on from); from NULL (__gc) forgets it. */
static void listener_shut(void *self, lua_State *from)
{
	struct io_listener *l = self;

	if (l->pprev) {
		if ((*l->pprev = l->next))
			l->next->pprev = l->pprev;
		l->pprev = NULL;
	}
	if (from && l->caller.w.co && l->spawning) {
		lua_pushboolean(from, 1);
		io_wake(l->loop, &l->caller, from, 1);
	}
	io_wait_free(l->loop, &l->caller, from);
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
	if (l->tls) {
		io_tls_ctx_free(l->tls);
		l->tls = NULL;
	}
	if (l->path) {
		unlink(l->path);
		free(l->path);
		l->path = NULL;
	}
}

/* The shutdown began: every listener closes, as listener:close() would; the connections
 * that the kernel queued and nobody accepted are reset, and new ones are refused. */
void io_listener_shutdown(struct io_state *st, lua_State *from)
{
	while (st->listeners)
		listener_shut(st->listeners, from);
}

/* ---- methods ---- */

/* [-0, +0, v] self, an open listener */
static struct io_listener *listener_check(lua_State *T)
{
	return io_check_open(T, &io_listener_type, offsetof(struct io_listener, fd));
}

/* listener:accept([timeout]) --> stream | nil, 'timeout' | nil, 'closed' | nil, 'busy'
 *                                | nil, message */
static int listener_accept(lua_State *T)
{
	struct io_listener *l = listener_check(T);
	lua_Number timeout = io_opttimeout(T, 2);
	struct listener_client c;
	int fd, r;

	if (io_busy(l->loop, &l->caller))
		return io_error(T, -EBUSY);               /* return nil, 'busy' */
	if (l->st->shutdown) {                        /* one made in the shutdown */
		listener_shut(l, T);
		return io_error(T, -EPIPE);               /* return nil, 'closed' */
	}
	fd = listener_accept1(l, &c);
	if (fd >= 0)
		return listener_push_client(&c, T);       /* return the stream | nil, message */
	if (fd != -EAGAIN && (timeout == 0 || !listener_starved(fd)))
		return io_error(T, fd);                   /* return nil, message */
	if (timeout == 0)
		return io_error(T, -ETIMEDOUT);           /* return nil, 'timeout' */
	l->spawning = 0;
	l->err = 0;
	r = io_suspend(l->loop, T, &l->caller, 0);
	if (fd != -EAGAIN) {
		listener_starve(l, fd, timeout);          /* nil, message after the pause */
		return r;
	}
	ev_io_start(lem_ev(l->loop), &l->r);
	if (timeout > 0) {
		ev_timer_set(&l->timer, timeout, 0);
		ev_timer_start(lem_ev(l->loop), &l->timer);
	}
	return r;
}

/* listener:autospawn(handler) --> true once the listener is closed | nil, 'busy'
 * Accepts every client and runs handler(client) in a new coroutine, right from the
 * watcher: no coroutine switch per accept. */
static int listener_autospawn(lua_State *T)
{
	struct io_listener *l = listener_check(T);
	int r;

	luaL_checktype(T, 2, LUA_TFUNCTION);
	if (io_busy(l->loop, &l->caller))
		return io_error(T, -EBUSY);               /* return nil, 'busy' */
	if (l->st->shutdown) {                        /* one made in the shutdown */
		listener_shut(l, T);
		lua_pushboolean(T, 1);
		return 1;                                 /* return true */
	}
	lua_settop(T, 2);                             /* the handler: kept while it waits */
	l->spawning = 1;
	r = io_suspend(l->loop, T, &l->caller, 1);
	ev_io_start(lem_ev(l->loop), &l->r);
	return r;
}

/* listener:port() --> the bound TCP port */
static int listener_port(lua_State *T)
{
	struct io_listener *l = listener_check(T);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (l->kind != IO_TCP)
		luaL_argerror(T, 1, "not a TCP listener");
	if (getsockname(l->fd, (struct sockaddr *)&ss, &len) != 0)
		return io_error(T, -errno);
	io_pushaddr(T, (struct sockaddr *)&ss, len);
	return 1;                                  /* the port, above the address */
}

/* listener:close() --> true | nil, 'closed' (closed already)
 * accept returns nil, 'closed'; autospawn returns true. */
static int listener_close(lua_State *T)
{
	struct io_listener *l = io_check(T, &io_listener_type);

	if (l->fd < 0 && !l->caller.w.co)
		return io_error(T, -EPIPE);            /* return nil, 'closed' */
	listener_shut(l, T);
	lua_pushboolean(T, 1);
	return 1;
}

void io_listener_open(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "accept", listener_accept },
		{ "autospawn", listener_autospawn },
		{ "port", listener_port },
		{ "close", listener_close },
		{ NULL, NULL }
	};

	io_class(L, IO_LISTENER_MT, "listener", listener_shut, offsetof(struct io_listener, fd), methods);
}
