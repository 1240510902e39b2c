/* stream.c: lem.io streams: buffered reads, writes that suspend until the kernel took
 * everything, close, and the standard descriptors. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "io.h"

#define BUF_INIT      4096     /* first read buffer: a request line and headers fit */
#define BUF_MIN_ROOM  1024     /* less room than this: compact or grow before a read */
#define BUF_KEEP      65536    /* an emptied buffer larger than this goes back to malloc */
#define READS_MAX     64       /* read() calls per read or per event: others' turn then */
#define IOV_MAX_BATCH 64       /* write(...) arguments per writev */
#define LINE_MAX_DEFAULT 65536      /* stream:limit(): the longest line '*l' returns */
#define ALL_MAX_DEFAULT  16777216   /* and the most bytes of a '*a' or a count read */
#define LIMIT_MAX     ((size_t)-1 >> 2)   /* larger limits (math.huge) mean this */

/* ---- the read buffer ----
 * Data sits in buf[start, end). A read() goes to the free room after end; the data moves
 * to the front only when that room is short and the data is less than half the buffer,
 * else the buffer doubles: a '*a' read of n bytes costs O(n) copies in all. It never grows
 * past what the pending read may need (stream_need): a peer that sends a line without end
 * costs linemax + 2 bytes, not what it sends. */

/* The most bytes the pending read may need buffered: one more than its answer can hold,
 * so that stream_take sees a line or '*a' overflow. The limits are at most LIMIT_MAX. */
static size_t stream_need(const struct io_stream *s)
{
	switch (s->rfmt) {
	case IO_LINE:
		return s->linemax + 2;         /* the longest line, its '\r' and '\n' */
	case IO_ALL:
		return s->allmax + 1;
	case IO_UNTIL:
		return s->linemax + s->dlen;   /* the longest answer and its delimiter */
	}
	return s->rcount;
}

/* ---- the transport ----
 * A stream moves its bytes with read() and write(), or through its transport (TLS). Both
 * return the bytes moved or -errno, -EAGAIN when the watcher must wait; recv sets drained
 * when the source is likely empty. */

static ssize_t stream_recv(struct io_stream *s, char *buf, size_t len)
{
	ssize_t n;

	if (s->tp)
		return s->tp->recv(s, buf, len);
	do
		n = read(s->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	/* A short read emptied the socket (as far as we can tell): the next read waits for
	 * the watcher instead of trying a read() that would say EAGAIN. If data came
	 * meanwhile, the (level-triggered) poll reports it at once. */
	s->drained = (size_t)n < len;
	return n;
}

static ssize_t stream_send(struct io_stream *s, const struct iovec *iov, int cnt)
{
	ssize_t n;

	if (s->tp)
		return s->tp->send(s, iov, cnt);
	do
		n = cnt == 1 ? write(s->fd, iov[0].iov_base, iov[0].iov_len) : writev(s->fd, iov, cnt);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

/* One read() into the buffer. Returns the bytes read, 0 at EOF or a negative errno
 * (-ENOMEM: the buffer could not grow; the data stays); sets eof, err and drained.
 * Called only while stream_take wants more, so that there is room below read_need. */
static ssize_t stream_fill(struct io_stream *s)
{
	size_t room;
	ssize_t n;

	if (s->start == s->end)
		s->start = s->end = s->scan = 0;
	room = s->cap - s->end;
	if (room < BUF_MIN_ROOM) {
		size_t len = s->end - s->start, need = stream_need(s);

		if (s->start > 0 && (len < s->cap / 2 || s->cap >= need)) {
			memmove(s->buf, s->buf + s->start, len);
			s->scan -= s->start;
			s->start = 0;
			s->end = len;
		} else if (s->cap < need) {
			size_t cap = s->cap ? 2 * s->cap : BUF_INIT;
			char *p;

			if (cap > need)
				cap = need > BUF_INIT ? need : BUF_INIT;
			if (cap == BUF_INIT && s->st->nspare) {  /* s->cap is 0: no data to keep */
				p = s->st->spare[--s->st->nspare];
			} else if (!(p = realloc(s->buf, cap)))
				return -ENOMEM;
			s->buf = p;
			s->cap = cap;
		}
		room = s->cap - s->end;
	}
	n = stream_recv(s, s->buf + s->end, room);
	if (n > 0) {
		s->end += n;
		return n;
	}
	if (n == 0) {
		s->eof = 1;
		return 0;
	}
	if (n == -EAGAIN) {
		s->drained = 1;
		return -EAGAIN;
	}
	s->err = (int)n;
	return s->err;
}

/* The first delim in [p, end), or NULL: memmem for '*u''s short delimiters (glibc's took
 * 300 instructions to find "\r\n\r\n" in a request's head; this takes a memchr per line). */
static const char *stream_find(const char *p, const char *end, const char *delim, size_t dlen)
{
	while ((size_t)(end - p) >= dlen &&
	       (p = memchr(p, delim[0], (size_t)(end - p) - dlen + 1))) {
		if (!memcmp(p + 1, delim + 1, dlen - 1))
			return p;
		p++;
	}
	return NULL;
}

enum { TAKE_MORE, TAKE_DATA };   /* stream_take's answers, beside -err */

/* Decides the answer to the pending read (rfmt, rcount) when the buffer, EOF, an error or
 * a limit decide it. Returns TAKE_MORE while more data is needed; TAKE_DATA: the value is
 * [start, start + tlen), and take the buffer's start once it is consumed; or an error < 0:
 * nil and its message (-EPIPE: 'closed'). Pushes nothing, changes nothing but scan: the
 * answer is made by stream_push and counts only once stream_consume ran. */
static int stream_take(struct io_stream *s)
{
	const char *p = s->buf + s->start;
	size_t avail = s->end - s->start;

	switch (s->rfmt) {
	case IO_LINE: {
		const char *nl = s->end > s->scan ? memchr(s->buf + s->scan, '\n', s->end - s->scan)
		                                  : NULL;
		if (nl) {
			size_t len = nl - p;

			if (len > 0 && p[len - 1] == '\r')
				len--;
			if (len > s->linemax)
				return -IO_ELINE;          /* however the line came in */
			s->take = nl - s->buf + 1;
			s->tlen = len;
			return TAKE_DATA;              /* a line */
		}
		s->scan = s->end;                  /* searched already */
		if (avail > s->linemax + 1)
			return -IO_ELINE;              /* longer than linemax, even if "\r\n" came now */
		if (avail > 0 && (s->eof || s->err)) {
			if (avail > s->linemax)
				return -IO_ELINE;
			s->take = s->end;
			s->tlen = avail;
			return TAKE_DATA;              /* the unterminated last line */
		}
		break;
	}
	case IO_UNTIL: {
		const char *d = s->end > s->scan ? stream_find(s->buf + s->scan, s->buf + s->end,
		                                               s->delim, s->dlen) : NULL;
		if (d) {
			if ((size_t)(d - p) > s->linemax)
				return -IO_ELINE;
			s->take = d - s->buf + s->dlen;
			s->tlen = s->take - s->start;
			return TAKE_DATA;              /* the data and its delimiter */
		}
		if (avail >= s->dlen)              /* a delimiter may have begun at end - dlen + 1 */
			s->scan = s->end - s->dlen + 1;
		if (avail >= s->linemax + s->dlen)
			return -IO_ELINE;              /* no delimiter where one could end in time */
		if (avail > 0 && (s->eof || s->err)) {
			if (avail > s->linemax)
				return -IO_ELINE;
			s->take = s->end;
			s->tlen = avail;
			return TAKE_DATA;              /* the rest, without a delimiter */
		}
		break;
	}
	case IO_ALL:
		if (avail > s->allmax)
			return -IO_ETOOLONG;
		if (s->eof) {
			s->take = s->end;
			s->tlen = avail;
			return TAKE_DATA;              /* everything, maybe "" */
		}
		break;
	case IO_COUNT:
		if (avail >= s->rcount || (avail > 0 && (s->eof || s->err))) {
			s->tlen = avail < s->rcount ? avail : s->rcount;
			s->take = s->start + s->tlen;
			return TAKE_DATA;              /* n bytes, fewer at the end */
		}
		break;
	}
	if (s->err)
		return s->err;                     /* once: stream_consume forgets it */
	if (s->eof)
		return -EPIPE;                     /* nil, 'closed' */
	return TAKE_MORE;
}

/* [-0, +1|+2, m] Pushes the answer r of stream_take. Returns the number of values. */
static int stream_push(lua_State *T, struct io_stream *s, int r)
{
	if (r == TAKE_DATA) {
		lua_pushlstring(T, s->buf + s->start, s->tlen);   /* return data */
		return 1;
	}
	return io_error(T, r);                                /* return nil, message */
}

/* The answer r was delivered. A buffered error is reported once, then nil, 'closed'. */
static void stream_consume(struct io_stream *s, int r)
{
	if (r != TAKE_DATA) {
		if (s->err && r == s->err) {
			s->err = 0;
			s->eof = 1;
		}
		return;
	}
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

/* Gives up the buffer of a stream whose reader is about to wait with nothing buffered:
 * an idle connection (a server's keep-alive one, waiting for its next request) then costs
 * no buffer. One first-size buffer per loop is kept for the next stream that reads: a
 * malloc and a free of 4 KiB per request cost more than the rest of the read. */
static void stream_release(struct io_stream *s)
{
	if (s->cap == BUF_INIT && s->st->nspare < IO_SPARES)
		s->st->spare[s->st->nspare++] = s->buf;
	else
		free(s->buf);
	s->buf = NULL;
	s->start = s->end = s->scan = s->cap = 0;
}

/* ---- watchers ---- */

struct stream_answer {
	struct io_stream *s;
	int r;
};

static int stream_push_answer(lua_State *S, void *ud)
{
	struct stream_answer *a = ud;

	return stream_push(S, a->s, a->r);
}

/* ---- idle streams (stream:idle) ---- */

/* Counts s in or out of the idle streams. Out: before the watchers stop, or in the
 * callback of the timer that libev stopped, the loop takes back the references a weak
 * wait gave up. */
static void stream_idle_count(struct io_stream *s, int idle)
{
	s->idle = (unsigned char)idle;
	s->st->idle += idle ? 1 : -1;
	if (!idle && s->weak) {
		s->st->weak--;
		for (; s->weak; s->weak--)
			ev_ref(lem_ev(s->loop));
	}
}

struct stream_idle_start {
	struct io_stream *s;
	int timedout;
};

static int stream_idle_spawn(lua_State *S, void *ud)
{
	struct stream_idle_start *a = ud;
	struct io_stream *s = a->s;

	lem_anchor_push(s->loop, S, s->reader.val_slot);   /* the handler */
	lem_anchor_push(s->loop, S, s->reader.co_slot);    /* the stream */
	if (a->timedout)
		lua_pushliteral(S, "timeout");
	lem_spawn(s->loop, S, 1 + a->timedout);
	return 0;
}

/* The idle stream's peer sent something (or went), or its timeout passed: its handler
 * starts. Without the memory to start it, the stream closes: nobody would read it. */
static void stream_idle_end(struct io_stream *s, int timedout)
{
	struct stream_idle_start a = { s, timedout };
	lem_loop *loop = s->loop;
	lua_State *L = lem_state(loop);

	stream_idle_count(s, 0);
	s->drained = 0;                            /* the handler's read tries read() */
	if (lem_protect(loop, L, stream_idle_spawn, &a) < 0) {
		lua_pop(L, 2);
		io_stream_shut(s, L);
		return;
	}
	io_wait_end(loop, &s->reader);             /* stops the watchers, lets go of both */
}

static void stream_readable(struct ev_loop *ev, ev_io *w, int revents)
{
	struct io_stream *s = (struct io_stream *)w;
	struct stream_answer a = { s, TAKE_MORE };
	lua_State *L = lem_state(s->loop);
	int n;

	(void)revents;
	if (s->idle) {
		stream_idle_end(s, 0);
		return;
	}
	s->drained = 0;
	for (int i = 0; i < READS_MAX; i++) {
		ssize_t f = stream_fill(s);

		if (f == -ENOMEM) {
			a.r = -ENOMEM;                 /* nil, 'not enough memory'; the data stays */
			break;
		}
		if ((a.r = stream_take(s)) != TAKE_MORE)
			break;
		if (f == -EAGAIN || s->drained)
			return;        /* level-triggered: we are called again when more comes */
	}
	if (a.r == TAKE_MORE)
		return;            /* a big read goes on in the next loop iteration */
	ev_io_stop(ev, &s->r);
	ev_timer_stop(ev, &s->timer);
	/* The answer is made on the scratch thread: this callback has no protected call
	 * around it. When that fails the reader gets nil, 'not enough memory' and the data
	 * stays; a stale reader (resumed by other means) gets nothing and the data stays too. */
	n = lem_protect(s->loop, L, stream_push_answer, &a);
	if (io_wake(s->loop, &s->reader, L, n < 0 ? 2 : n) && n >= 0)
		stream_consume(s, a.r);
}

static void stream_writable(struct ev_loop *ev, ev_io *w, int revents)
{
	struct io_stream *s = io_container_of(w, struct io_stream, w);
	lem_loop *loop = s->loop;
	lua_State *L = lem_state(loop);
	int err = 0;

	(void)revents;
	while (s->wlen > 0) {
		struct iovec iov = { (void *)s->wp, s->wlen };
		ssize_t n = stream_send(s, &iov, 1);

		if (n == -EAGAIN)
			return;        /* the kernel's buffer is full again: wait on */
		if (n < 0) {
			err = (int)n;
			break;
		}
		s->wp += n;
		s->wlen -= n;
	}
	s->wp = NULL;
	s->wlen = 0;
	if (err) {
		io_wake_error(loop, &s->writer, L, err);   /* return nil, message */
	} else {
		lua_pushboolean(L, 1);                           /* return true */
		io_wake(loop, &s->writer, L, 1);
	}
}

static void stream_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct io_stream *s = io_container_of(w, struct io_stream, timer);

	(void)ev; (void)revents;
	if (s->idle)
		stream_idle_end(s, 1);
	else
		io_wake_error(s->loop, &s->reader, lem_state(s->loop), -ETIMEDOUT);
}

/* A write waited write_timeout seconds: nil, 'timeout'. What went out of it is lost to
 * the peer's framing: the caller closes the stream. */
static void stream_wtimeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct io_stream *s = io_container_of(w, struct io_stream, wtimer);

	(void)ev; (void)revents;
	s->wp = NULL;
	s->wlen = 0;
	io_wake_error(s->loop, &s->writer, lem_state(s->loop), -ETIMEDOUT);
}

/* ---- making and closing ---- */

/* Pushes a new stream on T. fd may be -1 until a connect gives it one (io_stream_ready). */
struct io_stream *io_stream_new(lua_State *T, lem_loop *loop, int fd, int kind,
                               size_t peercap)
{
	size_t size = offsetof(struct io_stream, peer) + peercap;
	struct io_stream *s = lua_newuserdata(T, size);

	memset(s, 0, size);
	s->type = &io_stream_type;
	s->loop = loop;
	s->st = io_state(T);
	s->kind = (unsigned char)kind;
	s->stdflags = -1;
	s->linemax = LINE_MAX_DEFAULT;
	s->allmax = ALL_MAX_DEFAULT;
	s->wtimeout = -1;
	io_wait_init(&s->reader, s->st, &s->r, &s->timer);
	io_wait_init(&s->writer, s->st, &s->w, &s->wtimer);
	io_stream_ready(s, fd);
	luaL_getmetatable(T, IO_STREAM_MT);
	lua_setmetatable(T, -2);
	return s;
}

void io_stream_ready(struct io_stream *s, int fd)
{
	s->fd = fd;
	if (fd >= 0 && s->kind != IO_STD)
		s->st->streams++;
	ev_io_init(&s->r, stream_readable, fd, EV_READ);
	ev_io_init(&s->w, stream_writable, fd, EV_WRITE);
	ev_init(&s->timer, stream_timeout);
	ev_init(&s->wtimer, stream_wtimeout);
}

/* The standard descriptors are shared with the process (and often with the shell): they
 * go non-blocking only once lem.io uses them, and get their flags back at close. */
static void stream_std_prepare(struct io_stream *s)
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

/* Stops the watchers and releases the descriptor, the buffer and the anchor slots. The
 * suspended reader and writer return nil, 'closed', made on from (stream:close()); from
 * NULL forgets them (__gc: nobody can be waiting on an unreachable stream but a stale
 * suspension). */
void io_stream_shut(void *self, lua_State *from)
{
	struct io_stream *s = self;
	lem_loop *loop = s->loop;

	if (s->conn)
		io_connect_free(s);
	if (s->idle)                               /* its handler never starts */
		stream_idle_count(s, 0);
	io_wait_free(loop, &s->reader, from);
	io_wait_free(loop, &s->writer, from);
	s->wp = NULL;
	s->wlen = 0;
	if (s->tp)
		s->tp->shut(s, from);                  /* before the close: it may say goodbye */
	if (s->fd >= 0) {
		if (s->kind != IO_STD) {
			close(s->fd);
			s->st->streams--;
		}
		else if (s->stdflags >= 0 && !(s->stdflags & O_NONBLOCK))
			fcntl(s->fd, F_SETFL, s->stdflags);
		s->fd = -1;
	}
	free(s->buf);
	s->buf = NULL;
	s->start = s->end = s->scan = s->cap = 0;
}

/* ---- methods ---- */

/* [-0, +0, v] self, an open stream */
static struct io_stream *stream_check(lua_State *T)
{
	return io_check_open(T, &io_stream_type, offsetof(struct io_stream, fd));
}

/* stream:read([fmt [, timeout]]) --> data | nil, 'closed' | nil, 'timeout' | nil, 'busy'
 *                                    | nil, 'line too long' | nil, 'too long' | nil, message
 * stream:read('*u', delimiter [, timeout]) --> the same
 * fmt: '*l' a line without its end (default), '*a' all until EOF, n: n bytes, '*u' the
 * bytes up to and including the delimiter (1 to IO_DELIM_MAX bytes). */
static int stream_read(lua_State *T)
{
	struct io_stream *s = stream_check(T);
	lem_loop *loop = s->loop;
	lua_Number timeout;
	int fmt = IO_LINE, r, targ = 3;
	size_t count = 0, dlen = 0;
	const char *delim = NULL;

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
		else if (f[0] == 'u' && f[1] == '\0')
			fmt = IO_UNTIL;
		else
			luaL_argerror(T, 2, "invalid format (expected '*l', '*a', '*u' or a number)");
	}
	if (fmt == IO_UNTIL) {
		delim = luaL_checklstring(T, 3, &dlen);
		if (dlen < 1 || dlen > IO_DELIM_MAX)
			luaL_argerror(T, 3, "delimiter must have 1 to 8 bytes");
		targ = 4;
	}
	timeout = io_opttimeout(T, targ);
	if (s->idle || io_busy(loop, &s->reader))
		return io_error(T, -EBUSY);            /* return nil, 'busy' */
	if (fmt == IO_COUNT && count == 0) {
		lua_pushliteral(T, "");
		return 1;
	}
	if (fmt == IO_COUNT && count > s->allmax)
		return io_error(T, -IO_ETOOLONG);      /* return nil, 'too long' */
	if (s->kind == IO_STD)
		stream_std_prepare(s);
	if (fmt == IO_UNTIL || s->rfmt == IO_UNTIL)
		s->scan = s->start;    /* scan means something else for '*u' and for '*l' */
	if (fmt == IO_UNTIL) {
		memcpy(s->delim, delim, dlen);
		s->dlen = (unsigned char)dlen;
	}
	s->rfmt = (unsigned char)fmt;
	s->rcount = count;
	for (int i = 0; ; i++) {
		if ((r = stream_take(s)) != TAKE_MORE) {
			int n = stream_push(T, s, r);      /* out of memory raises here, in T */

			stream_consume(s, r);
			return n;
		}
		if (s->drained || i == READS_MAX)
			break;
		if (stream_fill(s) == -ENOMEM)
			return io_error(T, -ENOMEM);       /* return nil, 'not enough memory' */
	}
	if (timeout == 0)
		return io_error(T, -ETIMEDOUT);        /* return nil, 'timeout' at once */
	if (s->start == s->end)
		stream_release(s);
	r = io_suspend(loop, T, &s->reader, 0);
	ev_io_start(lem_ev(loop), &s->r);
	if (timeout > 0) {
		ev_timer_set(&s->timer, timeout, 0);
		ev_timer_start(lem_ev(loop), &s->timer);
	}
	return r;
}

/* stream:idle(handler [, timeout [, 'weak']]) --> true | false | nil, 'timeout' |
 *                                                nil, 'busy'
 * The stream waits for its peer with no coroutine: once something can be read (data, the
 * peer's close or an error), handler(stream) starts in a coroutine of its own; after
 * timeout seconds of nothing, handler(stream, 'timeout'). A server's idle keep-alive
 * connection then costs its stream alone. Closing the stream meanwhile drops the handler.
 * false: something is buffered already (or, on a TLS stream, may be inside OpenSSL):
 * nothing waits, the caller reads it. 'weak': the wait keeps no loop running (a client's
 * pooled connection). stream:idle(false) calls a wait off --> true | false (none). */
static int stream_idle(lua_State *T)
{
	struct io_stream *s = stream_check(T);
	lem_loop *loop = s->loop;
	lua_Number timeout;
	int weak;

	if (lua_type(T, 2) == LUA_TBOOLEAN && !lua_toboolean(T, 2)) {
		lua_pushboolean(T, s->idle);
		if (s->idle) {
			stream_idle_count(s, 0);
			io_wait_end(loop, &s->reader);
		}
		return 1;
	}
	luaL_checktype(T, 2, LUA_TFUNCTION);
	timeout = io_opttimeout(T, 3);
	weak = !lua_isnoneornil(T, 4);
	if (weak && strcmp(luaL_checkstring(T, 4), "weak") != 0)
		luaL_argerror(T, 4, "'weak' expected");
	if (s->idle || io_busy(loop, &s->reader))
		return io_error(T, -EBUSY);            /* return nil, 'busy' */
	if (s->start < s->end || s->eof || s->err || (s->tp && !s->drained)) {
		lua_pushboolean(T, 0);
		return 1;
	}
	if (timeout == 0)
		return io_error(T, -ETIMEDOUT);        /* return nil, 'timeout' at once */
	lua_settop(T, 2);
	if (!io_wait_slots(loop, T, &s->reader, 1))   /* the reader's, kept until the close */
		return io_error(T, -EPIPE);            /* the loop closes */
	lem_anchor_set(loop, T, s->reader.val_slot);   /* the handler */
	lua_pushvalue(T, 1);
	lem_anchor_set(loop, T, s->reader.co_slot);    /* the stream */
	stream_release(s);                         /* nothing is buffered */
	stream_idle_count(s, 1);
	ev_io_start(lem_ev(loop), &s->r);
	if (timeout > 0) {
		ev_timer_set(&s->timer, timeout, 0);
		ev_timer_start(lem_ev(loop), &s->timer);
	}
	if (weak) {
		s->weak = timeout > 0 ? 2 : 1;
		s->st->weak++;
		for (int i = 0; i < s->weak; i++)
			ev_unref(lem_ev(loop));
	}
	lua_pushboolean(T, 1);
	return 1;
}

/* stream:write(...) --> true | nil, 'closed' | nil, 'busy' | nil, message
 * Writes its arguments (strings or numbers) in order, without copying them while the
 * kernel takes them; what it cannot take yet is anchored (copied into one string first
 * when more than one argument is left) and written as the socket drains. The caller stays
 * suspended until then: a fast writer to a slow reader holds one write's data at most. */
static int stream_write(lua_State *T)
{
	struct io_stream *s = stream_check(T);
	lem_loop *loop = s->loop;
	int top = lua_gettop(T), i = 2, r;
	size_t off = 0, len, wlen;
	const char *p, *wp;

	for (int k = 2; k <= top; k++)
		luaL_checklstring(T, k, NULL);
	if (io_busy(loop, &s->writer))
		return io_error(T, -EBUSY);            /* return nil, 'busy' */
	if (s->kind == IO_STD)
		stream_std_prepare(s);
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
		n = stream_send(s, iov, cnt);
		if (n == -EAGAIN)
			break;
		if (n < 0)
			return io_error(T, (int)n);        /* return nil, message */
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
	if (i == top) {                            /* the rest of one string: no copy */
		lua_pushvalue(T, i);
		p = lua_tolstring(T, -1, &len);
		wp = p + off;
		wlen = len - off;
	} else {
		luaL_Buffer b;

		luaL_buffinit(T, &b);
		for (int k = i; k <= top; k++) {
			p = lua_tolstring(T, k, &len);
			luaL_addlstring(&b, p + (k == i ? off : 0), len - (k == i ? off : 0));
		}
		luaL_pushresult(&b);
		wp = lua_tolstring(T, -1, &wlen);
	}
	r = io_suspend(loop, T, &s->writer, 1);    /* the string stays alive while it waits */
	s->wp = wp;
	s->wlen = wlen;
	ev_io_start(lem_ev(loop), &s->w);
	if (s->wtimeout >= 0) {
		ev_timer_set(&s->wtimer, s->wtimeout, 0);
		ev_timer_start(lem_ev(loop), &s->wtimer);
	}
	return r;
}

/* stream:write_timeout([seconds]) --> true
 * A write that has waited seconds for the peer to take its data returns nil, 'timeout'
 * (part of it may have gone out: close the stream then); 0: one that cannot go out at
 * once. nil or false: no limit, the default. A write that goes out at once costs no
 * timer. */
static int stream_write_timeout(lua_State *T)
{
	struct io_stream *s = stream_check(T);

	s->wtimeout = lua_toboolean(T, 2) ? io_opttimeout(T, 2) : -1;
	lua_pushboolean(T, 1);
	return 1;
}

/* stream:close() --> true | nil, 'closed' (closed already)
 * A coroutine suspended in read or write returns nil, 'closed'. Closing a standard stream
 * gives its descriptor its flags back and leaves it open. */
static int stream_close(lua_State *T)
{
	struct io_stream *s = io_check(T, &io_stream_type);

	if (s->fd < 0)
		return io_error(T, -EPIPE);            /* return nil, 'closed' */
	io_stream_shut(s, T);
	lua_pushboolean(T, 1);
	return 1;
}

/* stream:limit([line [, all]]) --> line, all
 * Sets the longest line '*l' returns and the most bytes '*a' or a count read returns
 * (nil: unchanged); returns the limits now in force. */
static size_t stream_checklimit(lua_State *T, int idx, size_t def)
{
	lua_Number n;

	if (lua_isnoneornil(T, idx))
		return def;
	n = luaL_checknumber(T, idx);
	if (!(n >= 0) || (n < (lua_Number)LIMIT_MAX && n != (lua_Number)(size_t)n))
		luaL_argerror(T, idx, "limit must be a whole number >= 0");
	return n < (lua_Number)LIMIT_MAX ? (size_t)n : LIMIT_MAX;
}

static int stream_limit(lua_State *T)
{
	struct io_stream *s = stream_check(T);
	size_t line = stream_checklimit(T, 2, s->linemax);
	size_t all = stream_checklimit(T, 3, s->allmax);

	s->linemax = line;
	s->allmax = all;
	lua_pushnumber(T, (lua_Number)line);
	lua_pushnumber(T, (lua_Number)all);
	return 2;
}

/* stream:buffered() --> the bytes read from the peer and not yet returned by a read: a
 * server sees that the next request of a pipeline is already here. */
static int stream_buffered(lua_State *T)
{
	struct io_stream *s = stream_check(T);

	lua_pushnumber(T, (lua_Number)(s->end - s->start));
	return 1;
}

/* stream:peer() --> address, port (TCP) | path (Unix, "" when unnamed) | nil, message
 * The address accept or connect saw, which stays known once the peer went or reset; a
 * standard stream asks the kernel. */
static int stream_peer(lua_State *T)
{
	struct io_stream *s = stream_check(T);
	union io_addr a;
	socklen_t len = sizeof a;

	if (s->peerlen > 0)
		return io_pushaddr(T, &s->peer.sa, s->peerlen);
	if (getpeername(s->fd, &a.sa, &len) != 0)
		return io_error(T, -errno);
	return io_pushaddr(T, &a.sa, len);
}

void io_stream_open(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "read", stream_read },
		{ "write", stream_write },
		{ "close", stream_close },
		{ "peer", stream_peer },
		{ "limit", stream_limit },
		{ "write_timeout", stream_write_timeout },
		{ "buffered", stream_buffered },
		{ "idle", stream_idle },
		{ NULL, NULL }
	};

	io_class(L, IO_STREAM_MT, "stream", io_stream_shut, offsetof(struct io_stream, fd), methods);
}

/* io.stdin, io.stdout, io.stderr: module table on top of L. */
void io_std_open(lua_State *L)
{
	static const char *const names[] = { "stdin", "stdout", "stderr" };

	for (int fd = 0; fd < 3; fd++) {
		io_stream_new(L, lem_loop_of(L), fd, IO_STD, 0);
		lua_setfield(L, -2, names[fd]);
	}
}
