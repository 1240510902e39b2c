/* cancel.c: db:cancel(), which asks the server to cancel what a connection runs.
 *
 * PostgreSQL's cancel is a message on a new connection to the server, carrying the
 * session's key; libpq's PQcancel makes it, blocking, until the server closes that
 * connection. So it runs on lem's thread pool, on a PGcancel made beforehand in the
 * loop's thread (PQgetCancel copies the key and the address). The cancelled query's own
 * caller then gets the server's error, '57014', through the connection as usual. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "pg.h"

struct cancel {
	lem_waiter w;               /* the caller of db:cancel(); co NULL if it never waited */
	int slot;                   /* anchors that caller */
	PGcancel *pc;
	int ok;                     /* what PQcancel returned */
	char err[256];              /* and why not */
};

/* On the pool. */
static void cancel_work(void *arg)
{
	struct cancel *k = arg;

	k->ok = PQcancel(k->pc, k->err, sizeof k->err);
}

static int cancel_push(lua_State *S, void *arg)
{
	struct cancel *k = arg;

	if (k->ok) {
		lua_pushboolean(S, 1);
		return 1;
	}
	lua_pushnil(S);
	lua_pushlstring(S, k->err, strcspn(k->err, "\n"));
	return 2;
}

static void cancel_done(lem_loop *loop, void *arg)
{
	struct cancel *k = arg;
	lua_State *L = lem_state(loop);
	int n = lem_protect(loop, L, cancel_push, k);

	lem_wake(loop, &k->w, L, n < 0 ? 2 : n);   /* a stale one pops them */
	lem_unanchor(loop, k->slot);
	PQfreeCancel(k->pc);
	free(k);
}

/* db:cancel() --> true | false | nil, message
 * Asks the server to cancel the request on the wire, and returns once it has the
 * request (true), or at once when nothing runs (false). */
int cancel_start(lua_State *T)
{
	struct pg_conn *c = luaL_checkudata(T, 1, PG_CONN_MT);
	lem_loop *loop = lem_loop_of(T);
	struct cancel *k;
	int slot, err, ret;

	if (!c->conn || !c->head || !c->head->sent || c->head->kind == PG_CONNECT) {
		lua_pushboolean(T, 0);
		return 1;
	}
	lua_settop(T, 1);
	lua_pushnil(T);
	slot = lem_anchor(loop, T);             /* for the caller, taken first: it may raise */
	if (!(k = calloc(1, sizeof *k))) {
		lem_unanchor(loop, slot);
		return luaL_error(T, "not enough memory");
	}
	k->slot = slot;
	if (!(k->pc = PQgetCancel(c->conn))) {
		lem_unanchor(loop, k->slot);
		free(k);
		lua_pushnil(T);
		lua_pushliteral(T, "cannot cancel");
		return 2;
	}
	/* The job goes before the suspension, which may raise (then the cancel is still
	 * sent, and its end wakes nobody): after it, nothing could report a failure. */
	if ((err = lem_async_run(loop, cancel_work, cancel_done, k)) < 0) {
		lem_unanchor(loop, k->slot);
		PQfreeCancel(k->pc);
		free(k);
		lua_pushnil(T);
		lua_pushstring(T, err == -ENOMEM ? "not enough memory" : "the loop is closing");
		return 2;
	}
	ret = lem_suspend(T, &k->w, 0);
	lua_pushthread(k->w.co);
	lua_xmove(k->w.co, T, 1);
	lem_anchor_set(loop, T, k->slot);
	return ret;
}
