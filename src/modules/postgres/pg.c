/* pg.c: lem.postgres: connections to PostgreSQL through libpq, never blocking the loop.
 *
 * A connection's socket is watched by one ev_io, started only while someone waits (a
 * connect, a query, a notification()), so that an idle connection keeps no loop alive.
 * Callers queue their requests in the connection's FIFO: the head is on the wire, and
 * when its last result comes the callback wakes its caller and sends the next. Each
 * waiting caller keeps its request userdata (and the connection) on its stack and is
 * anchored: the collector takes a request only when its caller is gone or done, and
 * the connection keeps its last two for its next callers (pg_req_new). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "pg.h"

/* ---- values made in a callback ----
 * A callback has no protected call around it: its values are made under lem_protect,
 * and when that fails the caller gets nil and the error instead. */

static int pg_push_string(lua_State *S, void *s)
{
	const char *msg = s;

	lua_pushnil(S);
	lua_pushlstring(S, msg, strcspn(msg, "\n"));   /* libpq's messages end with one */
	return 2;
}

static int pg_push_result(lua_State *S, void *req)
{
	struct pg_req *r = req;
	int names = 0, n;

	if (r->c->names) {                      /* below the values: moved over at the end */
		lem_anchor_push(r->c->loop, S, r->c->names);
		names = lua_gettop(S);
	}
	n = r->kind == PG_PIPELINE ? value_pipeline(S, r, names) : value_result(S, r->q[0].res, names);
	if (names)
		lua_remove(S, names);
	return n;
}


static int pg_push_notify(lua_State *S, void *n)
{
	PGnotify *p = n;

	lua_pushstring(S, p->relname);
	lua_pushstring(S, p->extra);
	lua_pushinteger(S, p->be_pid);
	return 3;
}

/* ---- the socket's watcher ---- */

static void pg_io(struct ev_loop *ev, ev_io *w, int revents);
static void pg_connect_begin(struct pg_conn *c, struct pg_req *r);

/* Watches the connection's socket for events (none: stops); libpq may have changed its
 * socket (a connect that tries the next address), or closed it. */
static void pg_watch(struct pg_conn *c, int events)
{
	struct ev_loop *ev = lem_ev(c->loop);
	int fd = c->conn ? PQsocket(c->conn) : -1;

	if (fd < 0 || !events) {
		ev_io_stop(ev, &c->io);
		return;
	}
	if (ev_is_active(&c->io) && c->io.fd == fd && (c->io.events & (EV_READ | EV_WRITE)) == events)
		return;
	ev_io_stop(ev, &c->io);
	/* ev_io_set tells libev the descriptor is new: it registers it with epoll again, a
	 * system call each time a query ends and the next begins. Once connected, libpq
	 * keeps its socket: a watcher that starts again as it was is not set. */
	if (c->io.fd != fd || (c->io.events & (EV_READ | EV_WRITE)) != events ||
	    PQstatus(c->conn) != CONNECTION_OK)
		ev_io_set(&c->io, fd, events);
	ev_io_start(ev, &c->io);
}

/* What a connection in use waits for: replies while a request is on the wire or a
 * coroutine waits for a notification; writable while libpq has more to send. */
static void pg_rewatch(struct pg_conn *c)
{
	int events = 0;

	if ((c->head && c->head->sent) || c->listener)
		events |= EV_READ;
	if (c->flushing)
		events |= EV_WRITE;
	pg_watch(c, events);
}

/* ---- requests ---- */

static void pg_clear(struct pg_req *r)
{
	for (int i = 0; i < r->nq; i++) {
		PQclear(r->q[i].res);
		r->q[i].res = NULL;
	}
}

/* The request ends: stops its timer, wakes its caller with the values from push (made
 * under lem_protect) and lets go of it. r is no longer in any queue. */
static void pg_end(struct pg_req *r, int (*push)(lua_State *S, void *ud), void *ud)
{
	struct pg_conn *c = r->c;
	lem_loop *loop = c->loop;
	lua_State *L = lem_state(loop);
	int n;

	ev_timer_stop(lem_ev(loop), &r->timer);
	n = lem_protect(c->loop, L, push, ud);
	lem_wake(loop, &r->w, L, n < 0 ? 2 : n);   /* a stale one pops them */
	pg_clear(r);
	if (r->spare) {                         /* keeps its slot for its next caller */
		lua_pushnil(L);
		lem_anchor_set(loop, L, r->slot);
	} else {
		lem_unanchor(loop, r->slot);
		r->slot = 0;
	}
	lem_unanchor(loop, r->self);
	r->self = 0;
	r->queued = 0;
}

/* Takes the head off the FIFO. */
static struct pg_req *pg_shift(struct pg_conn *c)
{
	struct pg_req *r = c->head;

	if ((c->head = r->next) == NULL)
		c->tail = NULL;
	r->next = NULL;
	return r;
}

/* Sends r's statements; 0, or -1 (PQerrorMessage says why). */
static int pg_send(struct pg_conn *c, struct pg_req *r)
{
	PGconn *conn = c->conn;

	if (r->kind == PG_PIPELINE && !PQenterPipelineMode(conn))
		return -1;
	for (int i = 0; i < r->nq; i++) {
		struct pg_query *q = &r->q[i];
		int ok;
		if (r->kind == PG_PREPARE)
			ok = PQsendPrepare(conn, q->name, q->sql, 0, NULL);
		else if (q->run)
			ok = PQsendQueryPrepared(conn, q->sql, q->n, q->values, q->lengths, q->formats, 0);
		else if (q->n == 0 && r->kind != PG_PIPELINE)   /* several statements allowed */
			ok = PQsendQuery(conn, q->sql);
		else
			ok = PQsendQueryParams(conn, q->sql, q->n, NULL, q->values, q->lengths,
			                       q->formats, 0);
		if (!ok)
			return -1;
	}
	if (r->kind == PG_PIPELINE && !PQpipelineSync(conn))
		return -1;
	if ((c->flushing = PQflush(conn)) < 0)
		return -1;
	r->sent = 1;
	return 0;
}

/* Sends the head of the FIFO, if it waits; the ones that cannot be sent end with
 * libpq's message. */
static void pg_next(struct pg_conn *c)
{
	while (c->head && !c->head->sent) {
		struct pg_req *r = c->head;
		if (r->kind == PG_CONNECT) {
			pg_connect_begin(c, r);
			return;
		}
		if (!r->failed && c->conn && pg_send(c, r) == 0)
			break;
		/* (a pipeline can fail to be sent only when libpq runs out of memory or the
		 * connection is lost; statements already queued then keep libpq in pipeline
		 * mode, and the connection's next requests fail with its message) */
		if (c->conn && PQpipelineStatus(c->conn) != PQ_PIPELINE_OFF)
			PQexitPipelineMode(c->conn);
		pg_shift(c);
		pg_end(r, pg_push_string, c->conn ? PQerrorMessage(c->conn) : "closed");
	}
	pg_rewatch(c);
}

/* The connection is lost (or closed): every caller ends with msg. */
static void pg_fail(struct pg_conn *c, const char *msg)
{
	struct pg_req *r;

	while (c->head) {
		r = pg_shift(c);
		if (r->kind != PG_PIPELINE && r->q[0].res && PQresultStatus(r->q[0].res) == PGRES_FATAL_ERROR)
			pg_end(r, pg_push_result, r);   /* the server said why: a better message */
		else
			pg_end(r, pg_push_string, (void *)msg);
	}
	if ((r = c->listener)) {
		c->listener = NULL;
		pg_end(r, pg_push_string, (void *)msg);
	}
	pg_watch(c, 0);
}

/* Keeps res as q's: the first error wins, else the last result. */
static void pg_keep(struct pg_query *q, PGresult *res)
{
	if (q->res && PQresultStatus(q->res) == PGRES_FATAL_ERROR) {
		PQclear(res);
		return;
	}
	PQclear(q->res);
	q->res = res;
}

/* What a COPY result asks: lem.postgres takes no data in and drops what comes out. */
static void pg_copy(struct pg_conn *c, struct pg_req *r, PGresult *res)
{
	switch (PQresultStatus(res)) {
	case PGRES_COPY_IN:
		PQputCopyEnd(c->conn, "COPY FROM STDIN is not supported by lem.postgres");
		c->flushing = PQflush(c->conn) > 0;
		break;
	case PGRES_COPY_OUT:
		r->copying = 1;
		break;
	default:
		break;
	}
}

/* Drops the rows of a COPY TO STDOUT that came; 0 while more are to come. Until the
 * copy ends libpq is not busy and PQgetResult returns the COPY_OUT result again:
 * asking for it instead of waiting for the socket would spin. */
static int pg_copy_out(PGconn *conn)
{
	char *buf;
	int n;

	while ((n = PQgetCopyData(conn, &buf, 1)) > 0)
		PQfreemem(buf);
	return n != 0;                          /* -1 the end, -2 an error: a result next */
}

/* Reads what came for the head of the FIFO; ends it when all of it came. */
static void pg_receive(struct pg_conn *c)
{
	PGconn *conn = c->conn;
	struct pg_req *r;
	PGresult *res;

	while ((r = c->head) && r->sent) {
		if (r->copying) {
			if (!pg_copy_out(conn))
				return;                 /* pg_io reads more */
			r->copying = 0;
		}
		if (PQisBusy(conn))
			return;
		res = PQgetResult(conn);
		if (r->kind == PG_PIPELINE) {
			if (res && PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
				PQclear(res);
				if (!r->next || !r->next->sent)   /* else its results come next */
					PQexitPipelineMode(conn);
				pg_shift(c);
				pg_end(r, pg_push_result, r);
				pg_next(c);
			} else if (!res) {
				r->at++;                  /* a query's results end with NULL */
			} else {
				pg_copy(c, r, res);
				if (r->at < r->nq)
					pg_keep(&r->q[r->at], res);
				else
					PQclear(res);
			}
			continue;
		}
		if (res) {
			pg_copy(c, r, res);
			pg_keep(&r->q[0], res);
			continue;
		}
		pg_shift(c);
		pg_end(r, pg_push_result, r);
		pg_next(c);
	}
}

/* Hands a notification to the coroutine waiting for one. */
static void pg_notify(struct pg_conn *c)
{
	struct pg_req *r = c->listener;
	PGnotify *n;

	if (r && (n = PQnotifies(c->conn))) {
		c->listener = NULL;
		pg_end(r, pg_push_notify, n);
		PQfreemem(n);
	}
}

/* ---- connecting ---- */

static int pg_push_conn(lua_State *S, void *req)
{
	struct pg_req *r = req;

	lem_anchor_push(r->c->loop, S, r->self);
	return 1;
}

/* One step of the connect at the head of the FIFO. */
static void pg_connect_poll(struct pg_conn *c)
{
	struct pg_req *r = c->head;

	switch (PQconnectPoll(c->conn)) {
	case PGRES_POLLING_READING:
		pg_watch(c, EV_READ);
		return;
	case PGRES_POLLING_WRITING:
		pg_watch(c, EV_WRITE);
		return;
	case PGRES_POLLING_OK:
		pg_watch(c, 0);
		pg_shift(c);
		if (PQsetnonblocking(c->conn, 1) == 0) {
			pg_end(r, pg_push_conn, r);
			break;
		}
		/* fall through */
	default:
		pg_watch(c, 0);
		if (c->head == r)
			pg_shift(c);
		pg_end(r, pg_push_string, PQerrorMessage(c->conn));
		PQfinish(c->conn);
		c->conn = NULL;
	}
	pg_next(c);                             /* queued meanwhile: now, or 'closed' */
}

static void pg_notice_drop(void *arg, const PGresult *res)
{
	(void)arg; (void)res;
}

/* Starts the connect of c's head (a PG_CONNECT), hostaddr (or NULL) from a lookup; or
 * ends it with err. */
void pg_connect_start(struct pg_conn *c, const char *conninfo, const char *hostaddr,
                      const char *err)
{
	const char *keys[] = { "dbname", hostaddr ? "hostaddr" : NULL, NULL };
	const char *vals[] = { conninfo, hostaddr, NULL };

	if (!err) {
		/* expand_dbname: conninfo is a whole connection string; hostaddr after it
		 * wins over its own */
		c->conn = PQconnectStartParams(keys, vals, 1);
		if (!c->conn)
			err = "not enough memory";
		else if (PQstatus(c->conn) == CONNECTION_BAD)
			err = PQerrorMessage(c->conn);
	}
	if (err) {
		struct pg_req *r = pg_shift(c);
		pg_end(r, pg_push_string, (void *)err);
		PQfinish(c->conn);
		c->conn = NULL;
		pg_next(c);
		return;
	}
	PQsetNoticeReceiver(c->conn, pg_notice_drop, NULL);
	pg_connect_poll(c);
}

/* Begins c's connect r, whose connection string is in its q[0]: looks its host names up
 * first, when it has any. */
static void pg_connect_begin(struct pg_conn *c, struct pg_req *r)
{
	const char *info = (const char *)&r->q[0];
	char *host;
	int err = lookup_needed(info, &host);

	r->sent = 1;
	if (err < 0)
		pg_connect_start(c, info, NULL, err == -ENOMEM ? "not enough memory" :
		                 "invalid connection string");
	else if (host)
		lookup_start(c, info, host);
	else
		pg_connect_start(c, info, NULL, NULL);
}

/* ---- the callbacks ---- */

static void pg_kicked(struct ev_loop *ev, ev_timer *w, int revents)
{
	(void)ev; (void)revents;
	pg_next(pg_of_kick(w));
}

static void pg_io(struct ev_loop *ev, ev_io *w, int revents)
{
	struct pg_conn *c = (struct pg_conn *)w;

	(void)ev;
	if (c->head && c->head->kind == PG_CONNECT) {
		pg_connect_poll(c);
		return;
	}
	if (c->flushing && (c->flushing = PQflush(c->conn)) < 0)
		goto lost;
	if ((revents & EV_READ) && !PQconsumeInput(c->conn))
		goto lost;
	pg_receive(c);
	if (c->conn && PQstatus(c->conn) == CONNECTION_BAD)
		goto lost;
	pg_notify(c);
	pg_rewatch(c);
	return;
lost:
	pg_fail(c, PQerrorMessage(c->conn));
}

static int pg_push_timeout(lua_State *S, void *ud)
{
	(void)ud;
	lua_pushnil(S);
	lua_pushliteral(S, "timeout");
	return 2;
}

/* A connect or a notification() waited too long. */
static void pg_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct pg_req *r = (struct pg_req *)w;
	struct pg_conn *c = r->c;

	(void)ev; (void)revents;
	if (r->kind == PG_NOTIFY) {
		c->listener = NULL;
		pg_end(r, pg_push_timeout, NULL);
		pg_rewatch(c);
		return;
	}
	lookup_forget(c);                       /* a connect: the head of the FIFO */
	pg_watch(c, 0);
	pg_shift(c);
	pg_end(r, pg_push_timeout, NULL);
	PQfinish(c->conn);
	c->conn = NULL;
	pg_next(c);
}

/* ---- the methods ---- */

/* The metatables of a request and of a connection are upvalues 1 and 2 of the module's
 * functions: luaL_getmetatable and luaL_checkudata look them up by name, hashing it at
 * every call, which cost more than the rest of setting a request up. A function without
 * them (nil) looks them up by name. */
static struct pg_conn *pg_check(lua_State *T)
{
	struct pg_conn *c = lua_touserdata(T, 1);
	int ours = 0;

	if (c && lua_getmetatable(T, 1)) {
		ours = lua_rawequal(T, -1, lua_upvalueindex(2));
		lua_pop(T, 1);
	}
	if (!ours)
		c = luaL_checkudata(T, 1, PG_CONN_MT);

	if (!c->conn && !c->head)
		luaL_argerror(T, 1, "closed connection");
	return c;
}

/* What a request leaves behind: its timer, results and anchors (a request that ended
 * left none; one whose caller raised before it waited, its slot). */
static void pg_req_free(struct pg_req *r)
{
	/* (r->loop, not r->c's: the connection may have gone first) */
	ev_timer_stop(lem_ev(r->loop), &r->timer);
	pg_clear(r);
	lem_unanchor(r->loop, r->slot);
	lem_unanchor(r->loop, r->self);
	r->slot = r->self = 0;
}

/* [-0, +1, m] A new request for nq statements needing extra bytes, with a slot taken.
 * A connection keeps its last two requests (one per caller of a pair) and hands them
 * out again when they ended and are big enough: a new userdata and its finalizer for
 * each query were a sixth of its cost, most of it in the collector. */
static struct pg_req *pg_req_new(lua_State *T, struct pg_conn *c, enum pg_kind kind,
                                 int nq, size_t extra)
{
	size_t size = sizeof(struct pg_req) + nq * sizeof(struct pg_query);
	struct pg_req *r = NULL;
	int k, spare = -1, slot = 0;

	for (k = 0; k < 2; k++) {
		struct pg_req *s = c->spare[k];
		if (s && !s->queued && s->size >= size + extra) {
			r = s;
			break;
		}
		if (spare < 0 && (!s || !s->queued))
			spare = k;                  /* a place for a new one */
	}
	if (r) {
		lem_anchor_push(c->loop, T, c->spare_slot[k]);
		slot = r->slot;
	} else {
		r = lua_newuserdata(T, size + extra);
		memset(r, 0, size);
		r->loop = c->loop;
		lua_pushvalue(T, lua_upvalueindex(1));
		if (lua_isnil(T, -1)) {
			lua_pop(T, 1);
			luaL_getmetatable(T, PG_REQ_MT);
		}
		lua_setmetatable(T, -2);
		if (spare >= 0 && kind != PG_CONNECT) {   /* (whose self must go with it) */
			lua_pushvalue(T, -1);
			if (c->spare_slot[spare])
				lem_anchor_set(c->loop, T, c->spare_slot[spare]);
			else
				c->spare_slot[spare] = lem_anchor(c->loop, T);
			if (c->spare_slot[spare]) {   /* (0 while the loop closes) */
				c->spare[spare] = r;
				r->spare = 1;
			}
		}
	}
	extra = r->size > size + extra ? r->size : size + extra;   /* (a spare's room) */
	k = r->spare;
	memset(r, 0, size);
	r->size = extra;
	r->spare = k;
	r->c = c;
	r->loop = c->loop;
	r->kind = kind;
	r->nq = nq;
	if (!slot) {
		lua_pushnil(T);
		slot = lem_anchor(c->loop, T);
	}
	r->slot = slot;                         /* set to the caller once it waits */
	return r;
}

/* The collector takes a request whose caller is done (or never waited). */
static int pg_req_gc(lua_State *T)
{
	pg_req_free(lua_touserdata(T, 1));
	return 0;
}

/* Suspends T on r (on top of T, the connection at 1) and queues r: return pg_wait(...).
 * With timeout >= 0, r's timer ends the wait. */
static int pg_wait(lua_State *T, struct pg_conn *c, struct pg_req *r, lua_Number timeout)
{
	struct pg_req *prev = c->tail;
	int ret;

	lua_pushvalue(T, 1);
	lua_insert(T, -2);                      /* T: ..., conn, req */
	ret = lem_suspend(T, &r->w, 2);
	r->queued = 1;
	lua_pushthread(r->w.co);
	lua_xmove(r->w.co, T, 1);
	lem_anchor_set(c->loop, T, r->slot);
	if (timeout >= 0) {
		ev_timer_init(&r->timer, pg_timeout, timeout, 0);
		ev_timer_start(lem_ev(c->loop), &r->timer);
		lem_deadline(c->loop, ev_now(lem_ev(c->loop)) + timeout);
	}
	if (r->kind == PG_NOTIFY) {
		c->listener = r;
		pg_rewatch(c);
		return ret;
	}
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	if (c->head != r) {
		/* A pipeline behind pipelines on the wire goes at once: the server runs it
		 * while the loop converts the results of those before it, instead of a round
		 * trip later. (Sending fails only when libpq runs out of memory or the
		 * connection is lost: then it ends when its turn comes, as pg_next says.) */
		if (r->kind == PG_PIPELINE && prev->kind == PG_PIPELINE && prev->sent && c->conn) {
			if (pg_send(c, r) == 0)
				pg_rewatch(c);
			else
				r->failed = 1;
		}
		return ret;
	}
	/* The connection is idle: the statements go now; but a connect, or a send that
	 * fails, ends only from the loop (pg_kicked), once T is suspended. */
	if (r->kind != PG_CONNECT && c->conn && pg_send(c, r) == 0)
		pg_rewatch(c);
	else {
		r->failed = r->kind != PG_CONNECT;
		ev_timer_start(lem_ev(c->loop), &c->kick);
	}
	return ret;
}

/* [-0, +0, v] The string at idx, which libpq takes as a C string: one with a zero
 * byte raises "bad argument" (with the message what) rather than being cut short
 * there without a word. */
static const char *pg_checktext(lua_State *T, int idx, size_t *len, const char *what)
{
	const char *s = luaL_checklstring(T, idx, len);

	if (memchr(s, '\0', *len))
		luaL_argerror(T, idx, what);
	return s;
}

static lua_Number pg_opttimeout(lua_State *T, int idx)
{
	lua_Number t;

	if (lua_isnoneornil(T, idx))
		return -1;
	t = luaL_checknumber(T, idx);
	luaL_argcheck(T, t == t, idx, "timeout is not a number");
	return t < 0 ? 0 : t;
}

/* A request for one statement: sql (or a statement's name) at 2, parameters from 3. */
static int pg_statement(lua_State *T, enum pg_kind kind)
{
	struct pg_conn *c = pg_check(T);
	int top = lua_gettop(T), from = kind == PG_PREPARE ? 4 : 3;
	size_t len, len2 = 0;
	const char *sql = pg_checktext(T, 2, &len, kind == PG_QUERY ? "zero byte in SQL" :
	                               "zero byte in a statement's name"), *sql2 = NULL;
	struct pg_req *r;
	char *mem;

	if (kind == PG_PREPARE) {
		sql2 = pg_checktext(T, 3, &len2, "zero byte in SQL");
		luaL_argcheck(T, top <= 3, 4, "prepare takes no parameters");
	}
	if (c->conn && PQstatus(c->conn) == CONNECTION_BAD && !c->head)
		return pg_push_string(T, PQerrorMessage(c->conn));
	len += len2 + 2 + value_size(T, from, top) + sizeof(void *);
	r = pg_req_new(T, c, kind, 1, len);
	mem = value_fill(T, from, top, &r->q[0], (char *)&r->q[1]);
	memcpy(mem, sql, strlen(sql) + 1);
	if (kind == PG_PREPARE) {
		r->q[0].name = mem;
		mem += strlen(sql) + 1;
		memcpy(mem, sql2, len2 + 1);
	}
	r->q[0].sql = mem;
	r->q[0].run = kind == PG_RUN;
	return pg_wait(T, c, r, -1);
}

/* db:query(sql, ...) --> rows, status | count, status | nil, message, sqlstate */
static int pg_query(lua_State *T)
{
	return pg_statement(T, PG_QUERY);
}

/* db:prepare(name, sql) --> 0, status | nil, message, sqlstate */
static int pg_prepare(lua_State *T)
{
	return pg_statement(T, PG_PREPARE);
}

/* db:run(name, ...) --> as db:query */
static int pg_run(lua_State *T)
{
	return pg_statement(T, PG_RUN);
}

/* A pipeline's recorder, p: its statements go to its connection's rec, each as its
 * count of parameters, whether it runs a prepared statement and its sql's length (a
 * struct pg_stmt), its sql and a '\0', then its parameters (value_record). Written
 * once there and copied whole into the request, where they are sent from: keeping them
 * as Lua values in a table, read back twice, was a third of a pipelined statement's
 * cost. */
struct pg_rec {
	struct pg_conn *c;
	struct pg_rec *outer;       /* the recording whose function this one runs in */
	size_t start;               /* where its statements begin in c->rec */
	int nq, nparams;
	int live;                   /* while its function runs */
};

struct pg_stmt {
	int n, run;
	size_t len;
};

#define PG_REC_KEEP 65536           /* a larger record is not kept for the next one */

/* p:query(sql, ...) and p:run(name, ...): upvalue 1 tells which, 2 is p's metatable. */
static int pg_record(lua_State *T)
{
	struct pg_rec *p = lua_touserdata(T, 1);
	int top = lua_gettop(T), ours = 0;
	struct pg_stmt st;
	struct pg_conn *c;
	size_t need;
	const char *sql;
	char *at;

	if (p && lua_getmetatable(T, 1)) {
		ours = lua_rawequal(T, -1, lua_upvalueindex(2));
		lua_pop(T, 1);
	}
	luaL_argcheck(T, ours, 1, "a pipeline's recorder expected");
	luaL_argcheck(T, p->live && p->c->recorder == p, 1,
	              "a recorder used outside its pipeline's function");
	st.run = lua_toboolean(T, lua_upvalueindex(1));
	sql = pg_checktext(T, 2, &st.len, st.run ? "zero byte in a statement's name" :
	                   "zero byte in SQL");
	need = sizeof st + st.len + 1 + value_size(T, 3, top);   /* checks the parameters */
	c = p->c;
	if (c->rec_size - c->rec_len < need) {
		size_t size = c->rec_size ? c->rec_size : 1024;
		char *rec;
		while (size - c->rec_len < need)
			size *= 2;
		if (!(rec = realloc(c->rec, size)))
			luaL_error(T, "not enough memory");
		c->rec = rec;
		c->rec_size = size;
	}
	st.n = top - 2;
	at = c->rec + c->rec_len;
	memcpy(at, &st, sizeof st);
	at += sizeof st;
	memcpy(at, sql, st.len + 1);
	at = value_record(T, 3, top, at + st.len + 1);
	c->rec_len = (size_t)(at - c->rec);
	p->nq++;
	p->nparams += st.n;
	return 0;
}

/* db:pipeline(function(p) p:query(sql, ...) p:run(name, ...) end) -->
 *   { result1, ... } | nil, message, sqlstate, index
 * The function only records the statements: they are sent together, in pipeline mode,
 * when it returns. p's metatable is upvalue 3. */
static int pg_pipeline(lua_State *T)
{
	struct pg_conn *c = pg_check(T);
	struct pg_rec *p;
	struct pg_req *r;
	size_t len, arrays;
	const char *rec;
	char *mem;
	int nq, err;

	luaL_checktype(T, 2, LUA_TFUNCTION);
	lua_settop(T, 2);
	p = lua_newuserdata(T, sizeof *p);      /* T: conn, f, p */
	lua_pushvalue(T, lua_upvalueindex(3));
	lua_setmetatable(T, 3);
	if (!c->recorder)                       /* (what a recording that raised left) */
		c->rec_len = 0;
	p->c = c;
	p->outer = c->recorder;
	p->start = c->rec_len;
	p->nq = p->nparams = 0;
	p->live = 1;
	c->recorder = p;
	lua_pushvalue(T, 2);
	lua_pushvalue(T, 3);
	err = lua_pcall(T, 1, 0, 0);            /* (to end the recording when it raises) */
	p->live = 0;
	c->recorder = p->outer;
	len = c->rec_len - p->start;
	c->rec_len = p->start;
	if (err)
		lua_error(T);
	if (!c->recorder && c->rec_size > PG_REC_KEEP) {
		free(c->rec);
		c->rec = NULL;
		c->rec_size = 0;
	}
	if ((nq = p->nq) == 0) {
		lua_newtable(T);
		return 1;
	}
	if (c->conn && PQstatus(c->conn) == CONNECTION_BAD && !c->head)
		return pg_push_string(T, PQerrorMessage(c->conn));
	/* the request: its queries, their parameters' arrays, then the record */
	arrays = (size_t)p->nparams * (sizeof(char *) + 2 * sizeof(int));
	rec = c->rec + p->start;
	r = pg_req_new(T, c, PG_PIPELINE, nq, arrays + len);
	mem = (char *)&r->q[nq];
	memcpy(mem + arrays, rec, len);
	rec = mem + arrays;
	for (int i = 0; i < nq; i++) {
		struct pg_query *q = &r->q[i];
		struct pg_stmt st;
		memcpy(&st, rec, sizeof st);
		q->sql = rec + sizeof st;
		q->run = st.run;
		rec = value_place(q, st.n, mem, q->sql + st.len + 1);
		mem += st.n * (sizeof(char *) + 2 * sizeof(int));
	}
	lua_replace(T, 2);                      /* T: conn, r */
	lua_settop(T, 2);
	return pg_wait(T, c, r, -1);
}

/* db:notification([timeout]) --> channel, payload, pid | nil, 'timeout' | nil, 'busy' |
 * nil, message */
static int pg_notification(lua_State *T)
{
	struct pg_conn *c = pg_check(T);
	lua_Number timeout = pg_opttimeout(T, 2);
	struct pg_req *r;
	PGnotify *n;

	lua_settop(T, 1);
	if (!c->conn || PQstatus(c->conn) != CONNECTION_OK)
		return pg_push_string(T, c->conn ? PQerrorMessage(c->conn) : "not connected");
	if (!c->head && !PQconsumeInput(c->conn)) {     /* else the callback reads */
		pg_fail(c, PQerrorMessage(c->conn));
		return pg_push_string(T, PQerrorMessage(c->conn));
	}
	if ((n = PQnotifies(c->conn))) {
		int k = lem_protect(c->loop, T, pg_push_notify, n);
		PQfreemem(n);
		return k < 0 ? 2 : k;
	}
	if (c->listener) {
		lua_pushnil(T);
		lua_pushliteral(T, "busy");
		return 2;
	}
	if (timeout == 0)
		return pg_push_timeout(T, NULL);
	r = pg_req_new(T, c, PG_NOTIFY, 0, 0);
	return pg_wait(T, c, r, timeout);
}

/* Closes c: its callers get nil, 'closed' (made on from); from NULL (a finalizer):
 * nobody waits any more. */
static void pg_shut(struct pg_conn *c, int wake)
{
	ev_timer_stop(lem_ev(c->loop), &c->kick);
	lookup_forget(c);
	if (wake) {
		pg_fail(c, "closed");
	} else {
		c->head = c->tail = c->listener = NULL;
		ev_io_stop(lem_ev(c->loop), &c->io);
	}
	PQfinish(c->conn);
	c->conn = NULL;
}

/* db:close() --> true */
static int pg_close(lua_State *T)
{
	struct pg_conn *c = luaL_checkudata(T, 1, PG_CONN_MT);

	pg_shut(c, 1);
	lua_pushboolean(T, 1);
	return 1;
}

static int pg_gc(lua_State *T)
{
	struct pg_conn *c = lua_touserdata(T, 1);

	pg_shut(c, 0);
	for (int k = 0; k < 2; k++) {
		lem_unanchor(c->loop, c->spare_slot[k]);
		c->spare[k] = NULL;
		c->spare_slot[k] = 0;
	}
	lem_unanchor(c->loop, c->names);
	c->names = 0;
	free(c->rec);
	c->rec = NULL;
	c->rec_size = c->rec_len = 0;
	return 0;
}

static int pg_tostring(lua_State *T)
{
	struct pg_conn *c = luaL_checkudata(T, 1, PG_CONN_MT);

	lua_pushfstring(T, "postgres connection (%s): %p", c->conn ? "open" : "closed", (void *)c);
	return 1;
}

/* postgres.connect(conninfo [, timeout]) --> db | nil, message | nil, 'timeout' */
static int pg_connect(lua_State *T)
{
	size_t len;
	const char *conninfo = pg_checktext(T, 1, &len, "zero byte in the connection string");
	lua_Number timeout = pg_opttimeout(T, 2);
	struct pg_conn *c;
	struct pg_req *r;

	lua_settop(T, 1);
	c = lua_newuserdata(T, sizeof *c);      /* T: conninfo, c */
	memset(c, 0, sizeof *c);
	c->loop = lem_loop_of(T);
	ev_init(&c->io, pg_io);
	ev_timer_init(&c->kick, pg_kicked, 0, 0);
	luaL_getmetatable(T, PG_CONN_MT);
	lua_setmetatable(T, -2);
	lua_replace(T, 1);                      /* T: c, which pg_wait keeps */
	lua_newtable(T);
	c->names = lem_anchor(c->loop, T);
	r = pg_req_new(T, c, PG_CONNECT, 0, len + 1);
	lua_pushvalue(T, 1);
	r->self = lem_anchor(c->loop, T);
	memcpy((char *)&r->q[0], conninfo, len + 1);
	return pg_wait(T, c, r, timeout);
}

int luaopen_lem_postgres(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "query", pg_query }, { "prepare", pg_prepare }, { "run", pg_run },
		{ "notification", pg_notification }, { "close", pg_close },
		{ "cancel", cancel_start }, { "status", pool_status }, { NULL, NULL }
	};
	static const luaL_Reg meta[] = {
		{ "__gc", pg_gc }, { "__tostring", pg_tostring }, { NULL, NULL }
	};
	static const luaL_Reg funcs[] = {
		{ "connect", pg_connect }, { "binary", value_binary }, { NULL, NULL }
	};

	int top = lua_gettop(L);

	luaL_newmetatable(L, PG_REQ_MT);        /* top + 1 */
	lua_pushcfunction(L, pg_req_gc);
	lua_setfield(L, -2, "__gc");
	luaL_newmetatable(L, PG_CONN_MT);       /* top + 2 */
	luaL_register(L, NULL, meta);
	lua_newtable(L);                        /* the methods, with both metatables (pg_check) */
	lua_pushvalue(L, top + 1);
	lua_pushvalue(L, top + 2);
	luaL_openlib(L, NULL, methods, 2);
	lua_pushvalue(L, top + 1);
	lua_pushvalue(L, top + 2);
	lua_createtable(L, 0, 2);               /* pipeline's upvalue 3: its recorder's metatable */
	lua_createtable(L, 0, 2);
	for (int run = 0; run <= 1; run++) {
		lua_pushboolean(L, run);
		lua_pushvalue(L, -3);
		lua_pushcclosure(L, pg_record, 2);
		lua_setfield(L, -2, run ? "run" : "query");
	}
	lua_setfield(L, -2, "__index");
	lua_pushliteral(L, "postgres pipeline recorder");
	lua_setfield(L, -2, "__metatable");
	lua_pushcclosure(L, pg_pipeline, 3);
	lua_setfield(L, -2, "pipeline");
	lua_setfield(L, top + 2, "__index");
	lua_pushliteral(L, "postgres connection");
	lua_setfield(L, top + 2, "__metatable");
	lua_newtable(L);                        /* the module */
	lua_pushvalue(L, top + 1);
	lua_pushvalue(L, top + 2);
	luaL_openlib(L, NULL, funcs, 2);
	lua_pushlightuserdata(L, PG_NULL_VALUE);
	lua_setfield(L, -2, "null");
	pool_open(L);
	return 1;
}
