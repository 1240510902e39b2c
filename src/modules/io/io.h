/* io.h: lem.io's files: the module, errors and suspended callers (io.c), streams
 * (stream.c), listeners (listener.c), connects (connect.c), addresses and name lookups
 * (socket.c), TLS (tls.c). */
#ifndef LEM_IO_H
#define LEM_IO_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include "lem.h"

#define IO_STREAM_MT   "lem.io.stream"
#define IO_LISTENER_MT "lem.io.listener"
#define IO_TLS_CTX_MT  "lem.io.tls.context"

/* What io_check knows an object's type by: a userdata at least `size` bytes long whose
 * member at offset `at` holds the address of its io_type. Two API calls, where comparing
 * metatables took four (some 80 instructions a method call fewer). */
struct io_type {
	const char *name;
	size_t size, at;
};
extern const struct io_type io_stream_type, io_listener_type;

/* The struct of type `type` whose member `field` is at p: watchers are embedded. */
#define io_container_of(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

enum io_kind { IO_TCP, IO_UNIX, IO_STD };

/* Errors are negative inside lem.io: -errno, or one of these negated. Past every errno:
 * lem.io's own failures, getaddrinfo's codes (io_eai), a certificate that failed
 * verification (IO_EVERIFY + X509_V_ERR_*) and OpenSSL's errors (IO_ETLS + its library
 * and reason, tls.c). */
enum { IO_ELINE = 4096, IO_ETOOLONG, IO_EAI = 8192, IO_EVERIFY = 12288, IO_ETLS = 16384 };

#define IO_DELIM_MAX 8     /* the longest delimiter of a '*u' read */

/* A peer's address as accept or connect saw it. */
union io_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
	struct sockaddr_un un;
};

/* lem.io's state in one loop, made once (io_state). */
struct io_listener;
/* Read buffers kept for reuse per loop: a server under load releases a connection's
 * buffer at every wait for its next request and takes one again when it comes; with
 * that many kept (256 KiB at most), malloc and free are not paid per request. */
#define IO_SPARES 64

struct io_state {
	lem_loop *loop;
	struct io_listener *listeners;   /* the open ones: the shutdown closes them */
	int waits;                /* callers suspended now (io_suspend) */
	int idle;                 /* streams waiting in stream:idle, with no caller */
	int weak;                 /* of those, the ones that keep no loop running */
	int shutdown;             /* the shutdown began: listeners accept no more */
	int streams;              /* open streams, but the standard ones (utils.stats) */
	char *spare[IO_SPARES];   /* first-size read buffers that waiting streams gave
	                             back, for the next streams that read (stream.c) */
	int nspare;
};

/* A caller suspended on an object (a reader, a writer, an accept, a connect): its waiter,
 * the anchor slots that keep it and a value it needs alive while nothing else refers to
 * them, and the watchers that will wake it. The slots are taken at the first wait and
 * kept until the object closes: a wait then allocates nothing, so nothing raises once
 * its caller is suspended. */
struct io_wait {
	lem_waiter w;         /* w.co: the suspended caller; NULL while nobody waits */
	int co_slot;          /* anchor slot of w.co while it waits, nil else; 0: not taken */
	int val_slot;         /* anchor slot of the value it needs kept: the string being
	                         written, the autospawn handler, the stream being connected */
	ev_io *io;            /* its watchers: stopped when the wait ends */
	ev_timer *timer;
	struct io_state *st;  /* counts it */
};

struct io_connect;
struct io_tls_ctx;
struct io_stream;
struct iovec;

/* How a stream moves its bytes when not by read() and write() on its descriptor (TLS).
 * recv and send return the bytes moved, 0 at EOF (recv), or -errno; -EAGAIN: wait for
 * the stream's watcher (r for recv, w for send), whose events they may have changed.
 * recv sets s->drained when nothing more can come before the watcher says so. */
struct io_transport {
	ssize_t (*recv)(struct io_stream *s, char *buf, size_t len);
	ssize_t (*send)(struct io_stream *s, const struct iovec *iov, int cnt);
	void (*shut)(struct io_stream *s, lua_State *from);   /* before the close */
};

/* A stream: one descriptor, a read buffer, at most one reader and one writer at a time.
 * The watchers are embedded (no allocation per operation); r comes first so that its
 * callback gets the stream back by a cast. */
struct io_stream {
	ev_io r;                  /* readable: a suspended read */
	ev_io w;                  /* writable: a suspended write */
	ev_timer timer;           /* timeout of the suspended read */
	ev_timer wtimer;          /* timeout of the suspended write (stream:write_timeout) */
	const struct io_type *type;   /* &io_stream_type (io_check) */
	lem_loop *loop;
	struct io_state *st;
	int fd;                   /* -1 once closed, or until a connect gives it one */
	unsigned char kind;       /* enum io_kind */
	unsigned char eof:1;      /* the peer closed its end: read() returned 0 */
	unsigned char drained:1;  /* the last read() was short: the socket is likely empty */
	unsigned char rfmt:2;     /* the reader's format: IO_LINE, IO_ALL, IO_COUNT or IO_UNTIL */
	unsigned char idle:1;     /* in stream:idle: the reader's slots hold the stream and
	                             the handler, and no coroutine waits */
	unsigned char weak:2;     /* its idle watchers that keep no loop running (ev_unref) */
	unsigned char dlen;       /* IO_UNTIL: the delimiter's length */
	unsigned char peerlen;    /* 0: peer unknown, ask the kernel */
	int err;                  /* -errno of a failed read(), reported once; or 0 */
	int stdflags;             /* IO_STD: file status flags before lem.io, or -1 */

	struct io_wait reader;
	size_t rcount;            /* IO_COUNT: bytes wanted */
	size_t take;              /* buffer start once the answer decided is consumed */
	size_t tlen;              /* the answer's length, from start */
	size_t linemax;           /* the longest line '*l' returns (stream:limit) */
	size_t allmax;            /* the most bytes '*a' or a count read returns */

	char *buf;                /* read buffer: data in [start, end), cap bytes */
	size_t start, end, cap;
	size_t scan;              /* IO_LINE: no '\n' in [start, scan); IO_UNTIL: no
	                             delimiter starts there */
	char delim[IO_DELIM_MAX]; /* IO_UNTIL: the delimiter, dlen bytes */

	struct io_wait writer;    /* its value: the string being written */
	const char *wp;           /* what is left of it */
	size_t wlen;
	double wtimeout;          /* seconds a write may wait; < 0: no limit */

	struct io_connect *conn;  /* io.tcp.connect in progress (connect.c), else NULL */
	const struct io_transport *tp;   /* NULL: read() and write() */
	void *tpdata;             /* the transport's state (struct io_tls) */
	union io_addr peer;       /* the peer, remembered at accept or connect; only the room
	                             io_stream_new was given exists: an idle TCP client's
	                             stream keeps 16 bytes, not the 110 of a Unix path */
};

/* A listening socket. In autospawn mode every accepted client starts a coroutine. */
struct io_listener {
	ev_io r;                  /* first: its callback gets the listener back by a cast */
	ev_timer timer;           /* accept timeout, or the pause after EMFILE */
	const struct io_type *type;   /* &io_listener_type (io_check) */
	lem_loop *loop;
	struct io_state *st;
	int fd;                   /* -1 once closed, or until a bind gives it one */
	unsigned char kind;       /* IO_TCP or IO_UNIX */
	unsigned char spawning;   /* the caller waits in autospawn (its value: the handler),
	                             not in accept; read only while it waits */
	struct io_wait caller;    /* accept, autospawn, or io.tcp.listen looking a name up */
	char *path;               /* IO_UNIX: the socket file, removed at close */
	int backlog;
	int err;                  /* accept: the -errno its pause ends with, else 0 */
	struct io_tls_ctx *tls;   /* io.tls.listen: each client's stream speaks TLS */
	struct io_listener *next, **pprev;   /* in st->listeners while open; pprev NULL once
	                                        out */
};

enum { IO_LINE, IO_ALL, IO_COUNT, IO_UNTIL };

/* io.c */
const char *io_strerror(int err, char buf[128]);  /* err < 0: its message */
int io_error(lua_State *T, int err);          /* [-0, +2, m] nil, message; returns 2 */
int io_eai(int gai, int syserr);              /* getaddrinfo's failure as an error < 0 */
lua_Number io_opttimeout(lua_State *T, int idx);  /* -1: none; 0 for negatives */
void *io_check(lua_State *T, const struct io_type *t);   /* self, an object of type t */
void *io_check_open(lua_State *T, const struct io_type *t, size_t fd);   /* and not
                                                closed: the int at offset fd is not negative */
struct io_state *io_state(lua_State *T);      /* of T's loop */
void io_wait_init(struct io_wait *iw, struct io_state *st, ev_io *io, ev_timer *timer);
int io_busy(lem_loop *loop, struct io_wait *iw);
/* [-0, +0, m] Takes iw's anchor slots (and its value's, with val) if not taken yet;
 * returns 0 when the loop closes and gives none. */
int io_wait_slots(lem_loop *loop, lua_State *T, struct io_wait *iw, int val);
int io_suspend(lem_loop *loop, lua_State *T, struct io_wait *iw, int val);
int io_wake(lem_loop *loop, struct io_wait *iw, lua_State *from, int nargs);
int io_wake_error(lem_loop *loop, struct io_wait *iw, lua_State *from, int err);
void io_wait_end(lem_loop *loop, struct io_wait *iw);
void io_wait_free(lem_loop *loop, struct io_wait *iw, lua_State *from);
/* Registers the metatable `name` with __metatable = label, the methods (each checks its
 * self with io_check), __gc (shut(self, NULL)) and __tostring (from the int at offset fd). */
void io_class(lua_State *L, const char *name, const char *label,
              void (*shut)(void *self, lua_State *from), size_t fd, const luaL_Reg *methods);

/* stream.c */
struct io_stream *io_stream_new(lua_State *T, lem_loop *loop, int fd, int kind,
                               size_t peercap);   /* room for a peer of that length */
void io_stream_ready(struct io_stream *s, int fd);   /* sets fd and the stream's watchers */
void io_stream_shut(void *s, lua_State *from);   /* a struct io_stream */
void io_stream_open(lua_State *L);
void io_std_open(lua_State *L);               /* sets io.stdin, io.stdout, io.stderr */

/* listener.c */
int io_listen_tcp(lua_State *T);              /* io.tcp.listen */
int io_listen_tcp_ctx(lua_State *T, struct io_tls_ctx *ctx);   /* and io.tls.listen */
int io_listen_unix(lua_State *T);             /* io.unix.listen */
void io_listener_open(lua_State *L);
void io_listener_shutdown(struct io_state *st, lua_State *from);   /* closes them all */

/* connect.c */
int io_connect_tcp(lua_State *T);             /* io.tcp.connect */
int io_connect_unix(lua_State *T);            /* io.unix.connect */
void io_connect_free(struct io_stream *s);    /* drops s->conn, waking nobody */

/* tls.c */
void io_tls_open(lua_State *L);              /* io.tls on the module table on top of L */
int io_tls_listen(lua_State *T);             /* io.tls.listen */
int io_tls_accepted(struct io_stream *s, struct io_tls_ctx *c);   /* 0 or -ENOMEM */
struct io_tls_ctx *io_tls_ctx_ref(struct io_tls_ctx *c);   /* takes a reference */
void io_tls_ctx_free(struct io_tls_ctx *c);   /* drops one */
const char *io_tls_strerror(int err, char buf[128]);   /* IO_EVERIFY, IO_ETLS */

/* socket.c: addresses and name lookups */
struct addrinfo;
struct io_lookup;
/* Called in the loop's thread when the lookup r for the object obj ended: r->res holds
 * the addresses, or r->err says why not. The object is on top of L. */
typedef void io_lookup_done(lua_State *L, void *obj, struct io_lookup *r);
struct io_lookup {
	/* set by the loop thread, read by the worker */
	int port;
	int passive;              /* addresses to bind (listen), not to connect to */
	/* set by the worker, read by the loop thread in done */
	struct addrinfo *res;     /* freed after done, unless done takes it (NULL) */
	int err;                  /* 0, or a negative error (io_eai) */
	/* loop thread only */
	int obj;                  /* anchor slot of the object that waits */
	io_lookup_done *done;
	char host[];
};
int io_lookup_start(lua_State *T, int idx, const char *host, int port, int passive,
                    io_lookup_done *done);
int io_numeric_addr(const char *host, int port, int passive, struct addrinfo **res);
const char *io_checkhost(lua_State *T, int idx);
int io_checkport(lua_State *T, int idx);
void io_checkunix(lua_State *T, int idx, struct sockaddr_un *un);
int io_pushaddr(lua_State *T, const struct sockaddr *sa, unsigned len);  /* addr, port */

#endif
