/* io.h: lem.io's objects, shared by its files: streams (stream.c), listeners and
 * addresses (socket.c), the module table (io.c). */
#ifndef LEM_IO_H
#define LEM_IO_H

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include "../../loop/loop.h"

#define IO_STREAM_MT   "lem.io.stream"
#define IO_LISTENER_MT "lem.io.listener"

enum io_kind { IO_TCP, IO_UNIX, IO_STD };

/* lem.io's own runtime failures, numbered past every errno (io_strerror). */
enum { IO_ELINE = 4096, IO_ETOOLONG };

/* A peer's address as accept or connect saw it. */
union io_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
	struct sockaddr_un un;
};

/* A suspended caller: its waiter and the anchor slot that keeps its coroutine alive.
 * The coroutine's stack keeps the object (the method's self) alive in turn, so a stream
 * with a suspended reader is never collected. slot == 0: nobody waits. */
struct io_wait {
	lem_waiter w;
	int slot;
};

/* A stream: one descriptor, a read buffer, at most one reader and one writer at a time.
 * The watchers are embedded (no allocation per operation); r comes first so that its
 * callback gets the stream back by a cast. */
struct io_stream {
	ev_io r;                  /* readable: a suspended read */
	ev_io w;                  /* writable: a suspended write, or a connect in progress */
	ev_timer timer;           /* timeout of the suspended read or connect */
	lem_loop *loop;
	lua_State *S;             /* the loop's scratch thread for callbacks (io_protect) */
	int fd;                   /* -1 once closed */
	unsigned char kind;       /* enum io_kind */
	unsigned char eof;        /* the peer closed its end: read() returned 0 */
	unsigned char drained;    /* the last read() was short: the socket is likely empty */
	unsigned char connecting; /* w watches a non-blocking connect */
	int err;                  /* errno of a failed read(), reported once */

	struct io_wait rd;        /* the reader (or the connecting caller) */
	int rfmt;                 /* its format: IO_LINE, IO_ALL or IO_COUNT */
	size_t rcount;            /* IO_COUNT: bytes wanted */
	size_t take;              /* buffer start once the answer decided is consumed */
	size_t tlen;              /* the answer's length, from start */
	size_t linemax;           /* the longest line '*l' returns (stream:limit) */
	size_t allmax;            /* the most bytes '*a' or a count read returns */

	char *buf;                /* read buffer: data in [start, end), cap bytes */
	size_t start, end, cap;
	size_t scan;              /* IO_LINE: no '\n' in [start, scan) */

	struct io_wait wr;        /* the writer */
	int wdata;                /* anchor slot of the string being written */
	const char *wp;           /* what is left of it */
	size_t wlen;

	struct addrinfo *ai, *ai_next;  /* connect: the addresses, the next to try */
	int stdflags;             /* IO_STD: file status flags before lem.io, or -1 */
	socklen_t peerlen;        /* 0: peer unknown, ask the kernel */
	union io_addr peer;       /* the peer, remembered at accept or connect */
};

/* A listening socket. In autospawn mode every accepted client starts a coroutine. */
struct io_listener {
	ev_io r;
	ev_timer timer;           /* accept timeout, or the pause after EMFILE */
	lem_loop *loop;
	lua_State *S;             /* the loop's scratch thread for callbacks (io_protect) */
	int fd;
	unsigned char kind;       /* IO_TCP or IO_UNIX */
	struct io_wait acc;       /* accept() or autospawn() caller */
	int handler;              /* autospawn: anchor slot of the handler, else 0 */
	char *path;               /* IO_UNIX: the socket file, removed at close */
	int backlog;
};

enum { IO_LINE, IO_ALL, IO_COUNT };

/* The stream whose timer w is. */
static inline struct io_stream *io_timer_stream(ev_timer *w)
{
	return lem_container_of(w, struct io_stream, timer);
}

/* io.c */
const char *io_strerror(int err, char buf[128]);  /* an errno or IO_E*: its message */
int io_error(lua_State *T, int err);          /* pushes nil, message; returns 2 */
void io_pusherror(lua_State *T, int err);     /* pushes the message only */
lua_State *io_scratch(lua_State *T);          /* the scratch thread of T's loop */
int io_protect(lua_State *S, lua_State *to, int (*push)(lua_State *S, void *ud), void *ud);
int io_wake_msg(lem_loop *loop, lua_State *S, struct io_wait *iw, const char *msg);
int io_wake_error(lem_loop *loop, lua_State *S, struct io_wait *iw, int err);
void io_anchor_co(lem_loop *loop, struct io_wait *iw);
void io_release(lem_loop *loop, struct io_wait *iw);
/* Registers the metatable `name` with __gc, __tostring, __metatable = label and methods
 * that get it as their upvalue. */
void io_class(lua_State *L, const char *name, lua_CFunction gc, lua_CFunction tostring,
              const char *label, const luaL_Reg *methods);
int io_wake(lem_loop *loop, struct io_wait *iw, int nargs);

/* stream.c */
struct io_stream *io_stream_new(lua_State *T, lem_loop *loop, int fd, int kind);
void io_stream_ready(struct io_stream *s, int fd);   /* sets fd and the stream's watchers */
void io_stream_shut(struct io_stream *s, int wake);
void io_stream_open(lua_State *L);
void io_std_open(lua_State *L);               /* sets io.stdin, io.stdout, io.stderr */

/* socket.c */
void io_socket_open(lua_State *L);            /* sets io.tcp, io.unix */
struct sockaddr;
int io_pushaddr(lua_State *T, const struct sockaddr *sa, unsigned len);  /* addr, port */

#endif
