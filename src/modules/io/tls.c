/* tls.c: lem.io's TLS on OpenSSL 3: contexts (io.tls.context), the transport a stream
 * speaks once it is TLS, io.tls.listen, io.tls.connect and stream:tls().
 *
 * What is shared: what OpenSSL keeps for the whole process (its initialisation, error
 * strings, the default library context that lem leaves unused), which it guards itself.
 * Everything else belongs to one loop. Each loop has its own library context (struct
 * tls_lib: providers, the caches of fetched algorithms, the locks around them), since
 * OpenSSL 3.0 takes those locks on every handshake and threads that share them contend.
 * A context is a Lua object of the loop that made it (a message cannot carry it to
 * another loop); its streams and listeners count their references to it, and contexts
 * theirs to the library context, without atomics: one loop's thread only. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "io.h"

#define TLS_HANDSHAKE_TIMEOUT 10.0   /* a server's handshake (handshake_timeout) */
#define TLS_GATHER 16384             /* send: small pieces go out as one record this big */
#define TLS_ALPN_MAX 255             /* the longest ALPN list, in its wire format */
#define TLS_KEEP 64                  /* streams of a loop that may keep their record buffers */
#define TLS_KEEP_AGE 1.0             /* seconds without I/O after which they give them back
                                        (between one and two) */

/* A loop's OpenSSL library context, freed with the last context made in it (the loop's
 * state keeps one reference until it closes), and the streams of the loop that keep
 * OpenSSL's record buffers (tls_used). */
struct tls_lib {
	OSSL_LIB_CTX *lib;
	int refs;
	lem_loop *loop;
	int nkept;
	unsigned gen;                  /* ticks of timer */
	ev_timer timer;                /* gives back the buffers of streams idle for a tick */
	struct io_tls *kept[TLS_KEEP]; /* the streams keeping them, nkept of them */
};

/* A context: an SSL_CTX and what lem does with it. Referred to by its Lua object, by
 * listeners and by streams; freed with the last reference. One loop's only. */
struct io_tls_ctx {
	SSL_CTX *ctx;
	struct tls_lib *lib;
	int refs;
	unsigned char verify;         /* check the peer's certificate */
	unsigned char verify_set;     /* verify was given: a server asks for clients' */
	unsigned char alpn_len;
	double hs_timeout;            /* a server's handshake; <= 0: none */
	unsigned char alpn[TLS_ALPN_MAX];   /* the protocols, in ALPN's wire format */
};

/* A stream's TLS (s->tpdata). */
struct io_tls {
	SSL *ssl;
	struct io_stream *s;
	struct io_tls_ctx *c;
	ev_io io;                 /* io.tls.connect's handshake: the socket is ready */
	ev_timer timer;           /* the handshake's deadline */
	struct io_wait hs;        /* the caller of io.tls.connect while it shakes hands */
	int err;                  /* a failure, returned by every later recv and send */
	unsigned char eof;        /* the peer closed, behind data recv returned already */
	unsigned char notified;   /* the peer's close_notify came (tls_info_cb) */
	unsigned char shaken;     /* the handshake is over (tls_after) */
	unsigned char wpend;      /* SSL_write left a record to finish (tls_send) */
	unsigned char slot;       /* 1 + its index in its loop's kept streams; 0: not kept */
	unsigned gen;             /* the tick of its last use, while kept */
};

/* ---- errors ---- */

/* OpenSSL's error code as ours: a system error's errno, else IO_ETLS + its library (6
 * bits), whether its reason is common to all libraries, and its reason (12 bits). */
static int tls_code(unsigned long code)
{
	if (ERR_SYSTEM_ERROR(code))
		return ERR_GET_REASON(code) ? -(int)ERR_GET_REASON(code) : -EIO;
	if (code == 0)
		return -IO_ETLS;                       /* "TLS failure" */
	return -(IO_ETLS + (int)((ERR_GET_LIB(code) & 63) << 13 | ERR_COMMON_ERROR(code) << 12 |
	                         (ERR_GET_REASON(code) & 4095)));
}

/* Before an SSL call: SSL_get_error reads the thread's error queue, which must hold
 * nothing older (another module of this thread may have left something there). Peeking
 * is cheaper than ERR_clear_error, which walks every slot: 3 % of a keep-alive request. */
static void tls_clear(void)
{
	if (ERR_peek_error())
		ERR_clear_error();
	errno = 0;
}

/* What failed in OpenSSL after a call that returned r, as an error < 0: -EAGAIN, w set
 * to wait for the socket as OpenSSL asks; 0 for the peer's close. Leaves OpenSSL's
 * error queue (thread-local) empty. */
static int tls_error(struct io_tls *t, int r, ev_io *w)
{
	struct io_stream *s = t->s;
	int e = SSL_get_error(t->ssl, r), events = 0, err;
	unsigned long code;
	long v;

	switch (e) {
	case SSL_ERROR_WANT_READ:
		events = EV_READ;
		break;
	case SSL_ERROR_WANT_WRITE:
		events = EV_WRITE;
		break;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		err = errno ? -errno : 0;  /* 0: the peer closed mid-record */
		ERR_clear_error();
		return err;
	}
	if (events) {
		/* A watcher is set only while stopped; a callback's own is restarted. */
		if ((w->events & (EV_READ | EV_WRITE)) != events) {
			struct ev_loop *ev = lem_ev(s->loop);
			int active = ev_is_active(w);

			if (active)
				ev_io_stop(ev, w);
			ev_io_set(w, s->fd, events);
			if (active)
				ev_io_start(ev, w);
		}
		return -EAGAIN;
	}
	code = ERR_peek_error();
	ERR_clear_error();
	if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
	    ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
	    (v = SSL_get_verify_result(t->ssl)) != X509_V_OK && v > 0 && v < 4096)
		return -(IO_EVERIFY + (int)v);
	return tls_code(code);
}

const char *io_tls_strerror(int err, char buf[128])
{
	const char *why;

	if (-err >= IO_ETLS) {
		int x = -err - IO_ETLS;

		why = x ? ERR_reason_error_string(ERR_PACK(x >> 13, 0, (x & 4095) |
		                                           (x & 4096 ? ERR_RFLAG_COMMON : 0))) : NULL;
		snprintf(buf, 128, "%s", why ? why : "TLS failure");
	} else {
		snprintf(buf, 128, "certificate verify failed: %s",
		         X509_verify_cert_error_string(-err - IO_EVERIFY));
	}
	return buf;
}

/* ---- record buffers ----
 * OpenSSL gives a connection a read and a write buffer of about 17 KB each. Given back
 * after every record (SSL_MODE_RELEASE_BUFFERS), as an idle connection should, they cost
 * a malloc and a free each per request, in a heap that Lua's small blocks have cut up:
 * 3,500 instructions of a keep-alive request's 51,000. So the first TLS_KEEP streams of a
 * loop that find room keep theirs (the mode cleared) until they close or stay idle for a
 * tick of TLS_KEEP_AGE; the others give them back after every record, as before. At most
 * 2.2 MB a loop, nothing once its connections are idle. (Room goes to whoever comes,
 * not to the streams used last: with more busy streams than room, pushing the least
 * recently used out would give its buffers back just before its next request.) */

static void tls_unkeep(struct tls_lib *b, struct io_tls *t)
{
	struct io_tls *last = b->kept[--b->nkept];

	b->kept[t->slot - 1] = last;
	last->slot = t->slot;
	t->slot = 0;
	SSL_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
	if (b->nkept == 0) {
		ev_ref(lem_ev(b->loop));
		ev_timer_stop(lem_ev(b->loop), &b->timer);
	}
}

/* Gives back the buffers of the streams not used since the last tick, unless they hold
 * data: those go back with their stream's next record that leaves them empty.
 * (SSL_free_buffers checks for data itself only since OpenSSL 3.0.14.) */
static void tls_keep_tick(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct tls_lib *b = io_container_of(w, struct tls_lib, timer);

	(void)ev; (void)revents;
	for (int i = b->nkept - 1; i >= 0; i--) {   /* tls_unkeep moves the last to i */
		struct io_tls *t = b->kept[i];

		if (t->gen == b->gen)
			continue;
		tls_unkeep(b, t);
		if (!SSL_has_pending(t->ssl))
			SSL_free_buffers(t->ssl);
	}
	b->gen++;
}

/* After an SSL call on t, which may have made its buffers. */
static void tls_used(struct io_tls *t)
{
	struct tls_lib *b = t->c->lib;

	t->gen = b->gen;
	if (t->slot || b->nkept == TLS_KEEP)
		return;
	SSL_clear_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
	b->kept[b->nkept++] = t;
	t->slot = (unsigned char)b->nkept;
	if (b->nkept == 1) {
		ev_timer_set(&b->timer, TLS_KEEP_AGE, TLS_KEEP_AGE);
		ev_timer_start(lem_ev(b->loop), &b->timer);
		ev_unref(lem_ev(b->loop));     /* kept buffers keep no loop alive */
	}
}

/* ---- the transport ---- */

/* After a reader's or a writer's SSL call (other: the other side's watcher). OpenSSL reads
 * and writes for the handshake in whichever call comes, reading ahead: the call that ends
 * it may have taken from the socket what the other side waits for there (the client's
 * Finished, its first request), which no poll will report again. So that side tries
 * again, once; the handshake's deadline ends. After the handshake, OpenSSL 3 reads only in
 * SSL_read and writes only in SSL_write, but for the alert of a fatal error (a KeyUpdate
 * that asks for one back is answered by the next SSL_write, as tests/tls.lua checks; TLS
 * 1.2 renegotiation is refused). */
static void tls_after(struct io_tls *t, ev_io *other)
{
	struct ev_loop *ev;

	if (t->shaken || !SSL_is_init_finished(t->ssl))
		return;
	t->shaken = 1;
	ev = lem_ev(t->s->loop);
	ev_timer_stop(ev, &t->timer);
	if (ev_is_active(other))
		ev_feed_event(ev, other, other->events & (EV_READ | EV_WRITE));
}

/* OpenSSL may read while it writes and the other way round (a handshake): when one side
 * moved, the other, waiting on the socket for that side's sake, tries again. */
static void tls_kick(struct io_stream *s, ev_io *w, int cross)
{
	if (ev_is_active(w) && (w->events & (EV_READ | EV_WRITE)) == cross)
		ev_feed_event(lem_ev(s->loop), w, cross);
}

/* Fills buf as far as OpenSSL has data. A failure or the peer's close behind data waits
 * for the next call, which comes at once (not drained). */
static ssize_t tls_recv(struct io_stream *s, char *buf, size_t len)
{
	struct io_tls *t = s->tpdata;
	size_t n = 0;

	if (t->err)
		return t->err;
	if (t->eof)
		return 0;
	while (n < len) {
		size_t want = len - n < INT_MAX ? len - n : INT_MAX;
		int r, err;

		tls_clear();
		r = SSL_read(t->ssl, buf + n, (int)want);
		tls_used(t);
		tls_after(t, &s->w);
		if (r > 0) {
			n += r;
			if (!SSL_has_pending(t->ssl))
				break;
			continue;
		}
		err = tls_error(t, r, &s->r);
		if (err == 0)
			t->eof = 1;
		else if (err != -EAGAIN)
			t->err = err;
		if (n == 0)
			return err;
		break;
	}
	s->drained = n < len && !t->eof && !t->err;
	tls_kick(s, &s->w, EV_READ);
	return (ssize_t)n;
}

/* Sends the first piece, or the pieces gathered up to TLS_GATHER bytes: one record for
 * a response's head and body. A retry after -EAGAIN comes with the same bytes first
 * (partial writes and a moving buffer are allowed), never fewer. */
static ssize_t tls_send(struct io_stream *s, const struct iovec *iov, int cnt)
{
	struct io_tls *t = s->tpdata;
	char gather[TLS_GATHER];
	const char *p = iov[0].iov_base;
	size_t len = iov[0].iov_len;
	int r;

	if (t->err)
		return t->err;
	/* A write that timed out (s->wp cleared, the caller gone) may have left OpenSSL a record
	 * of its bytes, partly sent. It must go out before anything else, and OpenSSL would
	 * count it as the next write's first bytes, which never would: the stream can write
	 * no more. (Its reads go on.) */
	if (t->wpend && !s->wp)
		return -ETIMEDOUT;
	if (cnt > 1 && len < TLS_GATHER) {
		len = 0;
		for (int i = 0; i < cnt && len < TLS_GATHER; i++) {
			size_t k = iov[i].iov_len < TLS_GATHER - len ? iov[i].iov_len : TLS_GATHER - len;

			memcpy(gather + len, iov[i].iov_base, k);
			len += k;
		}
		p = gather;
	}
	if (len > INT_MAX)
		len = INT_MAX;
	tls_clear();
	r = SSL_write(t->ssl, p, (int)len);
	tls_used(t);
	tls_after(t, &s->r);
	if (r > 0) {
		t->wpend = 0;
		tls_kick(s, &s->r, EV_WRITE);
		return r;
	}
	r = tls_error(t, r, &s->w);
	if (r == 0)
		r = -EPIPE;
	if (r != -EAGAIN)
		t->err = r;
	t->wpend = r == -EAGAIN && SSL_want_write(t->ssl);
	return r;
}

/* Before the stream closes: says goodbye (close_notify) without waiting for the
 * peer's, when the session is sound, and frees the TLS state. */
static void tls_shut(struct io_stream *s, lua_State *from)
{
	struct io_tls *t = s->tpdata;

	io_wait_free(s->loop, &t->hs, from);      /* stops io and timer */
	if (!t->err && s->fd >= 0 && SSL_is_init_finished(t->ssl)) {
		SSL_shutdown(t->ssl);
		ERR_clear_error();
	}
	if (t->slot)
		tls_unkeep(t->c->lib, t);
	SSL_free(t->ssl);
	io_tls_ctx_free(t->c);
	free(t);
	s->tp = NULL;
	s->tpdata = NULL;
}

static const struct io_transport tls_transport = { tls_recv, tls_send, tls_shut };

/* Notes the peer's close_notify. A connection that ends without one reads as closed too
 * (SSL_OP_IGNORE_UNEXPECTED_EOF: many peers do not send it), but it may have been cut by
 * anyone on the way, not ended by the peer: stream:tls() tells which, for protocols whose
 * messages end with the connection. OpenSSL reports both as SSL_ERROR_ZERO_RETURN; only
 * the alert itself tells them apart. (Unignored, the unexpected EOF would be a fatal
 * error that also ends the writes of a peer that only half-closed.) */
static void tls_info_cb(const SSL *ssl, int where, int ret)
{
	struct io_tls *t;

	if ((where & SSL_CB_READ_ALERT) && (ret & 0xff) == SSL_AD_CLOSE_NOTIFY &&
	    (t = SSL_get_app_data(ssl)))
		t->notified = 1;
}

/* The handshake's deadline. A caller of io.tls.connect returns nil, 'timeout'; a
 * server's reader and writer too, and the stream fails from now on. */
static void tls_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct io_tls *t = io_container_of(w, struct io_tls, timer);
	struct io_stream *s = t->s;
	lua_State *L = lem_state(s->loop);

	(void)ev; (void)revents;
	if (!t->hs.w.co && SSL_is_init_finished(t->ssl))
		return;                    /* done, and nobody has read or written since */
	t->err = -ETIMEDOUT;
	if (t->hs.w.co) {
		io_wake_error(s->loop, &t->hs, L, -ETIMEDOUT);
		return;
	}
	if (s->reader.w.co)
		io_wake_error(s->loop, &s->reader, L, -ETIMEDOUT);
	if (s->writer.w.co) {
		s->wp = NULL;
		s->wlen = 0;
		io_wake_error(s->loop, &s->writer, L, -ETIMEDOUT);
	}
}

/* Makes s speak TLS on c. Returns 0 or -ENOMEM. */
static int tls_attach(struct io_stream *s, struct io_tls_ctx *c)
{
	struct io_tls *t = calloc(1, sizeof *t);

	if (!t || !(t->ssl = SSL_new(c->ctx)) || !SSL_set_fd(t->ssl, s->fd)) {
		if (t)
			SSL_free(t->ssl);
		free(t);
		ERR_clear_error();
		return -ENOMEM;
	}
	t->s = s;
	t->c = io_tls_ctx_ref(c);
	SSL_set_app_data(t->ssl, t);
	ev_io_init(&t->io, NULL, s->fd, EV_READ);
	ev_init(&t->timer, tls_timeout);
	io_wait_init(&t->hs, s->st, &t->io, &t->timer);
	s->tp = &tls_transport;
	s->tpdata = t;
	return 0;
}

/* A client accepted by io.tls.listen: its handshake happens in its first read or write,
 * within the context's handshake_timeout. */
int io_tls_accepted(struct io_stream *s, struct io_tls_ctx *c)
{
	struct io_tls *t;

	if (tls_attach(s, c) < 0)
		return -ENOMEM;
	t = s->tpdata;
	SSL_set_accept_state(t->ssl);
	if (!c->verify_set || !c->verify)
		SSL_set_verify(t->ssl, SSL_VERIFY_NONE, NULL);
	if (c->hs_timeout > 0) {
		ev_timer_set(&t->timer, c->hs_timeout, 0);
		ev_timer_start(lem_ev(s->loop), &t->timer);
	}
	return 0;
}

/* ---- io.tls.connect's handshake ---- */

/* One step: 1 done, -EAGAIN (t->io waits), or an error < 0. */
static int tls_handshake(struct io_tls *t)
{
	int r;

	tls_clear();
	r = SSL_do_handshake(t->ssl);
	tls_used(t);
	if (r == 1) {
		t->shaken = 1;
		return 1;
	}
	r = tls_error(t, r, &t->io);
	return r == 0 ? -EPIPE : r;
}

static void tls_handshake_ready(struct ev_loop *ev, ev_io *w, int revents)
{
	struct io_tls *t = io_container_of(w, struct io_tls, io);
	lem_loop *loop = t->s->loop;
	lua_State *L = lem_state(loop);
	int r = tls_handshake(t);

	(void)ev; (void)revents;
	if (r == -EAGAIN)
		return;
	if (r < 0) {
		t->err = r;
		io_wake_error(loop, &t->hs, L, r);          /* return nil, message */
		return;
	}
	lem_anchor_push(loop, L, t->hs.val_slot);       /* return the stream */
	io_wake(loop, &t->hs, L, 1);
}

static struct io_tls_ctx *tls_ctx_check(lua_State *T, int idx)
{
	struct io_tls_ctx **p = luaL_checkudata(T, idx, IO_TLS_CTX_MT);

	if (!*p)
		luaL_argerror(T, idx, "context expected");
	return *p;
}

/* start(stream, ctx, name | false, timeout) --> stream | nil, message
 * The client's side of io.tls.connect, on a connected TCP stream: checks the server's
 * certificate for name (a host name, sent as SNI, or an address). */
static int tls_start(lua_State *T)
{
	struct io_stream *s = luaL_checkudata(T, 1, IO_STREAM_MT);
	struct io_tls_ctx *c = tls_ctx_check(T, 2);
	const char *name = lua_toboolean(T, 3) ? io_checkhost(T, 3) : NULL;
	lua_Number timeout = io_opttimeout(T, 4);
	lem_loop *loop = s->loop;
	struct io_tls *t;
	unsigned char addr[16];
	int r;

	if (s->fd < 0 || s->tp)
		luaL_argerror(T, 1, "not a connected TCP stream");
	if (tls_attach(s, c) < 0)
		return io_error(T, -ENOMEM);
	t = s->tpdata;
	SSL_set_connect_state(t->ssl);
	SSL_set_verify(t->ssl, c->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	if (name && (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1)) {
		if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name))
			return io_error(T, -ENOMEM);
	} else if (name && (!*name || strlen(name) > TLSEXT_MAXLEN_host_name)) {
		return io_error(T, -EINVAL);               /* a host that resolved, yet no name */
	} else if (name && (!SSL_set_tlsext_host_name(t->ssl, name) || !SSL_set1_host(t->ssl, name))) {
		ERR_clear_error();
		return io_error(T, -ENOMEM);
	}
	if (c->alpn_len && SSL_set_alpn_protos(t->ssl, c->alpn, c->alpn_len) != 0)
		return io_error(T, -ENOMEM);
	r = tls_handshake(t);
	if (r == 1) {
		lua_settop(T, 1);
		return 1;                                  /* return the stream */
	}
	if (r != -EAGAIN || timeout == 0)
		return io_error(T, r == -EAGAIN ? -ETIMEDOUT : r);
	lua_settop(T, 1);
	r = io_suspend(loop, T, &t->hs, 1);            /* the stream stays alive meanwhile */
	ev_set_cb(&t->io, tls_handshake_ready);
	ev_io_start(lem_ev(loop), &t->io);
	if (timeout > 0) {
		ev_timer_set(&t->timer, timeout, 0);
		ev_timer_start(lem_ev(loop), &t->timer);
	}
	return r;
}

/* ---- contexts ---- */

struct io_tls_ctx *io_tls_ctx_ref(struct io_tls_ctx *c)
{
	c->refs++;
	return c;
}

static void tls_lib_free(struct tls_lib *b)
{
	if (--b->refs > 0)
		return;
	OSSL_LIB_CTX_free(b->lib);
	free(b);
}

static int tls_lib_gc(lua_State *T)
{
	struct tls_lib **p = lua_touserdata(T, 1);

	if (*p) {
		tls_lib_free(*p);
		*p = NULL;
	}
	return 0;
}

static const char tls_lib_key = 0;     /* registry: this loop's struct tls_lib */

/* [-0, +0, m] This loop's library context, made on first use; NULL if OpenSSL could not. */
static struct tls_lib *tls_lib(lua_State *T)
{
	struct tls_lib **p, *b;

	lua_pushlightuserdata(T, (void *)&tls_lib_key);
	lua_rawget(T, LUA_REGISTRYINDEX);
	p = lua_touserdata(T, -1);
	lua_pop(T, 1);
	if (p)
		return *p;
	lua_pushlightuserdata(T, (void *)&tls_lib_key);
	p = lua_newuserdata(T, sizeof *p);
	*p = NULL;
	lua_newtable(T);
	lua_pushcfunction(T, tls_lib_gc);
	lua_setfield(T, -2, "__gc");
	lua_setmetatable(T, -2);
	lua_rawset(T, LUA_REGISTRYINDEX);
	if (!(b = malloc(sizeof *b)))
		return NULL;
	if (!(b->lib = OSSL_LIB_CTX_new())) {
		free(b);
		return NULL;
	}
	b->refs = 1;
	b->loop = lem_loop_of(T);
	b->nkept = 0;
	b->gen = 0;
	ev_init(&b->timer, tls_keep_tick);
	*p = b;
	return b;
}

void io_tls_ctx_free(struct io_tls_ctx *c)
{
	if (--c->refs > 0)
		return;
	SSL_CTX_free(c->ctx);
	if (c->lib)
		tls_lib_free(c->lib);
	free(c);
}

static int tls_ctx_gc(lua_State *T)
{
	struct io_tls_ctx **p = lua_touserdata(T, 1);

	if (*p) {
		io_tls_ctx_free(*p);
		*p = NULL;
	}
	return 0;
}

/* A server picks the first of its protocols that the client offers; none: no ALPN. */
static int tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned int inlen, void *arg)
{
	struct io_tls_ctx *c = arg;

	(void)ssl;
	if (SSL_select_next_proto((unsigned char **)out, outlen, c->alpn, c->alpn_len, in, inlen)
	    != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	return SSL_TLSEXT_ERR_OK;
}

/* opts[key] as a string, or NULL; raises unless a string (without a zero byte, which
 * would cut a file's name short) or nil. */
static const char *tls_optstring(lua_State *T, const char *key)
{
	const char *v;
	size_t len;

	lua_getfield(T, 1, key);
	if (lua_isnil(T, -1)) {
		lua_pop(T, 1);
		return NULL;
	}
	if (lua_type(T, -1) != LUA_TSTRING)
		luaL_argerror(T, 1, lua_pushfstring(T, "%s must be a string", key));
	v = lua_tolstring(T, -1, &len);
	if (memchr(v, 0, len))
		luaL_argerror(T, 1, lua_pushfstring(T, "zero byte in %s", key));
	lua_pop(T, 1);                             /* opts keeps it alive */
	return v;
}

/* opts[key] as a boolean, dflt if nil; raises unless a boolean or nil (verify = 'no'
 * would verify). */
static int tls_optbool(lua_State *T, const char *key, int dflt)
{
	int v = dflt;

	lua_getfield(T, 1, key);
	if (!lua_isnil(T, -1)) {
		if (lua_type(T, -1) != LUA_TBOOLEAN)
			luaL_argerror(T, 1, lua_pushfstring(T, "%s must be a boolean", key));
		v = lua_toboolean(T, -1);
	}
	lua_pop(T, 1);
	return v;
}

/* Raises for a key of opts that is no option: a misspelt one would leave its default
 * (verify on, a ca not read) without a word. */
static void tls_checkoptions(lua_State *T)
{
	static const char *const known[] = { "cert", "key", "ca", "verify", "alpn", "min_version",
	                                     "resumption", "handshake_timeout", NULL };

	lua_pushnil(T);
	while (lua_next(T, 1)) {
		const char *const *o = known;

		lua_pop(T, 1);
		if (lua_type(T, -1) != LUA_TSTRING)    /* not lua_tostring: it would break lua_next */
			luaL_argerror(T, 1, lua_pushfstring(T, "unknown option (a %s)", luaL_typename(T, -1)));
		while (*o && strcmp(*o, lua_tostring(T, -1)) != 0)
			o++;
		if (!*o)
			luaL_argerror(T, 1, lua_pushfstring(T, "unknown option %s", lua_tostring(T, -1)));
	}
}

/* Reads the CA certificates of a file, or of every file of a directory, into c's store
 * now, so that no verification reads a file later. Returns 0 or an error < 0. */
static int tls_load_ca(struct io_tls_ctx *c, const char *path)
{
	X509_STORE *store = SSL_CTX_get_cert_store(c->ctx);
	struct stat st;
	struct dirent *e;
	int loaded = 0;
	DIR *d;

	if (stat(path, &st) != 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return X509_STORE_load_file_ex(store, path, c->lib->lib, NULL) == 1 ? 0 : -IO_ETLS;
	if (!(d = opendir(path)))
		return -errno;
	while ((e = readdir(d))) {
		char file[PATH_MAX];

		if (e->d_name[0] == '.' ||
		    snprintf(file, sizeof file, "%s/%s", path, e->d_name) >= (int)sizeof file ||
		    stat(file, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		loaded += X509_STORE_load_file_ex(store, file, c->lib->lib, NULL) == 1;
	}
	closedir(d);
	ERR_clear_error();                         /* of files that were no certificates */
	return loaded ? 0 : -ENOENT;
}

/* The system's CAs: the bundle of SSL_CERT_FILE or OpenSSL's default file, read now;
 * without one, OpenSSL's default places (a directory is looked in at each check). */
static int tls_load_system_ca(struct io_tls_ctx *c)
{
	const char *file = getenv(X509_get_default_cert_file_env());

	if (!file)
		file = X509_get_default_cert_file();
	if (SSL_CTX_load_verify_locations(c->ctx, file, NULL) == 1)
		return 0;
	ERR_clear_error();
	return SSL_CTX_set_default_verify_paths(c->ctx) == 1 ? 0 : -IO_ETLS;
}

/* [-0, +2, m] nil, "what: message" for err (a TLS error is looked up in the queue). */
static int tls_ctx_error(lua_State *T, const char *what, int err)
{
	char buf[128];
	unsigned long code, last = 0, sys = 0;

	/* The system's reason (a file not found) if there is one, else OpenSSL's last. */
	while ((code = ERR_get_error())) {
		last = code;
		if (ERR_SYSTEM_ERROR(code) && !sys)
			sys = code;
	}
	if (err == -IO_ETLS)
		err = tls_code(sys ? sys : last);
	lua_pushnil(T);
	lua_pushfstring(T, "%s: %s", what, io_strerror(err, buf));
	return 2;
}

/* io.tls.context{ cert =, key =, ca =, verify =, alpn =, min_version =,
 *                 handshake_timeout =, resumption = } --> context | nil, message
 * Reads every file now: nothing blocks later. */
static int tls_context(lua_State *T)
{
	const char *cert, *key, *ca, *minv;
	struct io_tls_ctx *c, **p;
	struct tls_lib *lib;
	int min = TLS1_2_VERSION, resume, err;

	luaL_checktype(T, 1, LUA_TTABLE);
	tls_checkoptions(T);
	cert = tls_optstring(T, "cert");
	key = tls_optstring(T, "key");
	ca = tls_optstring(T, "ca");
	minv = tls_optstring(T, "min_version");
	if (minv && strcmp(minv, "1.3") == 0)
		min = TLS1_3_VERSION;
	else if (minv && strcmp(minv, "1.2") != 0)
		luaL_argerror(T, 1, "min_version must be '1.2' or '1.3'");
	if (key && !cert)
		luaL_argerror(T, 1, "key without cert");
	p = lua_newuserdata(T, sizeof *p);         /* first: its __gc frees what follows */
	*p = NULL;
	luaL_getmetatable(T, IO_TLS_CTX_MT);
	lua_setmetatable(T, -2);
	if (!(c = calloc(1, sizeof *c)))
		return io_error(T, -ENOMEM);
	c->refs = 1;
	c->verify = 1;
	c->hs_timeout = TLS_HANDSHAKE_TIMEOUT;
	*p = c;
	lua_getfield(T, 1, "verify");
	c->verify_set = !lua_isnil(T, -1);
	lua_pop(T, 1);
	c->verify = (unsigned char)tls_optbool(T, "verify", 1);
	lua_getfield(T, 1, "handshake_timeout");
	if (!lua_isnil(T, -1)) {
		if (lua_type(T, -1) != LUA_TNUMBER)
			luaL_argerror(T, 1, "handshake_timeout must be a number");
		c->hs_timeout = lua_tonumber(T, -1);
	}
	resume = tls_optbool(T, "resumption", 1);
	lua_getfield(T, 1, "alpn");
	if (!lua_isnil(T, -1)) {
		if (lua_type(T, -1) != LUA_TTABLE)
			luaL_argerror(T, 1, "alpn must be a list of strings");
		for (int i = 1; ; i++) {
			size_t len;
			const char *proto;

			lua_rawgeti(T, -1, i);
			if (lua_isnil(T, -1))
				break;
			if (lua_type(T, -1) != LUA_TSTRING)  /* before lua_tolstring turns 1 into "1" */
				luaL_argerror(T, 1, "alpn must be a list of strings");
			proto = lua_tolstring(T, -1, &len);
			if (len < 1 || c->alpn_len + 1 + len > TLS_ALPN_MAX)
				luaL_argerror(T, 1, "alpn must list names of 1 byte or more, 255 bytes "
				                    "in all with a length byte each");
			c->alpn[c->alpn_len++] = (unsigned char)len;
			memcpy(c->alpn + c->alpn_len, proto, len);
			c->alpn_len += (unsigned char)len;
			lua_pop(T, 1);
		}
	}
	lua_settop(T, 2);
	ERR_clear_error();
	if (!(lib = tls_lib(T)))
		return tls_ctx_error(T, "context", -IO_ETLS);
	c->lib = lib;
	lib->refs++;
	if (!(c->ctx = SSL_CTX_new_ex(lib->lib, NULL, TLS_method())))
		return tls_ctx_error(T, "context", -IO_ETLS);
	SSL_CTX_set_min_proto_version(c->ctx, min);
	/* Partial writes and a moving buffer: as write() does. Idle connections give their
	 * buffers back (but see tls_used). A peer that closes without close_notify has
	 * closed, as in TCP. */
	SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                         SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_read_ahead(c->ctx, 1);         /* fewer read()s: a record in one */
	SSL_CTX_set_info_callback(c->ctx, tls_info_cb);
	SSL_CTX_set_verify(c->ctx, c->verify ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
	                                     : SSL_VERIFY_NONE, NULL);
	if (cert && SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1)
		return tls_ctx_error(T, cert, -IO_ETLS);
	if (cert && SSL_CTX_use_PrivateKey_file(c->ctx, key ? key : cert, SSL_FILETYPE_PEM) != 1)
		return tls_ctx_error(T, key ? key : cert, -IO_ETLS);
	if (cert && SSL_CTX_check_private_key(c->ctx) != 1)
		return tls_ctx_error(T, key ? key : cert, -IO_ETLS);
	if (ca && (err = tls_load_ca(c, ca)) < 0)
		return tls_ctx_error(T, ca, err);
	/* A server's context (a cert, verify not given) checks nobody: no CAs to read. */
	if (!ca && c->verify && (!cert || c->verify_set) && (err = tls_load_system_ca(c)) < 0)
		return tls_ctx_error(T, "system CAs", err);
	if (c->alpn_len)
		SSL_CTX_set_alpn_select_cb(c->ctx, tls_alpn_select, c);
	if (!resume) {               /* every handshake a full one: no cache, no tickets */
		SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(c->ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(c->ctx, 0);
	}
	return 1;                                  /* return the context */
}

static const char tls_default_key = 0;    /* registry: this loop's default client context */

/* default() --> the loop's client context of io.tls.connect without one, made once:
 * verification on, the system's CAs. */
static int tls_default(lua_State *T)
{
	lua_pushlightuserdata(T, (void *)&tls_default_key);
	lua_rawget(T, LUA_REGISTRYINDEX);
	if (!lua_isnil(T, -1))
		return 1;
	lua_pushcfunction(T, tls_context);
	lua_newtable(T);
	lua_call(T, 1, 2);
	if (lua_isnil(T, -2))
		return 2;                              /* return nil, message */
	lua_pop(T, 1);
	lua_pushlightuserdata(T, (void *)&tls_default_key);
	lua_pushvalue(T, -2);
	lua_rawset(T, LUA_REGISTRYINDEX);
	return 1;
}

/* ---- io.tls.listen, stream:tls() ---- */

/* io.tls.listen(host, port, context [, backlog]) --> listener | nil, message */
int io_tls_listen(lua_State *T)
{
	struct io_tls_ctx *c = tls_ctx_check(T, 3);

	if (!SSL_CTX_get0_certificate(c->ctx))
		luaL_argerror(T, 3, "context without a certificate");
	lua_remove(T, 3);
	return io_listen_tcp_ctx(T, c);
}

static int tls_push_text(lua_State *S, void *text)
{
	lua_pushstring(S, text);
	return 1;
}

/* [-0, +1, m] name, as the one line of X509_NAME_oneline, whole: into a buffer of ours it
 * would be cut short without a word (a long subject lost its last parts). */
static void tls_push_name(lua_State *T, lem_loop *loop, const X509_NAME *name)
{
	char *text = X509_NAME_oneline(name, NULL, 0);
	int n;

	if (!text)
		luaL_error(T, "not enough memory");
	n = lem_protect(loop, T, tls_push_text, text);    /* a memory error frees text first */
	OPENSSL_free(text);
	if (n < 0)
		lua_error(T);
}

/* stream:tls() --> { version =, cipher =, alpn =, subject =, issuer =, verified =,
 *                    close_notify = } | nil (not a TLS stream)
 * The session as negotiated so far; subject and issuer: the peer's certificate;
 * close_notify, once a read met the peer's close: whether it came with TLS's goodbye. */
static int tls_info(lua_State *T)
{
	struct io_stream *s = io_check_open(T, &io_stream_type, offsetof(struct io_stream, fd));
	struct io_tls *t = s->tpdata;
	const unsigned char *alpn;
	unsigned alpn_len;
	X509 *peer;

	if (!s->tp) {
		lua_pushnil(T);
		return 1;
	}
	lua_createtable(T, 0, 7);
	if (t->shaken) {                /* before, OpenSSL names the newest version it may speak */
		lua_pushstring(T, SSL_get_version(t->ssl));
		lua_setfield(T, -2, "version");
	}
	if (SSL_get_current_cipher(t->ssl)) {
		lua_pushstring(T, SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl)));
		lua_setfield(T, -2, "cipher");
	}
	SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
	if (alpn_len) {
		lua_pushlstring(T, (const char *)alpn, alpn_len);
		lua_setfield(T, -2, "alpn");
	}
	if ((peer = SSL_get0_peer_certificate(t->ssl))) {
		tls_push_name(T, s->loop, X509_get_subject_name(peer));
		lua_setfield(T, -2, "subject");
		tls_push_name(T, s->loop, X509_get_issuer_name(peer));
		lua_setfield(T, -2, "issuer");
	}
	lua_pushboolean(T, peer && SSL_get_verify_result(t->ssl) == X509_V_OK &&
	                   SSL_get_verify_mode(t->ssl) != SSL_VERIFY_NONE);
	lua_setfield(T, -2, "verified");
	if (t->eof) {
		lua_pushboolean(T, t->notified);
		lua_setfield(T, -2, "close_notify");
	}
	return 1;
}

static int tls_now(lua_State *T)
{
	lua_pushnumber(T, ev_now(lem_ev(lem_loop_of(T))));
	return 1;
}

/* io.tls.connect(host, port [, opts | timeout]) --> stream | nil, message
 * opts: timeout (the whole connect, handshake included), context (else the loop's
 * default: the system's CAs), name (what the certificate must name and SNI sends; host
 * by default; false: not checked). In Lua: it suspends twice. Its arguments are checked
 * here, so that an error names connect and the line that called it, not a call inside. */
static const char tls_connect_lua[] =
	"local tcp_connect, start, now, default = ...\n"
	"local function bad(n, what) error('bad argument #' .. n .. \" to 'connect' (\" .. what .. ')', 3) end\n"
	"local OPTIONS = { timeout = true, context = true, name = true }\n"
	"return function(host, port, opts)\n"
	"  if type(host) ~= 'string' then bad(1, 'string expected, got ' .. type(host)) end\n"
	"  if host:find('%z') then bad(1, 'zero byte in host name') end\n"
	"  if type(port) ~= 'number' then bad(2, 'number expected, got ' .. type(port)) end\n"
	"  if not (port >= 0 and port <= 65535 and port % 1 == 0) then\n"
	"    bad(2, 'port must be a whole number from 0 to 65535')\n"
	"  end\n"
	"  local timeout, ctx, name = nil, nil, host\n"
	"  if type(opts) == 'number' then timeout = opts\n"
	"  elseif type(opts) == 'table' then\n"
	"    for k in pairs(opts) do\n"
	"      if not OPTIONS[k] then bad(3, 'unknown option ' .. tostring(k)) end\n"
	"    end\n"
	"    timeout, ctx = opts.timeout, opts.context\n"
	"    if opts.name ~= nil then name = opts.name end\n"
	"    if timeout ~= nil and type(timeout) ~= 'number' then bad(3, 'timeout: number expected') end\n"
	"    if ctx ~= nil and getmetatable(ctx) ~= 'tls context' then bad(3, 'context: a context of io.tls.context expected') end\n"
	"    if name ~= false and type(name) ~= 'string' then bad(3, 'name: string or false expected') end\n"
	"    if name and name:find('%z') then bad(3, 'zero byte in name') end\n"
	"    if opts.name and (#name < 1 or #name > 255) then bad(3, 'name: 1 to 255 bytes expected') end\n"
	"  elseif opts ~= nil then\n"
	"    bad(3, 'table or number expected')\n"
	"  end\n"
	"  -- a fully qualified name's final dot names no other host, and is in no certificate\n"
	"  if name and #name > 1 and name:sub(-1) == '.' then name = name:sub(1, -2) end\n"
	"  if ctx == nil then\n"
	"    local err\n"
	"    ctx, err = default()\n"
	"    if not ctx then return nil, err end\n"
	"  end\n"
	"  local t0 = now()\n"
	"  local s, err = tcp_connect(host, port, timeout)\n"
	"  if not s then return nil, err end\n"
	"  if timeout then timeout = math.max(0, timeout - (now() - t0)) end\n"
	"  local ok\n"
	"  ok, err = start(s, ctx, name, timeout)\n"
	"  if not ok then s:close() return nil, err end\n"
	"  return s\n"
	"end\n";

/* io.tls on the module table on top of L; stream:tls() on the stream class. */
void io_tls_open(lua_State *L)
{
	static const luaL_Reg ctx_methods[] = { { NULL, NULL } };

	luaL_newmetatable(L, IO_TLS_CTX_MT);
	lua_pushcfunction(L, tls_ctx_gc);
	lua_setfield(L, -2, "__gc");
	lua_newtable(L);
	luaL_register(L, NULL, ctx_methods);
	lua_setfield(L, -2, "__index");
	lua_pushliteral(L, "tls context");
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);

	luaL_getmetatable(L, IO_STREAM_MT);
	lua_getfield(L, -1, "__index");
	lua_pushvalue(L, -2);
	lua_pushcclosure(L, tls_info, 1);
	lua_setfield(L, -2, "tls");
	lua_pop(L, 2);

	lua_newtable(L);                           /* io.tls */
	lua_pushcfunction(L, tls_context);
	lua_setfield(L, -2, "context");
	lua_pushcfunction(L, io_tls_listen);
	lua_setfield(L, -2, "listen");
	if (luaL_loadbuffer(L, tls_connect_lua, sizeof tls_connect_lua - 1, "=lem.io.tls") != 0)
		lua_error(L);
	lua_pushcfunction(L, io_connect_tcp);
	lua_pushcfunction(L, tls_start);
	lua_pushcfunction(L, tls_now);
	lua_pushcfunction(L, tls_default);
	lua_call(L, 4, 1);
	lua_setfield(L, -2, "connect");
	lua_setfield(L, -2, "tls");
}
