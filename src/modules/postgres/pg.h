/* pg.h: lem.postgres's files: connections and their queue of requests (pg.c), values
 * between Lua and PostgreSQL (value.c), host name lookups before a connect (lookup.c),
 * db:cancel() (cancel.c), postgres.pool and db:status() (pool.c, pool.lua). */
#ifndef LEM_PG_H
#define LEM_PG_H

#include <stddef.h>
#include <libpq-fe.h>
#include "lem.h"

#define PG_CONN_MT "lem.postgres.connection"
#define PG_REQ_MT  "lem.postgres.request"

/* The type OIDs the results convert (the server's catalog/pg_type.h, not in libpq-dev). */
enum {
	PG_BOOLOID = 16, PG_BYTEAOID = 17, PG_INT8OID = 20, PG_INT2OID = 21, PG_INT4OID = 23,
	PG_OIDOID = 26, PG_FLOAT4OID = 700, PG_FLOAT8OID = 701, PG_NUMERICOID = 1700
};

/* What a request asks. */
enum pg_kind { PG_CONNECT, PG_QUERY, PG_PREPARE, PG_RUN, PG_PIPELINE, PG_NOTIFY };

/* One statement to send: its text (or, run, its prepared statement's name) and
 * parameters in libpq's arrays; a NULL value is SQL's NULL. */
struct pg_query {
	const char *sql;
	const char *name;           /* PG_PREPARE: the statement's name */
	int run;                    /* sql names a prepared statement */
	int n;
	const char **values;
	int *lengths;
	int *formats;               /* 0 text, 1 binary (postgres.binary) */
	PGresult *res;              /* what the server answered: the last result, or the
	                               first error */
};

struct lookup;

/* A connection: the userdata a connect returns. Its requests wait in a FIFO whose head
 * is the one on the wire: libpq runs one at a time, outside of pipeline mode. */
struct pg_conn {
	ev_io io;                   /* first: the callback gets the connection by a cast */
	ev_timer kick;              /* due at once: starts a connect, or ends a request a
	                               method could not send, from the loop once its caller
	                               is suspended (a wake before would be lost) */
	lem_loop *loop;
	PGconn *conn;               /* NULL once closed */
	int flushing;               /* PQflush had more to send: watch for writable too */
	struct pg_req *head, *tail; /* the FIFO */
	struct pg_req *listener;    /* a coroutine in notification(), or NULL */
	struct lookup *lookup;   /* the host name lookup of a connect, or NULL */
	struct pg_req *spare[2];    /* requests kept for the next ones (pg_req_new) */
	int spare_slot[2];          /* anchor them; 0 when none */
	int names;                  /* anchors the strings results reuse (value_rows) */
	char *rec;                  /* what pipelines' recorders wrote (pg_record), */
	size_t rec_len, rec_size;   /* a stack: one recording inside another's function */
	struct pg_rec *recorder;    /* the innermost recording, or NULL */
};

/* A request: a userdata the waiting coroutine keeps on its stack (so that the
 * collector takes it if its suspension raised), queued in its connection, which may
 * keep it for a next caller once it ended (spare). */
struct pg_req {
	ev_timer timer;             /* first: the callback gets the request by a cast */
	lem_waiter w;
	struct pg_conn *c;
	lem_loop *loop;
	struct pg_req *next;
	int slot;                   /* anchors the waiting coroutine; 0 when none */
	int self;                   /* PG_CONNECT: anchors the connection it returns */
	enum pg_kind kind;
	int sent;
	int failed;                 /* could not be sent: ends with libpq's message */
	int nq;                     /* queries: one, or a pipeline's */
	int at;                     /* a pipeline's query whose results come now */
	int copying;                /* the rows of a COPY TO STDOUT come now */
	int queued;                 /* from its caller's suspension to pg_end */
	int spare;                  /* its connection keeps it (pg_req_new) */
	size_t size;                /* of the userdata */
	struct pg_query q[];
};

/* The connection whose kick timer w is. */
static inline struct pg_conn *pg_of_kick(ev_timer *w)
{
	return (struct pg_conn *)((char *)w - offsetof(struct pg_conn, kick));
}

/* pg.c */
void pg_connect_start(struct pg_conn *c, const char *conninfo, const char *hostaddr,
                      const char *err);

/* value.c */
#define PG_NULL_VALUE NULL          /* postgres.null: a light userdata */
size_t value_size(lua_State *T, int from, int to);
char *value_fill(lua_State *T, int from, int to, struct pg_query *q, char *mem);
char *value_record(lua_State *T, int from, int to, char *p);
const char *value_place(struct pg_query *q, int n, char *mem, const char *p);
int value_result(lua_State *S, const PGresult *r, int names);
int value_error(lua_State *S, const PGresult *r);
int value_pipeline(lua_State *S, struct pg_req *req, int names);
int value_is_binary(lua_State *T, int idx);
int value_binary(lua_State *T);

/* lookup.c */
int lookup_needed(const char *conninfo, char **host);
void lookup_start(struct pg_conn *c, const char *conninfo, char *host);
void lookup_forget(struct pg_conn *c);

/* cancel.c */
int cancel_start(lua_State *T);

/* pool.c */
int pool_status(lua_State *T);
void pool_open(lua_State *L);

#endif
