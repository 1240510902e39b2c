/* pool.c: postgres.pool, connections shared by the coroutines of a loop. The pool is Lua
 * (pool.lua, built into the module as pool_lua.h); its C half is db:status(), which
 * tells a connection worth keeping from one to drop. */
#include "pg.h"
#include <pool_lua.h>   /* made from pool.lua in the build folder: pool_lua[] */

/* db:status() --> 'idle' | 'busy' | 'transaction' | 'failed' | 'lost' | 'closed'
 * An idle connection reads what waits in its socket first, so that a connection the
 * server closed meanwhile says 'lost' before anyone sends it a query. */
int pool_status(lua_State *T)
{
	struct pg_conn *c = luaL_checkudata(T, 1, PG_CONN_MT);
	const char *s = "busy";

	if (!c->conn)
		s = c->head ? "busy" : "closed";     /* (a connect in progress) */
	else if (PQstatus(c->conn) != CONNECTION_OK)
		s = c->head ? "busy" : "lost";
	else if (!c->head) {
		/* (not while a coroutine waits for a notification: its watcher reads). A
		 * server that ends a session says why, then closes: the read that takes its
		 * message returns, and only the next one sees the end. */
		if (!c->listener && (!PQconsumeInput(c->conn) || !PQconsumeInput(c->conn)))
			s = "lost";
		else switch (PQtransactionStatus(c->conn)) {
		case PQTRANS_IDLE:    s = "idle"; break;
		case PQTRANS_INTRANS: s = "transaction"; break;
		case PQTRANS_INERROR: s = "failed"; break;
		case PQTRANS_ACTIVE:  s = "busy"; break;
		default:              s = "lost";
		}
	}
	lua_pushstring(T, s);
	return 1;
}

/* [-0, +0, v] Sets postgres.pool in the module on top of L, from pool.lua. */
void pool_open(lua_State *L)
{
	if (luaL_loadbuffer(L, pool_lua, sizeof pool_lua, "=[lem.postgres.pool]") != 0)
		lua_error(L);
	lua_pushvalue(L, -2);
	lua_call(L, 1, 1);                      /* pool.lua returns postgres.pool */
	lua_setfield(L, -2, "pool");
}
