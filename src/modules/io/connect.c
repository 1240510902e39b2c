/* connect.c: lem.io's connects: io.tcp.connect, which tries every address of a name in
 * turn, each attempt non-blocking, and io.unix.connect. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include "io.h"

#define CONNECT_PEER sizeof(struct sockaddr_in6)   /* a TCP stream's room for its peer */

/* A TCP connect in progress, owned by its stream (s->conn) from io.tcp.connect until it
 * ends. Nobody else can use the stream meanwhile: it is handed out only at the end. */
struct io_connect {
	ev_io w;                  /* first: writable, the attempt on fd is over */
	ev_timer timer;           /* the timeout of the whole connect, lookup included */
	struct io_stream *s;
	int fd;                   /* the attempt in progress, -1 between attempts: the
	                             stream's (and counted open) only once connected */
	struct io_wait caller;    /* the caller of io.tcp.connect; its value: the stream */
	struct addrinfo *ai;      /* the addresses, NULL while they are looked up */
	struct addrinfo *next;    /* the next to try */
};

static void connect_writable(struct ev_loop *ev, ev_io *w, int revents);
static void connect_timeout(struct ev_loop *ev, ev_timer *w, int revents);

static struct io_connect *connect_new(struct io_stream *s)
{
	struct io_connect *c = malloc(sizeof *c);

	if (!c)
		return NULL;
	memset(c, 0, sizeof *c);
	c->s = s;
	c->fd = -1;
	ev_init(&c->w, connect_writable);
	ev_init(&c->timer, connect_timeout);
	io_wait_init(&c->caller, s->st, &c->w, &c->timer);
	s->conn = c;
	return c;
}

void io_connect_free(struct io_stream *s)
{
	struct io_connect *c = s->conn;

	io_wait_free(s->loop, &c->caller, NULL);   /* stops the watchers */
	if (c->fd >= 0)
		close(c->fd);
	if (c->ai)
		freeaddrinfo(c->ai);
	free(c);
	s->conn = NULL;
}

/* Tries *next and the addresses after it until one connects or is in progress (*fdp,
 * s->peer set), err being the failure so far. Returns 0 (connected), 1 (in progress) or
 * the last failure, -errno. */
static int connect_next(struct io_stream *s, struct addrinfo **next, int err, int *fdp)
{
	while (*next) {
		struct addrinfo *ai = *next;
		int fd, r;

		*next = ai->ai_next;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		r = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (r == 0 || errno == EINPROGRESS || errno == EINTR) {  /* EINTR: it goes on */
			*fdp = fd;
			s->peerlen = ai->ai_addrlen <= CONNECT_PEER ? ai->ai_addrlen : 0;
			memcpy(&s->peer, ai->ai_addr, s->peerlen);
			return r == 0 ? 0 : 1;
		}
		err = -errno;
		close(fd);
	}
	return err;
}

/* fd is connected: s is a stream like any other from now on. */
static void connect_ready(struct io_stream *s, int fd)
{
	int one = 1;

	/* Requests and answers are small writes: send them at once, not after an ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	io_stream_ready(s, fd);
}

/* The connect is over, err 0: connected. Its caller returns the stream or nil, message. */
static void connect_end(struct io_stream *s, int err)
{
	struct io_connect *c = s->conn;
	lem_loop *loop = s->loop;
	lua_State *L = lem_state(loop);

	if (err) {
		io_wake_error(loop, &c->caller, L, err);      /* return nil, message */
	} else {
		connect_ready(s, c->fd);
		c->fd = -1;                                   /* not closed with c */
		lem_anchor_push(loop, L, c->caller.val_slot);       /* return the stream */
		io_wake(loop, &c->caller, L, 1);
	}
	io_connect_free(s);                               /* closes a failed attempt */
}

/* Waits for the attempt in progress on c->fd (r 1), or ends with r. */
static void connect_go(struct io_stream *s, int r)
{
	struct io_connect *c = s->conn;

	if (r != 1) {
		connect_end(s, r);
		return;
	}
	ev_io_set(&c->w, c->fd, EV_WRITE);
	ev_io_start(lem_ev(s->loop), &c->w);
}

static void connect_writable(struct ev_loop *ev, ev_io *w, int revents)
{
	struct io_connect *c = (struct io_connect *)w;
	struct io_stream *s = c->s;
	int err = 0;
	socklen_t len = sizeof err;

	(void)revents;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err == 0) {
		connect_end(s, 0);
		return;
	}
	ev_io_stop(ev, &c->w);
	close(c->fd);
	c->fd = -1;
	connect_go(s, connect_next(s, &c->next, -err, &c->fd));   /* the next address, if any */
}

static void connect_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct io_connect *c = io_container_of(w, struct io_connect, timer);

	(void)ev; (void)revents;
	connect_end(c->s, -ETIMEDOUT);                      /* nil, 'timeout' */
}

/* The lookup of io.tcp.connect ended; the stream is on top of L. */
static void connect_resolved(lua_State *L, void *obj, struct io_lookup *r)
{
	struct io_stream *s = obj;
	struct io_connect *c = s->conn;

	(void)L;
	if (!c)
		return;                               /* timed out meanwhile */
	if (!c->caller.w.co) {                    /* its suspension raised: nobody waits */
		io_connect_free(s);
		return;
	}
	if (r->err) {
		connect_end(s, r->err);
		return;
	}
	c->ai = c->next = r->res;                 /* the connect owns the list now */
	r->res = NULL;
	connect_go(s, connect_next(s, &c->next, -EADDRNOTAVAIL, &c->fd));
}

/* io.tcp.connect(host, port [, timeout]) --> stream | nil, message
 * Tries every address of host in turn; timeout covers the lookup and every attempt. */
int io_connect_tcp(lua_State *T)
{
	lem_loop *loop = lem_loop_of(T);
	const char *host = io_checkhost(T, 1);
	int port = io_checkport(T, 2);
	lua_Number timeout = io_opttimeout(T, 3);
	struct addrinfo *res = NULL, *next = NULL;
	struct io_stream *s;
	struct io_connect *c;
	int err, r, fd = -1;

	lua_settop(T, 3);
	s = io_stream_new(T, loop, -1, IO_TCP, CONNECT_PEER);   /* 4: the stream */
	err = io_numeric_addr(host, port, 0, &res);
	if (err != 0 && err != EAI_NONAME)
		return io_error(T, io_eai(err, errno));
	if (err == 0) {
		next = res;
		r = connect_next(s, &next, -EADDRNOTAVAIL, &fd);
		if (r <= 0) {
			freeaddrinfo(res);
			if (r < 0)
				return io_error(T, r);        /* return nil, message */
			connect_ready(s, fd);             /* connected at once */
			return 1;                         /* return the stream */
		}
	}
	/* It waits: for the attempt in progress (res), or for a lookup. */
	if (timeout == 0 || !(c = connect_new(s))) {
		if (res)
			freeaddrinfo(res);
		if (fd >= 0)
			close(fd);                        /* never the stream's: not counted */
		return io_error(T, timeout == 0 ? -ETIMEDOUT : -ENOMEM);
	}
	c->ai = res;
	c->next = next;
	c->fd = fd;
	if (!res && (err = io_lookup_start(T, 4, host, port, 0, connect_resolved)) != 0) {
		io_stream_shut(s, NULL);
		return io_error(T, err);
	}
	lua_pushvalue(T, 4);
	r = io_suspend(loop, T, &c->caller, 1);   /* the stream stays alive while it waits */
	if (res)
		connect_go(s, 1);
	if (timeout > 0) {
		ev_timer_set(&c->timer, timeout, 0);
		ev_timer_start(lem_ev(loop), &c->timer);
	}
	return r;
}

/* io.unix.connect(path [, timeout]) --> stream | nil, message
 * A Unix connect never waits: it succeeds or fails at once (with 'resource temporarily
 * unavailable' when the listener's backlog is full). timeout is accepted for symmetry. */
int io_connect_unix(lua_State *T)
{
	struct sockaddr_un un;
	struct io_stream *s;
	int fd;

	io_checkunix(T, 1, &un);
	io_opttimeout(T, 2);
	s = io_stream_new(T, lem_loop_of(T), -1, IO_UNIX, sizeof un);   /* before the descriptor: no leak */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return io_error(T, -errno);
	if (connect(fd, (struct sockaddr *)&un, sizeof un) != 0) {
		int err = -errno;

		close(fd);
		return io_error(T, err);              /* return nil, message */
	}
	io_stream_ready(s, fd);
	memcpy(&s->peer.un, &un, sizeof un);
	s->peerlen = sizeof un;
	return 1;                                 /* return the stream */
}
