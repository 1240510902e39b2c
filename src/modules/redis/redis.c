/* redis.c: lem.redis, a Redis client on lem's own sockets. hiredis's reader parses the
 * replies; the commands (redis_prepare), the descriptor, its watchers and the waiting
 * coroutines are ours.
 *
 * A connection's callers form a FIFO: each r:call appends its command to the output
 * buffer and waits; replies come back in the order the commands went out, so the n-th
 * reply wakes the n-th caller. Their coroutines are kept alive by the connection's
 * environment table, at env[i+1] for the caller in q[i] (a ring), and the connection by its anchor while
 * anyone waits: a connection nobody waits on is anchored by nothing, and the collector
 * closes it. env[0] holds the one other waiter: the caller of connect, or of message.
 * The socket is read only while someone waits, so that an idle connection keeps no
 * watcher running (and the loop may end). */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include "lem.h"

#define REDIS_MT "lem.redis"
#define REDIS_MAXREPLY ((size_t)64 << 20)   /* bytes of one reply, or of queued messages */
#define REDIS_CHUNK 65536                     /* bytes read at once */

enum { REDIS_CONNECTING, REDIS_OPEN, REDIS_CLOSED };

struct redis_lookup;

struct redis_msg {            /* a pub/sub message read but not yet asked for */
	struct redis_msg *next;
	redisReply *reply;
	size_t size;              /* its bytes on the wire */
};

struct redis_conn {
	ev_io r;                  /* readable: someone waits for a reply or a message */
	ev_io w;                  /* writable: output is pending, or a connect goes on */
	ev_timer timer;           /* the timeout of connect, or of message */
	lem_loop *loop;
	int fd;                   /* -1 until connected, and once closed */
	int state;                /* REDIS_CONNECTING, REDIS_OPEN or REDIS_CLOSED */
	int subscribed;           /* a subscribe went out: replies go to the messages */
	int slot;                 /* anchor slot: the connection while anyone waits, else nil */
	redisReader *reader;
	size_t pending;           /* bytes read since the last complete reply */
	size_t maxreply;          /* the most `pending` may reach */

	char *out;                /* commands to write: [opos, olen) of ocap bytes */
	size_t opos, olen, ocap;
	int flush;                /* a flusher is queued to write them (redis_flush) */
	unsigned woke;            /* callers the last read woke */

	lem_waiter *q;            /* callers waiting for replies, in order: a ring, whose */
	unsigned qhead, qlen, qcap;   /* coroutines are at env[1..qcap], in its order */
	redisReply *reply;        /* a reply read, for the head of the FIFO (redis_answer) */
	size_t rsize;             /* the bytes of the last reply read */
	int rerr;                 /* the reader failed: reader->errstr says why */
	lem_waiter one;           /* the caller of connect or message (env[0]); co NULL: none */

	struct redis_msg *mhead, **mtail;   /* messages read, not yet asked for */
	size_t mbytes;

	struct redis_lookup *lookup;        /* a name lookup in the pool, else NULL */
	struct addrinfo *ai, *next;         /* TCP: the addresses to try */
};

/* A name lookup: done in the thread pool, its result used in the loop's thread. */
struct redis_lookup {
	struct redis_conn *c;
	int port;
	int err;                  /* getaddrinfo's code, or 0 */
	struct addrinfo *res;
	char host[];
};

static const char redis_null_key = 0;      /* registry: redis.null */

/* ---- values made in callbacks ----
 * As in lem.io: a callback has no protected call around it, so it makes its values in
 * one on a scratch thread that never runs Lua, and moves them to lem_state. When that
 * fails the waiter gets nil and the error ('not enough memory', which Lua keeps made). */

/* [-0, +n|+2, -] on to: lem_protect, counting the nil and message of a failure. */
static int redis_protect(lem_loop *loop, lua_State *to, int (*push)(lua_State *S, void *ud),
                         void *ud)
{
	int n = lem_protect(loop, to, push, ud);

	return n < 0 ? 2 : n;
}

static int redis_push_string(lua_State *S, void *ud)
{
	lua_pushstring(S, ud);
	return 1;
}

static void redis_pushnull(lua_State *L)
{
	lua_pushlightuserdata(L, (void *)&redis_null_key);
	lua_rawget(L, LUA_REGISTRYINDEX);
}

/* [-0, +1, m] A reply as one Lua value: an error inside an array is { err = message }. */
static void redis_push_value(lua_State *L, const redisReply *r)
{
	size_t i;

	luaL_checkstack(L, 3, "reply nested too deep");
	switch (r->type) {
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
		lua_pushlstring(L, r->str, r->len);
		break;
	case REDIS_REPLY_INTEGER:
		lua_pushnumber(L, (lua_Number)r->integer);
		break;
	case REDIS_REPLY_ARRAY:
		lua_createtable(L, r->elements > 1 << 24 ? 1 << 24 : (int)r->elements, 0);
		for (i = 0; i < r->elements; i++) {
			redis_push_value(L, r->element[i]);
			lua_rawseti(L, -2, (int)i + 1);
		}
		break;
	case REDIS_REPLY_ERROR:
		lua_createtable(L, 0, 1);
		lua_pushlstring(L, r->str, r->len);
		lua_setfield(L, -2, "err");
		break;
	default:                  /* REDIS_REPLY_NIL */
		redis_pushnull(L);
	}
}

/* [-0, +1|+2, m] A call's results: the value, or nil, message for an error reply. */
static int redis_push_reply(lua_State *L, void *ud)
{
	const redisReply *r = ud;

	if (r->type == REDIS_REPLY_ERROR) {
		lua_pushnil(L);
		lua_pushlstring(L, r->str, r->len);
		return 2;
	}
	redis_push_value(L, r);
	return 1;
}

/* [-0, +n, m] A pub/sub message as message() returns it: kind, channel, payload, and the
 * pattern last for a pmessage (which comes as kind, pattern, channel, payload). */
static int redis_push_message(lua_State *L, void *ud)
{
	const redisReply *r = ud;
	size_t i, n;

	if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
		return redis_push_reply(L, ud);
	n = r->elements > 8 ? 8 : r->elements;
	luaL_checkstack(L, (int)n + 2, NULL);
	for (i = 0; i < n; i++)
		redis_push_value(L, r->element[i]);
	if (n == 4 && r->element[0]->type == REDIS_REPLY_STRING &&
	    r->element[0]->len == 8 && memcmp(r->element[0]->str, "pmessage", 8) == 0) {
		lua_pushvalue(L, -3);             /* kind, pattern, channel, payload, pattern */
		lua_remove(L, -4);
	}
	return (int)n;
}

/* ---- the connection's life ---- */

static struct redis_conn *redis_check(lua_State *T)
{
	return luaL_checkudata(T, 1, REDIS_MT);
}

/* Anchors the connection while anyone waits or a lookup runs, else nothing: called
 * after each change of either. A method that makes it busy gives the connection's
 * index on T; a callback only ends waits (idx 0), the connection being anchored. */
static void redis_hold(struct redis_conn *c, lua_State *T, int idx)
{
	if (c->qlen || c->one.co || c->lookup) {
		if (!idx)
			return;
		lua_pushvalue(T, idx);
	} else {
		lua_pushnil(T);
	}
	lem_anchor_set(c->loop, T, c->slot);
}

/* err's message as lem.io words it: lowercase, 'timeout' for ETIMEDOUT. */
static const char *redis_strerror(int err, char buf[128])
{
	const char *m = err == ETIMEDOUT ? "timeout" :
	                err == EPIPE || err == ECONNRESET ? "closed by the server" :
	                strerror_r(err, buf, 128);

	if (m != buf)
		snprintf(buf, 128, "%s", m);
	buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}

static void redis_watch(struct redis_conn *c)
{
	struct ev_loop *ev = lem_ev(c->loop);

	if (c->state == REDIS_OPEN && (c->qlen || c->one.co))
		ev_io_start(ev, &c->r);
	else
		ev_io_stop(ev, &c->r);
}

static void redis_free_msgs(struct redis_conn *c)
{
	struct redis_msg *m, *next;

	for (m = c->mhead; m; m = next) {
		next = m->next;
		freeReplyObject(m->reply);
		free(m);
	}
	c->mhead = NULL;
	c->mtail = &c->mhead;
	c->mbytes = 0;
}

/* Closes c. Every waiter returns nil and the message on top of `from` (the running
 * coroutine, or lem_state in a callback), which is popped; from NULL (a finalizer):
 * nobody waits (a connection with waiters is anchored), nothing is woken. */
static void redis_shut(struct redis_conn *c, lua_State *from)
{
	struct ev_loop *ev = lem_ev(c->loop);

	ev_io_stop(ev, &c->r);
	ev_io_stop(ev, &c->w);
	ev_timer_stop(ev, &c->timer);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = REDIS_CLOSED;
	if (c->reader)
		redisReaderFree(c->reader);
	c->reader = NULL;
	if (c->reply)
		freeReplyObject(c->reply);
	c->reply = NULL;
	free(c->out);
	c->out = NULL;
	c->opos = c->olen = c->ocap = 0;
	redis_free_msgs(c);
	if (c->ai)
		freeaddrinfo(c->ai);
	c->ai = c->next = NULL;
	if (from && (c->qlen || c->one.co)) {
		int msg = lua_gettop(from);
		lem_anchor_push(c->loop, from, c->slot);
		lua_getfenv(from, -1);                   /* from: msg, conn, env */
		if (c->one.co) {
			lua_pushnil(from);
			lua_pushvalue(from, msg);
			lem_wake(c->loop, &c->one, from, 2);
			c->one.co = NULL;
			lua_pushboolean(from, 0);
			lua_rawseti(from, -2, 0);
		}
		for (; c->qlen; c->qlen--) {
			lua_pushnil(from);
			lua_pushvalue(from, msg);
			lem_wake(c->loop, &c->q[c->qhead], from, 2);
			lua_pushnil(from);
			lua_rawseti(from, -2, c->qhead + 1);
			c->qhead = (c->qhead + 1) % c->qcap;
		}
		lua_pop(from, 2);
	}
	c->qlen = 0;
	c->one.co = NULL;
	free(c->q);
	c->q = NULL;
	c->qhead = c->qcap = 0;
	if (from) {
		lua_pop(from, 1);
		redis_hold(c, from, 0);
	}
}

/* In a callback: c fails; its waiters return nil, msg. */
static void redis_fail(struct redis_conn *c, const char *msg)
{
	lua_State *L = lem_state(c->loop);
	if (redis_protect(c->loop, L, redis_push_string, (void *)msg) == 2)
		lua_remove(L, -2);                       /* the error instead of msg */
	redis_shut(c, L);
}

static void redis_fail_errno(struct redis_conn *c, int err)
{
	char buf[128];

	redis_fail(c, redis_strerror(err, buf));
}

static int redis_gc(lua_State *T)
{
	struct redis_conn *c = lua_touserdata(T, 1);

	redis_shut(c, NULL);
	lem_unanchor(c->loop, c->slot);
	c->slot = 0;
	return 0;
}

/* ---- input ---- */

/* Empties env[0] once connect's or message's caller has been woken (the runqueue
 * holds it now), and lets go of the connection if nobody else waits. */
static void redis_forget_one(struct redis_conn *c, lua_State *L)
{
	lem_anchor_push(c->loop, L, c->slot);
	lua_getfenv(L, -1);
	lua_pushboolean(L, 0);
	lua_rawseti(L, -2, 0);
	lua_pop(L, 2);
	redis_hold(c, L, 0);
}

/* A complete reply that no call waits for: a message, or a reply nobody asked for. */
static int redis_dispatch(struct redis_conn *c, redisReply *reply)
{
	lua_State *L = lem_state(c->loop);
	int n;

	if (!c->subscribed) {
		freeReplyObject(reply);
		redis_fail(c, "reply nobody asked for");
		return -EPROTO;
	}
	if (c->one.co && !c->mhead) {                /* a caller of message waits */
		lem_waiter w = c->one;
		c->one.co = NULL;
		ev_timer_stop(lem_ev(c->loop), &c->timer);
		n = redis_protect(c->loop, L, redis_push_message, reply);
		freeReplyObject(reply);
		lem_wake(c->loop, &w, L, n);
		redis_forget_one(c, L);
		return 0;
	}
	struct redis_msg *m = malloc(sizeof *m);
	if (!m) {
		freeReplyObject(reply);
		redis_fail(c, "not enough memory");
		return -ENOMEM;
	}
	m->next = NULL;
	m->reply = reply;
	m->size = c->rsize;
	*c->mtail = m;
	c->mtail = &m->next;
	c->mbytes += m->size;
	return 0;
}

/* Parses the next reply of what was read into c->reply: 1, 0 when its bytes have not all
 * come, -1 when the reader fails (c->rerr). */
static int redis_next(struct redis_conn *c)
{
	void *reply;
	size_t rest;

	if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
		c->rerr = 1;
		return -1;
	}
	if (!reply)
		return 0;
	rest = c->reader->len - c->reader->pos;   /* the reply ended where these begin */
	c->rsize = c->pending - rest;
	c->pending = rest;
	c->reply = reply;
	return 1;
}

/* The head of the FIFO has had its reply: let go of it. */
static void redis_shift(struct redis_conn *c, lua_State *S, int env)
{
	freeReplyObject(c->reply);
	c->reply = NULL;
	lua_pushnil(S);
	lua_rawseti(S, env, c->qhead + 1);        /* the runqueue holds the coroutine now */
	c->qhead = (c->qhead + 1) % c->qcap;
	c->qlen--;
}

/* [-0, +0, m] In a protected call (lem_protect): hands the replies read to the callers
 * of the FIFO, in order, while any waits. One protected call for all the replies of a
 * read, rather than one each: a pipelined GET's values are made for a few dozen
 * instructions, a protected call costs hundreds. A reply whose values could not be made
 * stays in c->reply. */
static int redis_answer(lua_State *S, void *ud)
{
	struct redis_conn *c = ud;
	int env;

	lem_anchor_push(c->loop, S, c->slot);
	lua_getfenv(S, -1);
	env = lua_gettop(S);
	while (c->qlen && (c->reply || redis_next(c) > 0)) {
		lem_wake(c->loop, &c->q[c->qhead], S, redis_push_reply(S, c->reply));
		redis_shift(c, S, env);
		c->woke++;
	}
	return 0;
}

static void redis_readable(struct ev_loop *ev, ev_io *w, int revents)
{
	struct redis_conn *c = (struct redis_conn *)w;
	lua_State *L = lem_state(c->loop);
	char buf[REDIS_CHUNK];
	ssize_t n = read(c->fd, buf, sizeof buf);

	(void)ev; (void)revents;
	if (n <= 0) {
		if (n == 0)
			redis_fail(c, "closed by the server");
		else if (errno != EAGAIN && errno != EINTR)
			redis_fail_errno(c, errno);
		return;
	}
	if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
		redis_fail(c, "not enough memory");
		return;
	}
	c->pending += (size_t)n;
	c->woke = 0;
	while (c->qlen && lem_protect(c->loop, L, redis_answer, c) < 0) {
		if (!c->reply) {
			lua_pop(L, 2);
			redis_fail(c, "not enough memory");
			return;
		}
		/* L: nil, the error: for the caller whose reply it was */
		lem_wake(c->loop, &c->q[c->qhead], L, 2);
		lem_anchor_push(c->loop, L, c->slot);
		lua_getfenv(L, -1);
		redis_shift(c, L, lua_gettop(L));
		lua_pop(L, 2);
	}
	while (!c->rerr && redis_next(c) > 0) {
		redisReply *reply = c->reply;
		c->reply = NULL;
		if (redis_dispatch(c, reply) != 0)
			return;
	}
	if (c->rerr) {
		redis_fail(c, c->reader->errstr);     /* a protocol error, or memory */
		return;
	}
	if (c->pending > c->maxreply) {
		redis_fail(c, "reply too large");
		return;
	}
	if (c->mbytes > c->maxreply) {
		redis_fail(c, "too many unread messages");
		return;
	}
	redis_hold(c, L, 0);
	redis_watch(c);
}

/* ---- output ---- */

static void redis_writable(struct ev_loop *ev, ev_io *w, int revents)
{
	struct redis_conn *c = (struct redis_conn *)((char *)w - offsetof(struct redis_conn, w));
	ssize_t n;

	(void)revents;
	n = send(c->fd, c->out + c->opos, c->olen - c->opos, MSG_NOSIGNAL);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			redis_fail_errno(c, errno);
		return;
	}
	c->opos += (size_t)n;
	if (c->opos == c->olen) {
		c->opos = c->olen = 0;
		ev_io_stop(ev, &c->w);
	}
}

/* Writes n's decimal digits at p; returns their end. */
static char *redis_digits(char *p, size_t n)
{
	char tmp[24];
	int k = 0;

	do
		tmp[k++] = (char)('0' + n % 10);
	while ((n /= 10) != 0);
	while (k)
		*p++ = tmp[--k];
	return p;
}

/* [-0, +0, v] Writes the command of the arguments from index `first` (after verb, when
 * not NULL) in the protocol's form at the end of the output buffer, without counting it
 * in yet: everything a call needs before it suspends. Returns the command's length,
 * which redis_send counts in. Formatted here rather than by hiredis's
 * redisFormatCommandArgv, which allocates the command and prints it with sprintf: that
 * was a third of a pipelined GET's cost. */
static size_t redis_prepare(lua_State *T, struct redis_conn *c, int first, const char *verb)
{
	int argc = lua_gettop(T) - first + 1 + (verb != NULL), i;
	const char *argv_small[16], **argv = argv_small;
	size_t lens_small[16], *lens = lens_small, need;
	char *p;

	if (argc > 16) {
		argv = lua_newuserdata(T, (size_t)argc * (sizeof *argv + sizeof *lens));
		lens = (size_t *)(argv + argc);
	}
	i = 0;
	if (verb) {
		argv[0] = verb;
		lens[0] = strlen(verb);
		i = 1;
	}
	for (; i < argc; i++)
		argv[i] = luaL_checklstring(T, first + i - (verb != NULL), &lens[i]);
	need = 1 + 20 + 2;                        /* *argc\r\n */
	for (i = 0; i < argc; i++) {
		if (lens[i] > (size_t)-1 / 2 - need)
			luaL_error(T, "not enough memory");
		need += 1 + 20 + 2 + lens[i] + 2;     /* $len\r\n bytes \r\n */
	}
	need += c->olen;
	if (need > c->ocap) {
		size_t cap = c->ocap ? c->ocap : 4096;
		char *out;
		while (cap < need)
			cap *= 2;
		if (!(out = realloc(c->out, cap)))
			luaL_error(T, "not enough memory");
		c->out = out;
		c->ocap = cap;
	}
	p = c->out + c->olen;
	*p++ = '*';
	p = redis_digits(p, (size_t)argc);
	*p++ = '\r';
	*p++ = '\n';
	for (i = 0; i < argc; i++) {
		*p++ = '$';
		p = redis_digits(p, lens[i]);
		*p++ = '\r';
		*p++ = '\n';
		memcpy(p, argv[i], lens[i]);
		p += lens[i];
		*p++ = '\r';
		*p++ = '\n';
	}
	return (size_t)(p - (c->out + c->olen));
}

/* Writes the output now; what the socket does not take goes when it is writable (errors
 * show there too). */
static void redis_write(struct redis_conn *c)
{
	ssize_t n;

	if (c->state != REDIS_OPEN || c->opos == c->olen || ev_is_active(&c->w))
		return;
	n = send(c->fd, c->out + c->opos, c->olen - c->opos, MSG_NOSIGNAL);
	if (n > 0)
		c->opos += (size_t)n;
	if (c->opos == c->olen)
		c->opos = c->olen = 0;
	else
		ev_io_start(lem_ev(c->loop), &c->w);
}

/* The flusher: a function queued in the runqueue (lem_spawn) by the first call whose
 * command finds the output empty. It runs after the coroutines queued before it, those
 * a read woke and that call again meanwhile, so that their commands go out in one write,
 * and before the loop polls: no wait for writability, no watcher to start and stop. */
static int redis_flush(lua_State *T)
{
	struct redis_conn *c = lua_touserdata(T, 1);

	c->flush = 0;
	redis_write(c);
	return 0;
}

/* [-0, +0, v] Queues the flusher (upvalue 2 of call) unless one is queued or the write
 * watcher waits already: before the caller suspends, as it may raise. */
static void redis_flush_later(lua_State *T, struct redis_conn *c)
{
	if (c->flush || ev_is_active(&c->w))
		return;
	lua_pushvalue(T, lua_upvalueindex(2));
	lua_pushvalue(T, 1);
	lem_spawn(c->loop, T, 1);
	c->flush = 1;
}

/* After the suspension: counts in the command redis_prepare wrote. With `later` the
 * flusher writes it; else the socket's writability. */
static void redis_send(struct redis_conn *c, size_t len, int later)
{
	c->olen += len;
	if (!later && !ev_is_active(&c->w))
		ev_io_start(lem_ev(c->loop), &c->w);
}

static int redis_closed(lua_State *T)
{
	lua_pushnil(T);
	lua_pushliteral(T, "closed");
	return 2;
}

/* [-0, +0, m] Doubles the FIFO's ring (c->qlen == c->qcap), and its coroutines' places
 * in the environment of the connection at 1 with it: a new table whose array holds
 * them all, so that a call stores its coroutine there without allocating. */
static void redis_grow(lua_State *T, struct redis_conn *c)
{
	unsigned cap = c->qcap ? c->qcap * 2 : 16, i;
	lem_waiter *q;

	lua_getfenv(T, 1);
	lua_createtable(T, (int)cap, 1);
	lua_rawgeti(T, -2, 0);
	lua_rawseti(T, -2, 0);
	for (i = 0; i < cap; i++) {           /* every place exists: nil is stored in place */
		if (i < c->qlen)
			lua_rawgeti(T, -2, (int)((c->qhead + i) % c->qcap) + 1);
		else
			lua_pushboolean(T, 0);
		lua_rawseti(T, -2, (int)i + 1);
	}
	if (!(q = malloc(cap * sizeof *q)))
		luaL_error(T, "not enough memory");
	lua_setfenv(T, 1);
	lua_pop(T, 1);
	for (i = 0; i < c->qlen; i++)
		q[i] = c->q[(c->qhead + i) % c->qcap];
	free(c->q);
	c->q = q;
	c->qhead = 0;
	c->qcap = cap;
}

/* Whether the command (s, len) is lit, in any case: lengths first, as they mostly differ. */
#define REDIS_IS(s, len, lit) ((len) == sizeof lit - 1 && strncasecmp(s, lit, sizeof lit - 1) == 0)

/* Whether argument idx of a call is lit, in any case. */
static int redis_arg_is(lua_State *T, int idx, const char *lit)
{
	size_t len;
	const char *s = lua_tolstring(T, idx, &len);   /* a number too, as redis_prepare */

	return s && len == strlen(lit) && strncasecmp(s, lit, len) == 0;
}

/* [-0, +0, v] Raises "bad argument" for a command that call cannot follow. Its FIFO
 * needs one reply per command: a command that silences replies, changes the connection's
 * mode or streams replies would leave its caller waiting forever, or hand a reply to the
 * caller behind it; RESP3 replies (maps, pushes) are not read. Runs at every call: most
 * commands leave at their first letter or their length, before any compare. */
static void redis_refuse(lua_State *T, const char *cmd, size_t len)
{
	const char *why = NULL;

	switch (cmd[0] | 0x20) {                  /* an ASCII letter, folded to lower case */
	case 'c':
		if (REDIS_IS(cmd, len, "CLIENT") && redis_arg_is(T, 3, "REPLY"))
			why = "CLIENT REPLY is not supported: every command gets its reply";
		break;
	case 'h':
		if (REDIS_IS(cmd, len, "HELLO") && lua_isstring(T, 3) && !redis_arg_is(T, 3, "2"))
			luaL_argerror(T, 3, "only protocol 2 is supported: replies are read as RESP2");
		break;
	case 'm':
		if (REDIS_IS(cmd, len, "MONITOR"))
			why = "MONITOR is not supported: it streams replies nobody asked for";
		break;
	case 'p':
		if (REDIS_IS(cmd, len, "PSUBSCRIBE"))
			why = "PSUBSCRIBE changes the connection's mode: use psubscribe";
		else if (REDIS_IS(cmd, len, "PUNSUBSCRIBE"))
			why = "PUNSUBSCRIBE changes the connection's mode: use punsubscribe";
		else if (REDIS_IS(cmd, len, "PSYNC"))
			why = "PSYNC is for replicas: it streams replies nobody asked for";
		break;
	case 'r':
		if (REDIS_IS(cmd, len, "REPLCONF"))
			why = "REPLCONF is for replicas: some of its forms get no reply";
		break;
	case 's':
		if (REDIS_IS(cmd, len, "SUBSCRIBE"))
			why = "SUBSCRIBE changes the connection's mode: use subscribe";
		else if (REDIS_IS(cmd, len, "SSUBSCRIBE") || REDIS_IS(cmd, len, "SUNSUBSCRIBE"))
			why = "sharded pub/sub is not supported: it changes the connection's mode";
		else if (REDIS_IS(cmd, len, "SYNC"))
			why = "SYNC is for replicas: it streams replies nobody asked for";
		break;
	case 'u':
		if (REDIS_IS(cmd, len, "UNSUBSCRIBE"))
			why = "UNSUBSCRIBE changes the connection's mode: use unsubscribe";
		break;
	}
	if (why)
		luaL_argerror(T, 2, why);
}

/* r:call(command, ...) --> reply | nil, message */
static int redis_call(lua_State *T)
{
	struct redis_conn *c = lua_touserdata(T, 1);
	const char *cmd;
	size_t len;
	unsigned at;
	int r, now;

	/* luaL_checkudata's look-up of the metatable by name, at every call, cost more
	 * than the rest of the check: call has it as an upvalue */
	if (!c || !lua_getmetatable(T, 1) || !lua_rawequal(T, -1, lua_upvalueindex(1)))
		redis_check(T);                       /* raises "bad argument" */
	lua_pop(T, 1);
	cmd = luaL_checklstring(T, 2, &len);
	redis_refuse(T, cmd, len);
	if (c->state != REDIS_OPEN)
		return redis_closed(T);
	if (c->subscribed) {
		lua_pushnil(T);
		lua_pushliteral(T, "subscribed: use another connection for commands");
		return 2;
	}
	len = redis_prepare(T, c, 2, NULL);
	lua_settop(T, 1);
	if (c->qlen == c->qcap)
		redis_grow(T, c);
	/* Alone on an idle connection (request/response: the last read woke one caller at
	 * most), written right after the suspension, without the flusher's coroutine; else
	 * with the commands of the others the read woke, in one write. */
	now = !c->qlen && c->woke <= 1 && !c->flush && !ev_is_active(&c->w);
	if (!now)
		redis_flush_later(T, c);
	at = (c->qhead + c->qlen) % c->qcap;
	lua_pushvalue(T, 1);                      /* T: conn, conn */
	r = lem_suspend(T, &c->q[at], 2);
	/* Nothing may raise from here on. */
	c->qlen++;
	lua_getfenv(T, 1);
	lua_pushthread(c->q[at].co);
	lua_xmove(c->q[at].co, T, 1);
	lua_rawseti(T, -2, (int)at + 1);          /* the place exists: no allocation */
	lua_pop(T, 1);
	if (c->qlen == 1)                         /* else the connection is held already */
		redis_hold(c, T, 1);
	redis_send(c, len, 1);
	if (now)
		redis_write(c);
	redis_watch(c);
	return r;
}

/* r:subscribe(channel, ...), and psubscribe, unsubscribe, punsubscribe --> true |
 * nil, message. They wait for nothing: their confirmations come through message. */
static int redis_pubsub(lua_State *T)
{
	struct redis_conn *c = redis_check(T);
	const char *verb = lua_tostring(T, lua_upvalueindex(1));

	if (c->state != REDIS_OPEN)
		return redis_closed(T);
	redis_send(c, redis_prepare(T, c, 2, verb), 0);
	c->subscribed = 1;
	lua_pushboolean(T, 1);
	return 1;
}

static void redis_message_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct redis_conn *c = (struct redis_conn *)((char *)w - offsetof(struct redis_conn, timer));
	lua_State *L = lem_state(c->loop);
	lem_waiter one = c->one;

	(void)ev; (void)revents;
	c->one.co = NULL;
	lua_pushnil(L);
	if (redis_protect(c->loop, L, redis_push_string, "timeout") == 2)
		lua_remove(L, -2);
	lem_wake(c->loop, &one, L, 2);
	redis_forget_one(c, L);
	redis_watch(c);
}

/* [-1, +0, -] Suspends T (connect's or message's caller) as c->one, keeping the
 * connection on top of T at 1, and puts its coroutine in env[0], a key that exists:
 * nothing allocates after the suspension. Returns what the lua_CFunction returns. */
static int redis_suspend_one(lua_State *T, struct redis_conn *c)
{
	int r = lem_suspend(T, &c->one, 1);

	lua_getfenv(T, 1);
	lua_pushthread(c->one.co);
	lua_xmove(c->one.co, T, 1);
	lua_rawseti(T, -2, 0);
	lua_pop(T, 1);
	return r;
}

/* r:message([timeout]) --> kind, channel, payload [, pattern] | nil, message */
static int redis_message(lua_State *T)
{
	struct redis_conn *c = redis_check(T);
	int timed = !lua_isnoneornil(T, 2), r;
	lua_Number timeout = timed ? luaL_checknumber(T, 2) : 0;
	struct redis_msg *m;

	luaL_argcheck(T, timeout == timeout, 2, "timeout is not a number");
	lua_settop(T, 1);
	if ((m = c->mhead)) {
		r = redis_push_message(T, m->reply);
		if (!(c->mhead = m->next))
			c->mtail = &c->mhead;
		c->mbytes -= m->size;
		freeReplyObject(m->reply);
		free(m);
		return r;
	}
	if (c->state != REDIS_OPEN)
		return redis_closed(T);
	lua_pushnil(T);
	if (!c->subscribed)
		lua_pushliteral(T, "not subscribed");
	else if (c->one.co)
		lua_pushliteral(T, "busy");
	else if (timed && timeout <= 0)
		lua_pushliteral(T, "timeout");
	else
		lua_pop(T, 1);
	if (lua_gettop(T) > 1)
		return 2;
	lua_pushvalue(T, 1);
	r = redis_suspend_one(T, c);
	redis_hold(c, T, 1);
	if (timed) {
		ev_timer_init(&c->timer, redis_message_timeout, timeout, 0);
		ev_timer_start(lem_ev(c->loop), &c->timer);
		lem_deadline(c->loop, ev_now(lem_ev(c->loop)) + timeout);
	}
	redis_watch(c);
	return r;
}

/* r:close() --> true. Its waiters return nil, 'closed'. */
static int redis_close(lua_State *T)
{
	struct redis_conn *c = redis_check(T);

	lua_settop(T, 1);
	lua_pushliteral(T, "closed");
	redis_shut(c, T);
	lua_pushboolean(T, 1);
	return 1;
}

/* r:limit([bytes]) --> the most bytes one reply (or the unread messages) may take */
static int redis_limit(lua_State *T)
{
	struct redis_conn *c = redis_check(T);

	if (!lua_isnoneornil(T, 2)) {
		lua_Number n = luaL_checknumber(T, 2);
		luaL_argcheck(T, n >= 1024 && n <= (lua_Number)((size_t)1 << 40), 2,
		              "from 1024 bytes to 1 TiB");
		c->maxreply = (size_t)n;
	}
	lua_pushnumber(T, (lua_Number)c->maxreply);
	return 1;
}

static int redis_tostring(lua_State *T)
{
	struct redis_conn *c = redis_check(T);

	lua_pushfstring(T, "redis (%s): %p", c->state == REDIS_OPEN ? "open" :
	                c->state == REDIS_CLOSED ? "closed" : "connecting", (void *)c);
	return 1;
}

/* ---- connect ---- */

/* The connect is over: its caller returns the connection, or nil, msg. */
static void redis_connected(struct redis_conn *c, const char *msg)
{
	lua_State *L = lem_state(c->loop);
	lem_waiter one = c->one;

	if (msg) {
		redis_fail(c, msg);
		return;
	}
	ev_io_stop(lem_ev(c->loop), &c->w);
	ev_timer_stop(lem_ev(c->loop), &c->timer);
	if (c->ai)
		freeaddrinfo(c->ai);
	c->ai = c->next = NULL;
	c->state = REDIS_OPEN;
	ev_io_set(&c->w, c->fd, EV_WRITE);
	ev_set_cb(&c->w, redis_writable);
	ev_io_set(&c->r, c->fd, EV_READ);
	c->one.co = NULL;
	lem_anchor_push(c->loop, L, c->slot);
	lua_getfenv(L, -1);
	lua_pushboolean(L, 0);
	lua_rawseti(L, -2, 0);
	lua_pop(L, 1);
	lem_wake(c->loop, &one, L, 1);            /* return the connection */
	redis_hold(c, L, 0);
}

/* Tries c->next and the addresses after it; returns 0 (connected), 1 (in progress) or
 * the last failure, -errno. */
static int redis_try(struct redis_conn *c, int err)
{
	while (c->next) {
		struct addrinfo *ai = c->next;
		int fd, r;

		c->next = ai->ai_next;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		r = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (r == 0 || errno == EINPROGRESS || errno == EINTR) {
			int one = 1;
			/* Commands are small writes: send them at once, not after an ACK. */
			if (ai->ai_family != AF_UNIX)
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			c->fd = fd;
			return r == 0 ? 0 : 1;
		}
		err = -errno;
		close(fd);
	}
	return err;
}

static void redis_connect_next(struct redis_conn *c, int err);

/* The outcome of a non-blocking connect on fd: 0, or an errno. */
static int redis_connect_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof err;

	return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ? errno : err;
}

static void redis_connect_writable(struct ev_loop *ev, ev_io *w, int revents)
{
	struct redis_conn *c = (struct redis_conn *)((char *)w - offsetof(struct redis_conn, w));
	int err = redis_connect_error(c->fd);

	(void)revents;
	if (err == 0) {
		redis_connected(c, NULL);
		return;
	}
	ev_io_stop(ev, &c->w);
	close(c->fd);
	c->fd = -1;
	redis_connect_next(c, -err);
}

/* Goes on with the next address, or ends the connect. */
static void redis_connect_next(struct redis_conn *c, int err)
{
	int r = redis_try(c, err);

	if (r == 0) {
		redis_connected(c, NULL);
	} else if (r == 1) {
		ev_io_init(&c->w, redis_connect_writable, c->fd, EV_WRITE);
		ev_io_start(lem_ev(c->loop), &c->w);
	} else {
		redis_fail_errno(c, -r);
	}
}

static void redis_connect_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct redis_conn *c = (struct redis_conn *)((char *)w - offsetof(struct redis_conn, timer));

	(void)ev; (void)revents;
	redis_fail(c, "timeout");
}

static void redis_lookup_work(void *arg)
{
	struct redis_lookup *l = arg;
	struct addrinfo hints;
	char port[16];

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	snprintf(port, sizeof port, "%d", l->port);
	l->err = getaddrinfo(l->host, port, &hints, &l->res);
}

static void redis_lookup_done(lem_loop *loop, void *arg)
{
	struct redis_lookup *l = arg;
	struct redis_conn *c = l->c;
	lua_State *L = lem_state(loop);

	c->lookup = NULL;
	if (c->state != REDIS_CONNECTING || !c->one.co) {   /* timed out, or never waited */
		if (l->res)
			freeaddrinfo(l->res);
		free(l);
		if (c->state == REDIS_CONNECTING) {
			lua_pushnil(L);                     /* nobody waits: close it */
			redis_shut(c, L);
		} else {
			redis_hold(c, L, 0);
		}
		return;
	}
	if (l->err) {
		const char *msg = gai_strerror(l->err);
		free(l);
		redis_fail(c, msg);
		return;
	}
	c->ai = c->next = l->res;
	free(l);
	redis_connect_next(c, -EADDRNOTAVAIL);
}

/* redis.connect(host, port [, timeout]) or redis.connect(unix_path [, timeout])
 * --> connection | nil, message. A path has a slash: './r.sock', not 'r.sock'. */
static int redis_connect(lua_State *T)
{
	lem_loop *loop = lem_loop_of(T);
	const char *host = luaL_checkstring(T, 1);
	int unix_path = strchr(host, '/') != NULL, r, port = 0;   /* './r.sock' */
	lua_Number timeout = -1;
	struct redis_conn *c;
	struct addrinfo hints, *res = NULL;
	struct redis_lookup *l = NULL;
	struct sockaddr_un un;

	if (!unix_path) {
		lua_Number p = luaL_checknumber(T, 2);
		luaL_argcheck(T, p >= 1 && p <= 65535 && p == (int)p, 2, "port from 1 to 65535");
		port = (int)p;
	} else if (strlen(host) >= sizeof un.sun_path) {
		luaL_argerror(T, 1, "socket path too long");
	}
	if (!lua_isnoneornil(T, 3 - unix_path)) {
		timeout = luaL_checknumber(T, 3 - unix_path);
		luaL_argcheck(T, timeout == timeout, 3 - unix_path, "timeout is not a number");
		if (timeout < 0)
			timeout = 0;
	}
	lua_settop(T, 3);
	c = lua_newuserdata(T, sizeof *c);        /* 4 */
	memset(c, 0, sizeof *c);
	c->fd = -1;
	c->loop = loop;
	c->state = REDIS_CLOSED;                  /* until it is whole */
	c->mtail = &c->mhead;
	c->maxreply = REDIS_MAXREPLY;
	ev_init(&c->r, redis_readable);
	ev_init(&c->w, redis_writable);
	ev_init(&c->timer, redis_connect_timeout);
	luaL_getmetatable(T, REDIS_MT);
	lua_setmetatable(T, 4);
	lua_createtable(T, 0, 1);                 /* env[0]: connect's and message's caller */
	lua_pushboolean(T, 0);
	lua_rawseti(T, -2, 0);
	lua_setfenv(T, 4);
	lua_pushnil(T);
	if (!(c->slot = lem_anchor(loop, T)))
		return redis_closed(T);               /* the loop closes */
	if (!(c->reader = redisReaderCreate()))
		luaL_error(T, "not enough memory");
	c->state = REDIS_CONNECTING;

	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	if (unix_path) {
		memset(&un, 0, sizeof un);
		un.sun_family = AF_UNIX;
		strcpy(un.sun_path, host);
		hints.ai_family = AF_UNIX;
		hints.ai_addr = (struct sockaddr *)&un;
		hints.ai_addrlen = sizeof un;
		c->next = &hints;
	} else {
		char ps[16];
		snprintf(ps, sizeof ps, "%d", port);
		hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
		r = getaddrinfo(host, ps, &hints, &res);   /* numeric: it never blocks */
		if (r == EAI_MEMORY)
			luaL_error(T, "not enough memory");
		if (r == 0)
			c->ai = c->next = res;
	}
	if (c->next) {
		r = redis_try(c, -EADDRNOTAVAIL);
		if (unix_path)
			c->next = NULL;
		if (r <= 0) {
			if (r == 0) {
				if (c->ai)
					freeaddrinfo(c->ai);
				c->ai = c->next = NULL;
				c->state = REDIS_OPEN;
				ev_io_set(&c->w, c->fd, EV_WRITE);
				ev_io_set(&c->r, c->fd, EV_READ);
				lua_settop(T, 4);
				return 1;                     /* return the connection */
			}
			char buf[128];
			redis_shut(c, NULL);
			lua_pushnil(T);
			lua_pushstring(T, redis_strerror(-r, buf));
			return 2;
		}
		if (timeout == 0)
			goto timeout;
		ev_set_cb(&c->w, redis_connect_writable);
		ev_io_set(&c->w, c->fd, EV_WRITE);
	} else {                                  /* a name: looked up in the pool */
		size_t n = strlen(host) + 1;
		if (timeout == 0)
			goto timeout;
		if (!(l = malloc(sizeof *l + n)))
			luaL_error(T, "not enough memory");
		l->c = c;
		l->port = port;
		l->err = 0;
		l->res = NULL;
		memcpy(l->host, host, n);
		if ((r = lem_async_run(loop, redis_lookup_work, redis_lookup_done, l)) != 0) {
			char buf[128];
			free(l);
			redis_shut(c, NULL);
			lua_pushnil(T);
			lua_pushstring(T, redis_strerror(-r, buf));
			return 2;
		}
		c->lookup = l;
		lua_pushvalue(T, 4);                  /* anchored until the lookup ends */
		lem_anchor_set(loop, T, c->slot);
	}
	lua_pushvalue(T, 4);
	r = redis_suspend_one(T, c);
	lua_pushvalue(T, 1);
	lem_anchor_set(loop, T, c->slot);
	if (!c->lookup)
		ev_io_start(lem_ev(loop), &c->w);
	if (timeout > 0) {
		ev_timer_set(&c->timer, timeout, 0);
		ev_timer_start(lem_ev(loop), &c->timer);
	}
	return r;
timeout:
	redis_shut(c, NULL);
	lua_pushnil(T);
	lua_pushliteral(T, "timeout");
	return 2;
}

static int redis_null_tostring(lua_State *T)
{
	lua_pushliteral(T, "redis.null");
	return 1;
}

int luaopen_lem_redis(lua_State *L)
{
	static const char *verbs[] = { "subscribe", "psubscribe", "unsubscribe",
	                               "punsubscribe", NULL };
	static const luaL_Reg methods[] = {
		{ "message", redis_message }, { "close", redis_close },
		{ "limit", redis_limit }, { NULL, NULL }
	};
	static const luaL_Reg meta[] = {
		{ "__gc", redis_gc }, { "__tostring", redis_tostring }, { NULL, NULL }
	};
	int i;

	lua_pushlightuserdata(L, (void *)&redis_null_key);
	lua_rawget(L, LUA_REGISTRYINDEX);
	if (lua_isnil(L, -1)) {               /* once per loop */
		lua_pushlightuserdata(L, (void *)&redis_null_key);
		lua_newuserdata(L, 0);
		lua_createtable(L, 0, 2);
		lua_pushcfunction(L, redis_null_tostring);
		lua_setfield(L, -2, "__tostring");
		lua_pushliteral(L, "redis.null");
		lua_setfield(L, -2, "__metatable");
		lua_setmetatable(L, -2);
		lua_rawset(L, LUA_REGISTRYINDEX);
	}
	lua_pop(L, 1);
	luaL_newmetatable(L, REDIS_MT);
	luaL_register(L, NULL, meta);
	lua_newtable(L);
	luaL_register(L, NULL, methods);
	lua_pushvalue(L, -2);                 /* call's upvalues: the metatable, the flusher */
	lua_pushcfunction(L, redis_flush);
	lua_pushcclosure(L, redis_call, 2);
	lua_setfield(L, -2, "call");
	for (i = 0; verbs[i]; i++) {
		lua_pushstring(L, verbs[i]);
		lua_pushcclosure(L, redis_pubsub, 1);
		lua_setfield(L, -2, verbs[i]);
	}
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	lua_newtable(L);                      /* the module */
	lua_pushcfunction(L, redis_connect);
	lua_setfield(L, -2, "connect");
	redis_pushnull(L);
	lua_setfield(L, -2, "null");
	lua_pushnumber(L, (lua_Number)REDIS_MAXREPLY);
	lua_setfield(L, -2, "maxreply");
	return 1;
}
