/* value.c: values between Lua and PostgreSQL: parameters go as text (binary for
 * postgres.binary), results come back converted by their column's type. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pg.h"

#define VALUE_BINARY_MT "lem.postgres.binary"
#define VALUE_NUMLEN 32              /* room for a number's text: "%.17g" and more */

/* ---- parameters ---- */

/* postgres.binary(s) --> a wrapper that sends s in binary format (for bytea) */
int value_binary(lua_State *T)
{
	luaL_checkstring(T, 1);
	lua_createtable(T, 1, 0);
	lua_pushvalue(T, 1);
	lua_rawseti(T, -2, 1);
	luaL_getmetatable(T, VALUE_BINARY_MT);
	if (lua_isnil(T, -1)) {               /* the first call makes it */
		lua_pop(T, 1);
		luaL_newmetatable(T, VALUE_BINARY_MT);
	}
	lua_setmetatable(T, -2);
	return 1;
}

int value_is_binary(lua_State *T, int idx)
{
	int is;

	if (!lua_istable(T, idx) || !lua_getmetatable(T, idx))
		return 0;
	luaL_getmetatable(T, VALUE_BINARY_MT);
	is = lua_rawequal(T, -1, -2);
	lua_pop(T, 2);
	return is;
}

/* [-0, +0, v] The bytes the parameters at from..to of T need in a request: libpq's
 * arrays and the values' text. Raises "bad argument" for a value SQL has no place for,
 * and for a string with a zero byte (bytes go as postgres.binary). */
size_t value_size(lua_State *T, int from, int to)
{
	size_t n = 0, len;
	const char *s;

	for (int i = from; i <= to; i++) {
		n += sizeof(char *) + 2 * sizeof(int);
		switch (lua_type(T, i)) {
		case LUA_TNIL:
		case LUA_TBOOLEAN:
			break;
		case LUA_TNUMBER:
			n += VALUE_NUMLEN;
			break;
		case LUA_TSTRING:
			s = lua_tolstring(T, i, &len);
			/* libpq takes text as a C string: a zero byte would end it there */
			if (memchr(s, '\0', len))
				luaL_argerror(T, i, "zero byte in a text parameter; use postgres.binary");
			n += len + 1;
			break;
		case LUA_TLIGHTUSERDATA:
			if (lua_touserdata(T, i) == PG_NULL_VALUE)
				break;
			/* fall through */
		default:
			if (value_is_binary(T, i)) {
				lua_rawgeti(T, i, 1);
				lua_tolstring(T, -1, &len);
				lua_pop(T, 1);
				n += len + 1;
				break;
			}
			luaL_argerror(T, i, lua_pushfstring(T, "%s cannot be a parameter",
			                                    luaL_typename(T, i)));
		}
	}
	return n;
}

/* A number as PostgreSQL reads it: whole ones without exponent (for int8), others so
 * that they read back the same. Returns its length. */
static size_t value_number(char *buf, lua_Number x)
{
	if (x > -1e18 && x < 1e18 && x == (lua_Number)(long long)x) {
		/* by hand: snprintf's "%.0f" cost more than the rest of a prepared
		 * statement's parameters and request put together */
		unsigned long long u = (unsigned long long)(x < 0 ? -x : x);
		char tmp[24], *e = tmp + sizeof tmp, *p = e;
		size_t len;
		do
			*--p = (char)('0' + u % 10);
		while ((u /= 10) != 0);
		if (signbit(x))             /* -0 too */
			*--p = '-';
		len = (size_t)(e - p);
		memcpy(buf, p, len);
		buf[len] = '\0';
		return len;
	}
	if (x != x)
		strcpy(buf, "NaN");
	else if (isinf(x))
		strcpy(buf, x > 0 ? "Infinity" : "-Infinity");
	else
		snprintf(buf, VALUE_NUMLEN, "%.17g", x);
	return strlen(buf);
}

/* [-0, +0, -] Lays out the parameters at from..to of T (checked by value_size) at mem,
 * rounded up to a pointer's alignment (value_size counts no room for that: its caller
 * does), as q's; returns the end of what it used. */
char *value_fill(lua_State *T, int from, int to, struct pg_query *q, char *mem)
{
	int n = to - from + 1;
	size_t len;
	const char *s;
	char *p;

	mem = (char *)(((uintptr_t)mem + sizeof(void *) - 1) & ~(uintptr_t)(sizeof(void *) - 1));
	q->n = n;
	q->values = (const char **)mem;
	q->lengths = (int *)(mem + n * sizeof(char *));
	q->formats = q->lengths + n;
	p = (char *)(q->formats + n);
	for (int i = 0; i < n; i++) {
		int idx = from + i;
		q->lengths[i] = 0;
		q->formats[i] = 0;
		switch (lua_type(T, idx)) {
		case LUA_TBOOLEAN:
			q->values[i] = lua_toboolean(T, idx) ? "t" : "f";
			continue;
		case LUA_TNUMBER:
			q->values[i] = p;
			p += value_number(p, lua_tonumber(T, idx)) + 1;
			continue;
		case LUA_TSTRING:
			s = lua_tolstring(T, idx, &len);
			break;
		case LUA_TTABLE:                  /* postgres.binary */
			lua_rawgeti(T, idx, 1);
			s = lua_tolstring(T, -1, &len);
			lua_pop(T, 1);                /* the wrapper keeps it: s stays valid */
			q->formats[i] = 1;
			break;
		default:                          /* nil, postgres.null */
			q->values[i] = NULL;
			continue;
		}
		memcpy(p, s, len);
		p[len] = '\0';
		q->values[i] = p;
		q->lengths[i] = (int)len;
		p += len + 1;
	}
	return p;
}

/* A pipeline's recorder keeps each parameter as its length (-1: NULL) and format, two
 * ints, then its bytes and a '\0' (value_record); value_place points a query at them. */

/* [-0, +0, -] Writes the parameters at from..to of T (checked by value_size, whose
 * count is room enough) at p, as a recorder keeps them; returns the end. */
char *value_record(lua_State *T, int from, int to, char *p)
{
	for (int idx = from; idx <= to; idx++) {
		int h[2] = { -1, 0 };
		char *s = p + sizeof h;
		const char *v;
		size_t len = 0;
		switch (lua_type(T, idx)) {
		case LUA_TBOOLEAN:
			*s = lua_toboolean(T, idx) ? 't' : 'f';
			len = 1;
			break;
		case LUA_TNUMBER:
			len = value_number(s, lua_tonumber(T, idx));
			break;
		case LUA_TSTRING:
			v = lua_tolstring(T, idx, &len);
			memcpy(s, v, len);
			break;
		case LUA_TTABLE:                  /* postgres.binary */
			lua_rawgeti(T, idx, 1);
			v = lua_tolstring(T, -1, &len);
			memcpy(s, v, len);
			lua_pop(T, 1);
			h[1] = 1;
			break;
		default:                          /* nil, postgres.null */
			memcpy(p, h, sizeof h);
			p += sizeof h;
			continue;
		}
		s[len] = '\0';
		h[0] = (int)len;
		memcpy(p, h, sizeof h);
		p = s + len + 1;
	}
	return p;
}

/* Points q's n parameters at their bytes, recorded at p by value_record, with its
 * arrays at mem (n pointers and 2n ints); returns the end of the parameters at p. */
const char *value_place(struct pg_query *q, int n, char *mem, const char *p)
{
	q->n = n;
	q->values = (const char **)mem;
	q->lengths = (int *)(mem + n * sizeof(char *));
	q->formats = q->lengths + n;
	for (int i = 0; i < n; i++) {
		int h[2];
		memcpy(h, p, sizeof h);
		p += sizeof h;
		q->values[i] = h[0] < 0 ? NULL : p;
		q->lengths[i] = h[0] < 0 ? 0 : h[0];
		q->formats[i] = h[1];
		if (h[0] >= 0)
			p += h[0] + 1;
	}
	return p;
}

/* ---- results ---- */

static int value_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* [-0, +1, m] bytea's hex output ("\x4142") as the bytes it stands for; another
 * output (bytea_output = escape) as it is. */
static void value_bytea(lua_State *S, const char *s, int len)
{
	luaL_Buffer b;

	if (len < 2 || s[0] != '\\' || s[1] != 'x' || len % 2) {
		lua_pushlstring(S, s, len);
		return;
	}
	luaL_buffinit(S, &b);
	for (int i = 2; i < len; i += 2) {
		int hi = value_hex((unsigned char)s[i]), lo = value_hex((unsigned char)s[i + 1]);
		luaL_addchar(&b, (char)(hi << 4 | lo));
	}
	luaL_pushresult(&b);
}

/* [-0, +1, m] Row r's value of column j, by its type. */
static void value_push(lua_State *S, const PGresult *res, int r, int j, Oid type)
{
	int len = PQgetlength(res, r, j);
	const char *s;

	if (len == 0 && PQgetisnull(res, r, j)) {   /* (a NULL's length is 0) */
		lua_pushlightuserdata(S, PG_NULL_VALUE);
		return;
	}
	s = PQgetvalue(res, r, j);
	switch (type) {
	case PG_INT2OID:
	case PG_INT4OID:
	case PG_INT8OID:
	case PG_OIDOID:
		if (len > 0 && len < 16) {        /* exact in a double: by hand, strtod cost more */
			lua_Number x = 0;
			for (int i = s[0] == '-'; i < len; i++)
				x = x * 10 + (s[i] - '0');
			lua_pushnumber(S, s[0] == '-' ? -x : x);
			break;
		}
		/* fall through */
	case PG_FLOAT4OID:
	case PG_FLOAT8OID:
	case PG_NUMERICOID:
		lua_pushnumber(S, strtod(s, NULL));   /* also "NaN", "Infinity" */
		break;
	case PG_BOOLOID:
		lua_pushboolean(S, s[0] == 't');
		break;
	case PG_BYTEAOID:
		value_bytea(S, s, len);
		break;
	default:
		lua_pushlstring(S, s, len);
	}
}

#define VALUE_NAMES 64                  /* strings a connection keeps for its results */

/* [-0, +1, m] s, as the string at k of the table at names (0: none) when it is the same:
 * a query's column names and status are most often its last one's, and making their
 * strings anew (hashing them) cost more than the rest of a row of one value. */
static void value_name(lua_State *S, int names, int k, const char *s)
{
	if (!names || k > VALUE_NAMES) {
		lua_pushstring(S, s);
		return;
	}
	lua_rawgeti(S, names, k);
	if (lua_type(S, -1) == LUA_TSTRING && strcmp(lua_tostring(S, -1), s) == 0)
		return;
	lua_pop(S, 1);
	lua_pushstring(S, s);
	lua_pushvalue(S, -1);
	lua_rawseti(S, names, k);
}

/* [-0, +1, m] The rows of res: an array of tables, column name -> value. */
static void value_rows(lua_State *S, const PGresult *res, int names)
{
	int nrows = PQntuples(res), ncols = PQnfields(res), first;

	luaL_checkstack(S, ncols + 4, "too many columns");
	lua_createtable(S, nrows, 0);
	first = lua_gettop(S) + 1;
	for (int j = 0; j < ncols; j++)
		value_name(S, names, j + 2, PQfname(res, j));
	for (int r = 0; r < nrows; r++) {
		lua_createtable(S, 0, ncols);
		for (int j = 0; j < ncols; j++) {
			lua_pushvalue(S, first + j);
			value_push(S, res, r, j, PQftype(res, j));
			lua_rawset(S, -3);
		}
		lua_rawseti(S, first - 1, r + 1);
	}
	lua_settop(S, first - 1);
}

/* [-0, +3, m] nil, the error's message, its SQLSTATE (nil when the client failed) */
int value_error(lua_State *S, const PGresult *r)
{
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	size_t len;

	if (!msg)
		msg = r ? PQresultErrorMessage(r) : "no result";
	len = strcspn(msg, "\n");               /* libpq's own messages end with one */
	lua_pushnil(S);
	lua_pushlstring(S, msg, len);
	if (state)
		lua_pushstring(S, state);
	else
		lua_pushnil(S);
	return 3;
}

/* [-0, +2|+3, m] What db:query returns for r: rows and the command's status, the number
 * of rows a command affected and its status, or nil, message, SQLSTATE. names: the
 * index of the connection's table of strings to reuse, or 0. */
int value_result(lua_State *S, const PGresult *r, int names)
{
	switch (r ? PQresultStatus(r) : PGRES_FATAL_ERROR) {
	case PGRES_TUPLES_OK:
	case PGRES_SINGLE_TUPLE:
		value_rows(S, r, names);
		break;
	case PGRES_COMMAND_OK:
	case PGRES_EMPTY_QUERY:
		lua_pushnumber(S, strtod(PQcmdTuples((PGresult *)r), NULL));
		break;
	default:
		return value_error(S, r);
	}
	value_name(S, names, 1, PQcmdStatus((PGresult *)r));
	return 2;
}

/* [-0, +1|+4, m] A pipeline's results: an array of what each query's value_result
 * returns first; or, when one failed, nil, message, SQLSTATE and the query's index. */
int value_pipeline(lua_State *S, struct pg_req *req, int names)
{
	for (int i = 0; i < req->nq; i++) {
		ExecStatusType st = req->q[i].res ? PQresultStatus(req->q[i].res) : PGRES_FATAL_ERROR;
		if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY) {
			value_error(S, req->q[i].res);
			lua_pushinteger(S, i + 1);
			return 4;
		}
	}
	lua_createtable(S, req->nq, 0);
	for (int i = 0; i < req->nq; i++) {
		if (PQresultStatus(req->q[i].res) == PGRES_TUPLES_OK)
			value_rows(S, req->q[i].res, names);   /* without value_result's status */
		else {
			value_result(S, req->q[i].res, names);
			lua_pop(S, 1);
		}
		lua_rawseti(S, -2, i + 1);
	}
	return 1;
}
