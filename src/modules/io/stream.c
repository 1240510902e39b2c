/* stream.c: lem.io streams: buffered reads, writes that suspend until the kernel took
 * everything, close, and the standard descriptors. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "io.h"

#define BUF_INIT      4096     /* first read buffer: a request line and headers fit */
#define BUF_MIN_ROOM  1024     /* less room than this: compact or grow before a read */
#define BUF_KEEP      65536    /* an emptied buffer larger than this goes back to malloc */
#define READS_MAX     64       /* read() calls per read or per event: others' turn then */
#define IOV_MAX_BATCH 64       /* write(...) arguments per writev */

#define METATABLE lua_upvalueindex(1)   /* upvalue of the methods */

static struct io_stream *timer_stream(ev_timer *w)
{
	return (struct io_stream *)((char *)w - offsetof(struct io_stream, timer));
}

static void die(const char *what)
{
	fprintf(stderr, "lem: out of memory (%s)\n", what);
	abort();
}

/* ---- the read buffer ----
 * Data sits in buf[start, end). A read() goes to the free room after end; the data moves
 * to the front only when that room is short and the data is less than half the buffer,
 * else the buffer doubles: a '*a' read of n bytes costs O(n) copies in all. */

/* One read() into the buffer. Returns the bytes read, 0 at EOF or a negative errno; sets
 * eof, err and drained. */
static ssize_t stream_fill(struct io_stream *s)
{
	size_t room;
	ssize_t n;

	if (s->start == s->end)
		s->start = s->end = s->scan = 0;
	room = s->cap - s->end;
	if (room < BUF_MIN_ROOM) {
		size_t len = s->end - s->start;

		if (s->start > 0 && len < s->cap / 2) {
			memmove(s->buf, s->buf + s->start, len);
			s->scan -= s->start;
			s->start = 0;
			s->end = len;
		} else {
			size_t cap = s->cap ? 2 * s->cap : BUF_INIT;
			char *p = realloc(s->buf, cap);

			if (!p)
				die("read buffer");
			s->buf = p;
			s->cap = cap;
		}
		room = s->cap - s->end;
	}
	do
		n = read(s->fd, s->buf + s->end, room);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		s->end += n;
		/* A short read emptied the socket (as far as we can tell): the next read waits
		 * for the watcher instead of trying a read() that would say EAGAIN. If data came
		 * meanwhile, the (level-triggered) poll reports it at once. */
		s->drained = (size_t)n < room;
		return n;
	}
	if (n == 0) {
		s->eof = 1;
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		s->drained = 1;
		return -EAGAIN;
	}
	s->err = errno;
	return -errno;
}

/* Pushes on T the answer to the pending read (rfmt, rcount) when the buffer, EOF or an
 * error decide it, and sets take: the buffer's start once that answer is consumed.
 * Returns the number of values pushed, or 0 while more data is needed. */
static int stream_take(struct io_stream *s, lua_State *T)
{
	const char *p = s->buf + s->start;
	size_t avail = s->end - s->start;

	switch (s->rfmt) {
	case IO_LINE: {
		const char *nl = s->end > s->scan ? memchr(s->buf + s->scan, '\n', s->end - s->scan)
		                                  : NULL;
		if (nl) {
			size_t len = nl - p;

			s->take = nl - s->buf + 1;
			if (len > 0 && p[len - 1] == '\r')
				len--;
			lua_pushlstring(T, p, len);        /* return line */
			return 1;
		}
		s->scan = s->end;                      /* searched already */
		if (avail > 0 && (s->eof || s->err)) {
			s->take = s->end;
			lua_pushlstring(T, p, avail);      /* return the unterminated last line */
			return 1;
		}
		break;
	}
	case IO_ALL:
		if (s->eof) {
			s->take = s->end;
			lua_pushlstring(T, p, avail);      /* return everything, maybe "" */
			return 1;
		}
		break;
	case IO_COUNT:
		if (avail >= s->rcount || (avail > 0 && (s->eof || s->err))) {
			size_t n = avail < s->rcount ? avail : s->rcount;

			s->take = s->start + n;
			lua_pushlstring(T, p, n);          /* return n bytes, fewer at the end */
			return 1;
		}
		break;
	}
	s->take = s->start;
	if (s->err) {                              /* return nil, message, once */
		int err = s->err;

		s->err = 0;
		s->eof = 1;                            /* nil, 'closed' from now on */
		return io_error(T, err);
	}
	if (s->eof) {
		lua_pushnil(T);
		lua_pushliteral(T, "closed");          /* return nil, 'closed' */
		return 2;
	}
	return 0;
}

static void stream_consume(struct io_stream *s)
{
	s->start = s->take;
	if (s->scan < s->start)
		s->scan = s->start;
	if (s->start == s->end) {
		s->start = s->end = s->scan = 0;
		if (s->cap > BUF_KEEP) {               /* after a big read: memory stays bounded */
			free(s->buf);
			s->buf = NULL;
			s->cap = 0;
		}
	}
}

/* ---- watchers ---- */

static void stream_readable(struct ev_loop *ev, ev_io *w, int revents)
{
	struct io_stream *s = (struct io_stream *)w;
	lua_State *L = s->loop->L;
	int n = 0;

	(void)revents;
	s->drained = 0;
	for (int i = 0; i < READS_MAX; i++) {
		ssize_t r = stream_fill(s);

		if ((n = stream_take(s, L)) != 0)
			break;
		if (r == -EAGAIN || s->drained)
			return;        /* level-triggered: we are called again when more comes */
	}
	if (n == 0)
		return;            /* a big read goes on in the next loop iteration */
	ev_io_stop(ev, &s->r);
	ev_timer_stop(ev, &s->timer);
	/* A stale reader (its lua_yield raised) gets nothing: the data stays for the next. */
	if (io_wake(s->loop, &s->rd, n))
		stream_consume(s);
}

static void stream_writable(struct ev_loop *ev, ev_io *w, int revents)
{
	struct io_stream *s = (struct io_stream *)((char *)w - offsetof(struct io_stream, w));
	lem_loop *loop = s->loop;
	int err = 0;

	(void)revents;
	while (s->wlen > 0) {
		ssize_t n = write(s->fd, s->wp, s->wlen);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;    /* the kernel's buffer is full again: wait on */
			err = errno;
			break;
		}
		s->wp += n;
		s->wlen -= n;
	}
	ev_io_stop(ev, &s->w);
	lem_unanchor(loop, s->wdata);
	s->wdata = 0;
	s->wp = NULL;
	s->wlen = 0;
	if (err) {
		io_wake(loop, &s->wr, io_error(loop->L, err));   /* return nil, message */
	} else {
		lua_pushboolean(loop->L, 1);                     /* return true */
		io_wake(loop, &s->wr, 1);
	}
}

static void stream_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct io_stream *s = timer_stream(w);
	lua_State *L = s->loop->L;

	(void)revents;
	ev_io_stop(ev, &s->r);
	lua_pushnil(L);
	lua_pushliteral(L, "timeout");                  /* return nil, 'timeout' */
	io_wake(s->loop, &s->rd, 2);
}

/* ---- making and closing ---- */

/* Pushes a new stream on T. fd may be -1 until a connect gives it one (io_stream_ready). */
struct io_stream *io_stream_new(lua_State *T, lem_loop *loop, int fd, int kind)
{
	struct io_stream *s = lua_newuserdata(T, sizeof *s);

	memset(s, 0, sizeof *s);
	s->loop = loop;
	s->kind = (unsigned char)kind;
	s->stdflags = -1;
	io_stream_ready(s, fd);
	luaL_getmetatable(T, IO_STREAM_MT);
	lua_setmetatable(T, -2);
	return s;
}

void io_stream_ready(struct io_stream *s, int fd)
{
	s->fd = fd;
	ev_io_init(&s->r, stream_readable, fd, EV_READ);
	ev_io_init(&s->w, stream_writable, fd, EV_WRITE);
	ev_init(&s->timer, stream_timeout);
}

/* The standard descriptors are shared with the process (and often with the shell): they
 * go non-blocking only once lem.io uses them, and get their flags back at close. */
static void std_prepare(struct io_stream *s)
{
	int flags;

	if (s->stdflags >= 0)
		return;
	flags = fcntl(s->fd, F_GETFL);
	if (flags < 0)
		return;            /* not open: read and write report EBADF */
	s->stdflags = flags;
	if (!(flags & O_NONBLOCK))
		fcntl(s->fd, F_SETFL, flags | O_NONBLOCK);
}

/* Stops the watchers and releases the descriptor and the buffer. wake: the suspended
 * reader and writer return nil, 'closed' (stream:close()); else they are forgotten
 * (__gc: nobody can be waiting on an unreachable stream but a stale suspension). */
void io_stream_shut(struct io_stream *s, int wake)
{
	lem_loop *loop = s->loop;

	ev_io_stop(loop->ev, &s->r);
	ev_io_stop(loop->ev, &s->w);
	ev_timer_stop(loop->ev, &s->timer);
	if (s->rd.slot) {
		if (wake) {
			lua_pushnil(loop->L);
			lua_pushliteral(loop->L, "closed");
			io_wake(loop, &s->rd, 2);
		} else {
			io_release(loop, &s->rd);
		}
	}
	if (s->wr.slot) {
		if (wake) {
			lua_pushnil(loop->L);
			lua_pushliteral(loop->L, "closed");
			io_wake(loop, &s->wr, 2);
		} else {
			io_release(loop, &s->wr);
		}
	}
	lem_unanchor(loop, s->wdata);
	s->wdata = 0;
	s->wp = NULL;
	s->wlen = 0;
	if (s->ai) {
		freeaddrinfo(s->ai);
		s->ai = s->ai_next = NULL;
	}
	if (s->fd >= 0) {
		if (s->kind != IO_STD)
			close(s->fd);
		else if (s->stdflags >= 0 && !(s->stdflags & O_NONBLOCK))
			fcntl(s->fd, F_SETFL, s->stdflags);
		s->fd = -1;
	}
	s->connecting = 0;
	free(s->buf);
	s->buf = NULL;
	s->start = s->end = s->scan = s->cap = 0;
}

/* ---- methods ---- */

static struct io_stream *checkstream(lua_State *T)
{
	struct io_stream *s = lua_touserdata(T, 1);

	if (!s || !lua_getmetatable(T, 1) || !lua_rawequal(T, -1, METATABLE))
		luaL_typerror(T, 1, "stream");
	lua_pop(T, 1);
	if (s->fd < 0)
		luaL_argerror(T, 1, "closed stream");
	return s;
}

/* A caller that suspended in lua_yield, which raised (PUC Lua 5.1, across a metamethod),
 * is still registered. If that same coroutine calls again, it is plainly not waiting any
 * more: forget it. Returns whether someone else is waiting (busy). */
static int stream_busy(struct io_stream *s, struct io_wait *iw, ev_io *io)
{
	if (!iw->slot)
		return 0;
	if (iw->w.co != s->loop->running)
		return 1;
	ev_io_stop(s->loop->ev, io);
	if (iw == &s->rd)
		ev_timer_stop(s->loop->ev, &s->timer);
	io_release(s->loop, iw);
	return 0;
}

/* stream:read([fmt [, timeout]]) --> data | nil, 'closed' | nil, 'timeout' | nil, 'busy'
 *                                    | nil, message
 * fmt: '*l' a line without its end (default), '*a' all until EOF, n: n bytes. */
static int stream_read(lua_State *T)
{
	struct io_stream *s = checkstream(T);
	lem_loop *loop = s->loop;
	lua_Number timeout = -1;
	int fmt = IO_LINE, n;
	size_t count = 0;

	if (lua_type(T, 2) == LUA_TNUMBER) {
		lua_Number c = lua_tonumber(T, 2);

		if (!(c >= 0 && c <= (lua_Number)((size_t)-1 >> 1)) || c != (lua_Number)(size_t)c)
			luaL_argerror(T, 2, "byte count must be a whole number >= 0");
		fmt = IO_COUNT;
		count = (size_t)c;
	} else if (!lua_isnoneornil(T, 2)) {
		const char *f = luaL_checkstring(T, 2);

		if (f[0] == '*')
			f++;
		if (f[0] == 'l' && f[1] == '\0')
			fmt = IO_LINE;
		else if (f[0] == 'a' && f[1] == '\0')
			fmt = IO_ALL;
		else
			luaL_argerror(T, 2, "invalid format (expected '*l', '*a' or a number)");
	}
	if (!lua_isnoneornil(T, 3)) {
		timeout = luaL_checknumber(T, 3);
		if (timeout != timeout)
			luaL_argerror(T, 3, "timeout is not a number");
		if (timeout < 0)
			timeout = 0;                       /* as documented: try once */
	}
	if (stream_busy(s, &s->rd, &s->r)) {
		lua_pushnil(T);
		lua_pushliteral(T, "busy");            /* return nil, 'busy' */
		return 2;
	}
	if (fmt == IO_COUNT && count == 0) {
		lua_pushliteral(T, "");
		return 1;
	}
	if (s->kind == IO_STD)
		std_prepare(s);
	s->rfmt = fmt;
	s->rcount = count;
	for (int i = 0; ; i++) {
		if ((n = stream_take(s, T)) != 0) {
			stream_consume(s);
			return n;
		}
		if (s->drained || i == READS_MAX)
			break;
		stream_fill(s);
	}
	if (timeout == 0) {
		lua_pushnil(T);
		lua_pushliteral(T, "timeout");         /* return nil, 'timeout' at once */
		return 2;
	}
	lem_wait(T, &s->rd.w);
	io_anchor_co(loop, &s->rd);
	ev_io_start(loop->ev, &s->r);
	if (timeout > 0) {
		ev_timer_set(&s->timer, timeout, 0);
		ev_timer_start(loop->ev, &s->timer);
	}
	return lem_yield(T, &s->rd.w);
}

/* stream:write(...) --> true | nil, 'closed' | nil, 'busy' | nil, message
 * Writes its arguments (strings or numbers) in order, without copying them while the
 * kernel takes them; what it cannot take yet is anchored (copied into one string first
 * when more than one argument is left) and written as the socket drains. The caller stays
 * suspended until then: a fast writer to a slow reader holds one write's data at most. */
static int stream_write(lua_State *T)
{
	struct io_stream *s = checkstream(T);
	lem_loop *loop = s->loop;
	int top = lua_gettop(T), i = 2;
	size_t off = 0, len;
	const char *p;

	for (int k = 2; k <= top; k++)
		luaL_checklstring(T, k, NULL);
	if (stream_busy(s, &s->wr, &s->w)) {
		lua_pushnil(T);
		lua_pushliteral(T, "busy");            /* return nil, 'busy' */
		return 2;
	}
	if (s->kind == IO_STD)
		std_prepare(s);
	while (i <= top) {
		struct iovec iov[IOV_MAX_BATCH];
		int cnt = 0;
		ssize_t n;

		for (int k = i; k <= top && cnt < IOV_MAX_BATCH; k++) {
			p = lua_tolstring(T, k, &len);
			if (k == i) {
				p += off;
				len -= off;
			}
			if (len > 0) {
				iov[cnt].iov_base = (void *)p;
				iov[cnt++].iov_len = len;
			}
		}
		if (cnt == 0)
			break;
		n = cnt == 1 ? write(s->fd, iov[0].iov_base, iov[0].iov_len)
		             : writev(s->fd, iov, cnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return io_error(T, errno);         /* return nil, message */
		}
		while (i <= top) {                     /* step past what went out */
			lua_tolstring(T, i, &len);
			if ((size_t)n < len - off) {
				off += n;
				break;
			}
			n -= len - off;
			off = 0;
			i++;
		}
	}
	if (i > top) {
		lua_pushboolean(T, 1);                 /* return true */
		return 1;
	}
	lem_wait(T, &s->wr.w);
	if (i == top) {                            /* the rest of one string: no copy */
		lua_pushvalue(T, i);
		p = lua_tolstring(T, -1, &len);
		s->wp = p + off;
		s->wlen = len - off;
	} else {
		luaL_Buffer b;

		luaL_buffinit(T, &b);
		for (int k = i; k <= top; k++) {
			p = lua_tolstring(T, k, &len);
			luaL_addlstring(&b, p + (k == i ? off : 0), len - (k == i ? off : 0));
		}
		luaL_pushresult(&b);
		s->wp = lua_tolstring(T, -1, &s->wlen);
	}
	s->wdata = lem_anchor(loop, T);
	io_anchor_co(loop, &s->wr);
	ev_io_start(loop->ev, &s->w);
	return lem_yield(T, &s->wr.w);
}

/* stream:close() --> true | nil, 'closed' (closed already)
 * A coroutine suspended in read or write returns nil, 'closed'. Closing a standard stream
 * gives its descriptor its flags back and leaves it open. */
static int stream_close(lua_State *T)
{
	struct io_stream *s = lua_touserdata(T, 1);

	if (!s || !lua_getmetatable(T, 1) || !lua_rawequal(T, -1, METATABLE))
		luaL_typerror(T, 1, "stream");
	if (s->fd < 0) {
		lua_pushnil(T);
		lua_pushliteral(T, "closed");
		return 2;
	}
	io_stream_shut(s, 1);
	lua_pushboolean(T, 1);
	return 1;
}

/* stream:peer() --> address, port (TCP) | path (Unix, "" when unnamed) | nil, message */
static int stream_peer(lua_State *T)
{
	struct io_stream *s = checkstream(T);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (getpeername(s->fd, (struct sockaddr *)&ss, &len) != 0)
		return io_error(T, errno);
	return io_pushaddr(T, (struct sockaddr *)&ss, len);
}

static int stream_gc(lua_State *T)
{
	io_stream_shut(lua_touserdata(T, 1), 0);
	return 0;
}

static int stream_tostring(lua_State *T)
{
	struct io_stream *s = lua_touserdata(T, 1);

	if (s->fd < 0)
		lua_pushfstring(T, "stream (closed): %p", (void *)s);
	else
		lua_pushfstring(T, "stream (fd %d): %p", s->fd, (void *)s);
	return 1;
}

void io_stream_open(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "read", stream_read },
		{ "write", stream_write },
		{ "close", stream_close },
		{ "peer", stream_peer },
		{ NULL, NULL }
	};

	io_class(L, IO_STREAM_MT, stream_gc, stream_tostring, "stream", methods);
}

/* io.stdin, io.stdout, io.stderr: module table on top of L. */
void io_std_open(lua_State *L)
{
	static const char *const names[] = { "stdin", "stdout", "stderr" };

	for (int fd = 0; fd < 3; fd++) {
		io_stream_new(L, lem_current, fd, IO_STD);
		lua_setfield(L, -2, names[fd]);
	}
}
