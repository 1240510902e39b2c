/* http.c: lem.http's C half: the parser's bindings, and the server's request path (a
 * request's tables made from its head, an answer's head made in one string), handed to
 * the Lua half (http.lua, built into the binary as http_lua.h), which serves connections
 * and makes requests. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "lem.h"
#include "parser.h"
#include <http_lua.h>   /* made from http.lua in the build folder: http_lua[] */

#define HTTP_PARSER_MT  "lem.http.parser"
#define HTTP_CHUNKED_MT "lem.http.chunked"

/* A parser's limits and the room for the fields of one head. */
struct http_parser {
	struct http_limits lim;
	struct http_field fields[];   /* lim.max_fields of them */
};

/* [-0, +1, m] The field name at p, in lower case, as a string. */
static void http_pushlower(lua_State *T, const char *p, size_t len)
{
	char small[64];
	char *b = len <= sizeof small ? small : lua_newuserdata(T, len);

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		b[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	lua_pushlstring(T, b, len);
	if (b != small)
		lua_remove(T, -2);
}

/* [-0, +2, m] The fields of h as two tables: the first value of each field by its name in
 * lower case, and the list of every value of the names that came more than once or are
 * "all" (which the first table keeps for headers:all), or nil when there is none. */
static void http_pushfields(lua_State *T, const char *buf, const struct http_head *h)
{
	int multi = 0;

	lua_createtable(T, 0, (int)h->nfields);
	lua_pushnil(T);                                   /* the second table, once needed */
	for (uint32_t i = 0; i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];
		int all = f->name_len == 3 && !strncasecmp(buf + f->name, "all", 3);

		http_pushlower(T, buf + f->name, f->name_len);            /* name */
		lua_pushvalue(T, -1);
		lua_rawget(T, -4);                                        /* name, first */
		if (lua_isnil(T, -1) && !all) {
			lua_pop(T, 1);
			lua_pushlstring(T, buf + f->value, f->value_len);
			lua_rawset(T, -4);
			continue;
		}
		if (!multi) {
			lua_newtable(T);
			lua_replace(T, -4);
			multi = 1;
		}
		lua_pushvalue(T, -2);
		lua_rawget(T, -4);                                        /* name, first, list */
		if (lua_isnil(T, -1)) {
			lua_pop(T, 1);
			lua_createtable(T, 2, 0);
			if (!all) {
				lua_pushvalue(T, -2);
				lua_rawseti(T, -2, 1);
			}
			lua_pushvalue(T, -3);
			lua_pushvalue(T, -2);
			lua_rawset(T, -6);
		}
		lua_pushlstring(T, buf + f->value, f->value_len);
		lua_rawseti(T, -2, (int)lua_objlen(T, -2) + 1);
		lua_pop(T, 3);
	}
}

/* [-0, +3, m] nil, status, reason: the answer to a head that does not parse. */
static int http_fail(lua_State *T, int err)
{
	lua_pushnil(T);
	lua_pushinteger(T, http_status_of(err));
	lua_pushstring(T, http_strerror(err));
	return 3;
}

static const char *const http_bodies[] = { "none", "length", "chunked", "close" };

/* [-0, +3, m] Content length, keep-alive, expect-continue. */
static void http_pushlength(lua_State *T, const struct http_head *h)
{
	lua_pushnumber(T, (lua_Number)h->content_length);
	lua_pushboolean(T, (h->flags & HTTP_KEEP_ALIVE) != 0);
	lua_pushboolean(T, (h->flags & HTTP_EXPECT_CONTINUE) != 0);
}

/* [-0, +4, m] The fields shared by requests and responses: body kind, then the above. */
static void http_pushframing(lua_State *T, const struct http_head *h)
{
	lua_pushstring(T, http_bodies[h->body]);
	http_pushlength(T, h);
}

/* parser:request(head [, more]) --> method, target, minor, body, length, keep_alive,
 *                          expect, headers, multi, head_len | false (incomplete)
 *                          | nil, status, reason
 * more: the rest of the head, parsed as if joined to head (a server reads a head's first
 * byte apart): short heads are joined on the C stack, without a Lua string.
 * body: 'none', 'length' or 'chunked'. A length above 2^53 loses precision: callers bound
 * it far below.
 * parser:response(head) --> status, reason, minor, ...the same
 * body: 'none', 'length', 'chunked' or 'close'.
 * parser:response_head(head): the same without the fields (headers and multi nil), for
 * a client that makes its response's headers when they are asked for.
 * Upvalues: true for responses, true to make the fields. */
static int http_parse(lua_State *T)
{
	struct http_parser *p = luaL_checkudata(T, 1, HTTP_PARSER_MT);
	int response = lua_toboolean(T, lua_upvalueindex(1));
	size_t len, more;
	const char *buf = luaL_checklstring(T, 2, &len);
	const char *rest = luaL_optlstring(T, 3, NULL, &more);
	char joined[2048];
	struct http_head h;
	int n;

	if (rest && len + more <= sizeof joined) {
		memcpy(joined, buf, len);
		memcpy(joined + len, rest, more);
		buf = joined;
		len += more;
	} else if (rest) {
		lua_settop(T, 3);
		lua_concat(T, 2);
		buf = lua_tolstring(T, 2, &len);
	}
	h.fields = p->fields;
	n = response ? http_parse_response(buf, len, &h, &p->lim)
	             : http_parse_request(buf, len, &h, &p->lim);
	if (n < 0)
		return http_fail(T, n);
	if (n == 0) {
		lua_pushboolean(T, 0);
		return 1;
	}
	if (response) {
		lua_pushinteger(T, h.status);
		lua_pushlstring(T, buf + h.reason, h.reason_len);
	} else {
		lua_pushlstring(T, buf + h.method, h.method_len);
		lua_pushlstring(T, buf + h.target, h.target_len);
	}
	lua_pushinteger(T, h.minor);
	http_pushframing(T, &h);
	if (lua_toboolean(T, lua_upvalueindex(2))) {
		http_pushfields(T, buf, &h);
	} else {
		lua_pushnil(T);
		lua_pushnil(T);
	}
	lua_pushinteger(T, n);
	return 10;
}

/* [-0, +2, m] The path and the query (nil without '?') of a request-target: an
 * absolute-form target gives its path ('/' for none). */
static void http_pushtarget(lua_State *T, const char *t, size_t len)
{
	size_t i = 0, q;

	if (len && ((t[0] | 32) >= 'a' && (t[0] | 32) <= 'z')) {   /* scheme "://" ? */
		for (i = 1; i < len && (isalnum((unsigned char)t[i]) || strchr("+.-", t[i])); i++)
			;
		if (len - i >= 3 && !memcmp(t + i, "://", 3)) {
			for (i += 3; i < len && t[i] != '/' && t[i] != '?'; i++)
				;
		} else {
			i = 0;
		}
	}
	for (q = i; q < len && t[q] != '?'; q++)
		;
	if (i > 0 && q == i)
		lua_pushliteral(T, "/");
	else
		lua_pushlstring(T, t + i, q - i);
	if (q < len)
		lua_pushlstring(T, t + q + 1, len - q - 1);
	else
		lua_pushnil(T);
}

/* http_serve's upvalues: the classes, the shared empty body, the keys it sets, then the
 * values it gives most often (the body kinds in http_bodies' order). */
enum { U_REQUEST = 1, U_HEADERS, U_RESPONSE, U_OUTHEADERS, U_NOBODY, K_METHOD, K_TARGET,
       K_PATH, K_QUERY, K_VERSION, K_CONN, K_BODY, K_HEADERS, K_REQ, K_LEAD, K_DATA,
       V_GET, V_HEAD, V_POST, V_10, V_11, V_NONE, V_LENGTH, V_CHUNKED, U_N = V_CHUNKED };

/* Pushes one of http_serve's keys or values: interned once, they cost no hashing (a
 * string pushed anew is hashed and looked up, ~200 instructions). */
#define KEY(k) lua_pushvalue(T, lua_upvalueindex(k))

/* [-0, +5, m] A request's method, target, path, query (nil without '?') and version. */
static void http_pushreq(lua_State *T, const char *buf, const struct http_head *h)
{
	if (h->method_len == 3 && !memcmp(buf + h->method, "GET", 3))
		KEY(V_GET);
	else if (h->method_len == 4 && !memcmp(buf + h->method, "HEAD", 4))
		KEY(V_HEAD);
	else if (h->method_len == 4 && !memcmp(buf + h->method, "POST", 4))
		KEY(V_POST);
	else
		lua_pushlstring(T, buf + h->method, h->method_len);
	lua_pushlstring(T, buf + h->target, h->target_len);
	if (h->target_len && buf[h->target] == '/' && !memchr(buf + h->target, '?', h->target_len)) {
		lua_pushvalue(T, -1);                 /* origin-form without a query: the target */
		lua_pushnil(T);
	} else {
		http_pushtarget(T, buf + h->target, h->target_len);   /* path, query */
	}
	KEY(h->minor == 1 ? V_11 : V_10);
}

/* [-0, +5, m] The rest of serve's values: body kind, length, keep_alive, expect and
 * upgrade. */
static void http_pushrest(lua_State *T, const char *buf, const struct http_head *h)
{
	uint32_t i;

	if (h->body <= HTTP_BODY_CHUNKED) {        /* a request's: none, length or chunked */
		KEY(V_NONE + h->body);
		http_pushlength(T, h);
	} else {
		http_pushframing(T, h);
	}
	for (i = 0; i < h->nfields; i++)
		if (h->fields[i].name_len == 7 && !strncasecmp(buf + h->fields[i].name, "upgrade", 7))
			break;
	lua_pushboolean(T, i < h->nfields);
}

/* serve(parser, lead, data, conn) --> req, res, body, length, keep_alive, expect, upgrade
 *                                     | false | nil, status, reason
 * A server's request as parser:request(lead, data) parses it, made at once: req (method,
 * target, path, query, version, _conn = conn, _body = the shared body without bytes when
 * there is none, and _lead (unless '') and _data: the head, parsed again into req.headers
 * only if a handler asks for them) and res (headers, _conn = conn, _req = req), with their
 * metatables; conn is the connection's state (http.lua). upgrade: the head has an
 * Upgrade field. false: lead .. data is not one whole head (a head begun, or more after a
 * head: a reader of heads up to their empty line gets that only after empty lines).
 * serve(parser, lead, data) --> method, target, path, query, version, body, length,
 *                               keep_alive, expect, upgrade | the same failures
 * made without classes (server()): the values, for http.lua to make the tables with.
 * Upvalues: Request, Headers, Response, OutHeaders, the shared empty body, the keys. */
static int http_serve(lua_State *T)
{
	struct http_parser *p = lua_touserdata(T, 1);   /* http.lua's own: no check */
	size_t len, more;
	const char *buf = luaL_checklstring(T, 2, &len);
	const char *rest = luaL_checklstring(T, 3, &more);
	char joined[2048];
	struct http_head h;
	int n;

	lua_settop(T, 4);
	if (len + more <= sizeof joined) {
		memcpy(joined, buf, len);
		memcpy(joined + len, rest, more);
		buf = joined;
		len += more;
	} else {
		lua_pushvalue(T, 2);
		lua_pushvalue(T, 3);
		lua_concat(T, 2);
		lua_replace(T, 2);
		lua_pushliteral(T, "");
		lua_replace(T, 3);                                  /* lead, data: the head, '' */
		buf = lua_tolstring(T, 2, &len);
	}
	h.fields = p->fields;
	n = http_parse_request(buf, len, &h, &p->lim);
	if (n < 0)
		return http_fail(T, n);
	if ((size_t)n != len) {
		lua_pushboolean(T, 0);
		return 1;
	}
	if (lua_isnil(T, lua_upvalueindex(U_REQUEST))) {   /* values: http.lua makes the tables */
		http_pushreq(T, buf, &h);
		http_pushrest(T, buf, &h);
		return 10;
	}
	lua_createtable(T, 0, 8);                                  /* 5: req */
	http_pushreq(T, buf, &h);                   /* 6-10: method, target, path, query, version */
	for (int k = K_METHOD; k <= K_VERSION; k++) {
		if (!lua_isnil(T, 6 + k - K_METHOD)) {
			KEY(k);
			lua_pushvalue(T, 6 + k - K_METHOD);
			lua_rawset(T, 5);
		}
	}
	lua_settop(T, 5);
	KEY(K_CONN);
	lua_pushvalue(T, 4);
	lua_rawset(T, 5);
	if (h.body == HTTP_BODY_NONE) {
		KEY(K_BODY);
		lua_pushvalue(T, lua_upvalueindex(U_NOBODY));
		lua_rawset(T, 5);
	}
	if (lua_objlen(T, 2) > 0) {          /* the head, for req.headers when it is asked for */
		KEY(K_LEAD);
		lua_pushvalue(T, 2);
		lua_rawset(T, 5);
	}
	KEY(K_DATA);
	lua_pushvalue(T, 3);
	lua_rawset(T, 5);
	lua_pushvalue(T, lua_upvalueindex(U_REQUEST));
	lua_setmetatable(T, 5);
	lua_createtable(T, 0, 4);                                  /* 6: res */
	KEY(K_HEADERS);
	lua_createtable(T, 0, 1);                  /* room for the usual Content-Type */
	lua_pushvalue(T, lua_upvalueindex(U_OUTHEADERS));
	lua_setmetatable(T, -2);
	lua_rawset(T, 6);
	KEY(K_CONN);
	lua_pushvalue(T, 4);
	lua_rawset(T, 6);
	KEY(K_REQ);
	lua_pushvalue(T, 5);
	lua_rawset(T, 6);
	lua_pushvalue(T, lua_upvalueindex(U_RESPONSE));
	lua_setmetatable(T, 6);
	lua_pushvalue(T, 5);
	lua_pushvalue(T, 6);
	http_pushrest(T, buf, &h);
	return 7;
}

/* server(Request, Headers, Response, OutHeaders, empty_body) --> serve (above)
 * server() --> serve giving values */
static int http_server(lua_State *T)
{
	static const char *const keys[] = { "method", "target", "path", "query", "version",
	                                    "_conn", "_body", "headers", "_req", "_lead", "_data",
	                                    "GET", "HEAD", "POST", "1.0", "1.1",
	                                    "none", "length", "chunked" };

	lua_settop(T, U_NOBODY);
	for (int i = 0; i < U_N - U_NOBODY; i++)
		lua_pushstring(T, keys[i]);
	lua_pushcclosure(T, http_serve, U_N);
	return 1;
}

/* A limit from the options table at idx (a number >= 1, below 2^31), or def. */
static uint32_t http_optlimit(lua_State *T, int idx, const char *name, uint32_t def)
{
	lua_Number n;

	lua_getfield(T, idx, name);
	if (lua_isnil(T, -1)) {
		lua_pop(T, 1);
		return def;
	}
	n = luaL_checknumber(T, -1);
	lua_pop(T, 1);
	if (!(n >= 1 && n < 2147483648.0))
		luaL_error(T, "bad limit %s (a number from 1 to 2^31 - 1 expected)", name);
	return (uint32_t)n;
}

/* http.parser{ max_head, max_fields, max_target, max_chunk_line } --> parser */
static int http_parser_new(lua_State *T)
{
	struct http_limits lim;
	struct http_parser *p;

	luaL_checktype(T, 1, LUA_TTABLE);
	lim.max_head = http_optlimit(T, 1, "max_head", http_limits_default.max_head);
	lim.max_fields = http_optlimit(T, 1, "max_fields", http_limits_default.max_fields);
	lim.max_target = http_optlimit(T, 1, "max_target", http_limits_default.max_target);
	lim.max_chunk_line = http_optlimit(T, 1, "max_chunk_line",
	                                   http_limits_default.max_chunk_line);
	if (lim.max_fields > 1 << 20)
		luaL_error(T, "bad limit max_fields (at most 2^20)");
	p = lua_newuserdata(T, sizeof *p + lim.max_fields * sizeof p->fields[0]);
	p->lim = lim;
	luaL_getmetatable(T, HTTP_PARSER_MT);
	lua_setmetatable(T, -2);
	return 1;
}

/* ---- chunked bodies ---- */

/* http.chunked(parser) --> decoder, with the parser's limits */
static int http_chunked_new(lua_State *T)
{
	struct http_parser *p = luaL_checkudata(T, 1, HTTP_PARSER_MT);
	struct http_chunked *st = lua_newuserdata(T, sizeof *st);

	http_chunked_init(st, &p->lim);
	luaL_getmetatable(T, HTTP_CHUNKED_MT);
	lua_setmetatable(T, -2);
	return 1;
}

/* decoder:decode(bytes) --> data, done | nil, status, reason
 * done: the body ended; then bytes must have ended with it. */
static int http_chunked_feed(lua_State *T)
{
	struct http_chunked *st = luaL_checkudata(T, 1, HTTP_CHUNKED_MT);
	size_t len, consumed, decoded;
	const char *in = luaL_checklstring(T, 2, &len);
	char *buf = lua_newuserdata(T, len ? len : 1);   /* decoded in place: a copy */
	int r;

	memcpy(buf, in, len);
	r = http_chunked_decode(st, buf, len, &consumed, &decoded);
	if (r < 0)
		return http_fail(T, r);
	if (r == 1 && consumed != len)
		return http_fail(T, HTTP_E_CHUNK_DATA);   /* bytes past the body's end */
	lua_pushlstring(T, buf, decoded);
	lua_pushboolean(T, r == 1);
	return 2;
}

/* decoder:want() --> the data bytes left in the current chunk: after a whole size line,
 * read that many before the next line (0: a line comes next). */
static int http_chunked_want(lua_State *T)
{
	struct http_chunked *st = luaL_checkudata(T, 1, HTTP_CHUNKED_MT);

	lua_pushnumber(T, (lua_Number)st->left);
	return 1;
}

/* setlower(t, k, v): t[k] = v, raw, with a string k in lower case (a response's
 * fields: OutHeaders' __newindex). */
static int http_setlower(lua_State *T)
{
	size_t len;
	const char *k;

	lua_settop(T, 3);
	if (lua_type(T, 2) == LUA_TSTRING) {
		k = lua_tolstring(T, 2, &len);
		for (size_t i = 0; i < len; i++) {
			if (k[i] >= 'A' && k[i] <= 'Z') {
				luaL_Buffer b;

				luaL_buffinit(T, &b);
				for (i = 0; i < len; i++)
					luaL_addchar(&b, (char)(k[i] >= 'A' && k[i] <= 'Z' ?
					                        k[i] + 32 : k[i]));
				luaL_pushresult(&b);
				lua_replace(T, 2);
				break;
			}
		}
	}
	lua_rawset(T, 1);
	return 0;
}

/* ---- answers ---- */

/* tchar of RFC 9110 5.6.2: the octets of a field name. */
static int http_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Whether s (len bytes) says "close" in any case (a Connection option). */
static int http_says_close(const char *s, size_t len)
{
	for (size_t i = 0; i + 5 <= len; i++)
		if (!strncasecmp(s + i, "close", 5))
			return 1;
	return 0;
}

/* res:send's body up to this many bytes goes in the string of its head (one string, one
 * write), and answers held back for a pipeline are written past it (http.lua). */
#define HTTP_INLINE 16384

/* An answer's head being made: in a C array, or in a userdata at stack index slot once it
 * outgrows that. */
struct http_out {
	char *p;
	size_t len, cap;
	int slot;
};

/* [-0, +0, m] Makes room for len more bytes in o. */
static void http_grow(lua_State *T, struct http_out *o, size_t len)
{
	size_t cap = o->cap * 2 > o->len + len ? o->cap * 2 : o->len + len;
	char *p = lua_newuserdata(T, cap);

	memcpy(p, o->p, o->len);
	lua_replace(T, o->slot);          /* the old one becomes garbage */
	o->p = p;
	o->cap = cap;
}

/* [-0, +0, m] Appends len bytes at s to o. */
static inline void http_put(lua_State *T, struct http_out *o, const char *s, size_t len)
{
	if (o->cap - o->len < len)
		http_grow(T, o, len);
	memcpy(o->p + o->len, s, len);
	o->len += len;
}

/* [-0, +0, m] Appends n in decimal to o (snprintf costs a thousand instructions). */
static void http_putnum(lua_State *T, struct http_out *o, uint64_t n)
{
	char d[24], *p = d + sizeof d;

	do
		*--p = (char)('0' + n % 10);
	while ((n /= 10) > 0);
	http_put(T, o, p, (size_t)(d + sizeof d - p));
}

/* [-1, +0, m] Adds "name: value\r\n" for the value at the top of T (popped: a string or a
 * number, anything else through tostring) to o; returns 0, or -1 for a value that would
 * break the head. */
static int http_addfield(lua_State *T, struct http_out *o, const char *name, size_t nlen)
{
	size_t len;
	const char *v;

	if (lua_type(T, -1) != LUA_TSTRING && lua_type(T, -1) != LUA_TNUMBER) {
		lua_getglobal(T, "tostring");
		lua_insert(T, -2);
		lua_call(T, 1, 1);
	}
	v = lua_tolstring(T, -1, &len);
	for (size_t i = 0; v && i < len; i++) {
		unsigned char c = (unsigned char)v[i];
		if ((c < 32 && c != '\t') || c == 127)
			v = NULL;
	}
	if (v) {
		http_put(T, o, name, nlen);
		http_put(T, o, ": ", 2);
		http_put(T, o, v, len);
		http_put(T, o, "\r\n", 2);
	}
	lua_pop(T, 1);
	return v ? 0 : -1;
}

/* The Date of answers, made again when the second changes: the loop's own (an upvalue of
 * answer, as every loop has its Lua state). */
struct http_clock {
	time_t t;
	char s[48];                               /* "Sun, 06 Nov 1994 08:49:37 GMT" */
};

/* What res:send's last answer (answer's upvalue table [1]) was made of, for answer to
 * give it again without making it when its arguments are the same. Lua interns every
 * string, so a string's bytes are the same as long as its pointer is while it lives: the
 * table keeps them ([2] onwards). valid is 0 while [1] is not res:send's. */
#define HTTP_MEMO_FIELDS 8
struct http_memo {
	int valid, status, head_only, close, nfields;
	time_t t;                                 /* the Date's second */
	const char *reason, *server, *conn, *body;
	const char *field[2 * HTTP_MEMO_FIELDS];  /* h's names and values, in lua_next's order */
};

struct http_answers {
	struct http_clock clock;
	struct http_memo memo;
};

static const char *http_date(struct http_clock *c)
{
	static const char days[] = "SunMonTueWedThuFriSat";
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	time_t now = time(NULL);
	struct tm tm;

	if (now != c->t && gmtime_r(&now, &tm)) {
		c->t = now;
		memcpy(c->s, days + 3 * tm.tm_wday, 3);
		memcpy(c->s + 3, ", ", 2);
		c->s[5] = (char)('0' + tm.tm_mday / 10);
		c->s[6] = (char)('0' + tm.tm_mday % 10);
		c->s[7] = ' ';
		memcpy(c->s + 8, months + 3 * tm.tm_mon, 3);
		snprintf(c->s + 11, sizeof c->s - 11, " %04d %02d:%02d:%02d GMT",
		         tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	}
	return c->s;
}

/* The memo's strings: argument i (a string or nil) kept in answer's table at slot; its
 * bytes, or NULL. */
static const char *http_memo_arg(lua_State *T, int i, int slot)
{
	lua_pushvalue(T, i);
	lua_rawseti(T, lua_upvalueindex(2), slot);
	return lua_tostring(T, i);
}

/* [-0, +0, m] res:send's answer just made (at the top of T, and in answer's table [1]) is
 * what its arguments make in this second: kept for http_memo_hit, unless h holds more than
 * HTTP_MEMO_FIELDS fields or a value that is not a string. */
static void http_memo_keep(lua_State *T, struct http_answers *a, int status, int head_only,
                           int close)
{
	struct http_memo *m = &a->memo;
	int n = 0;

	m->valid = 0;
	for (lua_pushnil(T); lua_next(T, 1); lua_pop(T, 1)) {
		if (n == HTTP_MEMO_FIELDS || lua_type(T, -2) != LUA_TSTRING ||
		    lua_type(T, -1) != LUA_TSTRING) {
			lua_pop(T, 2);
			return;
		}
		m->field[2 * n] = lua_tostring(T, -2);
		m->field[2 * n + 1] = lua_tostring(T, -1);
		lua_pushvalue(T, -2);
		lua_rawseti(T, lua_upvalueindex(2), 6 + 2 * n);
		lua_pushvalue(T, -1);
		lua_rawseti(T, lua_upvalueindex(2), 7 + 2 * n);
		n++;
	}
	m->reason = http_memo_arg(T, 3, 2);
	m->server = http_memo_arg(T, 4, 3);
	m->conn = http_memo_arg(T, 6, 4);
	m->body = http_memo_arg(T, 7, 5);
	m->status = status;
	m->head_only = head_only;
	m->close = close;
	m->nfields = n;
	http_date(&a->clock);               /* not made for an answer with a Date of its own */
	m->t = a->clock.t;
	m->valid = 1;
}

/* [-0, +0 or +2, -] Pushes res:send's last answer and whether it says close when these
 * arguments made it in this second (returns 1), or nothing (returns 0). */
static int http_memo_hit(lua_State *T, struct http_answers *a, int status, int head_only,
                         const char *reason, const char *server, const char *conn)
{
	struct http_memo *m = &a->memo;
	int n = 0;

	if (!m->valid || m->status != status || m->reason != reason || m->server != server ||
	    m->conn != conn || m->body != lua_tostring(T, 7) || m->head_only != head_only)
		return 0;
	http_date(&a->clock);
	if (m->t != a->clock.t)
		return 0;
	for (lua_pushnil(T); lua_next(T, 1); lua_pop(T, 1)) {
		if (n == m->nfields || lua_type(T, -2) != LUA_TSTRING || lua_type(T, -1) != LUA_TSTRING ||
		    lua_tostring(T, -2) != m->field[2 * n] || lua_tostring(T, -1) != m->field[2 * n + 1]) {
			lua_pop(T, 2);
			return 0;
		}
		n++;
	}
	if (n != m->nfields)
		return 0;
	lua_rawgeti(T, lua_upvalueindex(2), 1);
	lua_pushboolean(T, m->close);
	return 1;
}

/* answer(h, status, reason, server, framing, connection [, body])
 *   --> head .. body, h asked to close | nil, message
 * answer(h, status, reason, server, true, connection, body, head_only)
 *   --> head [.. body], h asked to close [, body] | nil, message
 * The head of an answer: the status line; Server and Date (made once a second) unless h
 * has them (false leaves one out); h's fields but the framing ones (a value may be a
 * list: one line each; false leaves the field out); Content-Length (framing a number) or
 * Transfer-Encoding: chunked (framing 'chunked'); Connection: close when connection is
 * 'close' or h's Connection says close, else Connection: connection if given. A name
 * or value that would break the head is refused: header injection is a bug to fix.
 * framing true is res:send's whole answer: body a string, a number or nil (none) gives
 * Content-Length, but for a status without a body (1xx, 204, 304) and for head_only
 * (HEAD) no body goes; up to HTTP_INLINE bytes of it go in the head's string, a longer
 * one is the third result, for a write of its own. Its checks are here, where Lua's type
 * call would cost more than the rest of them.
 * The last answer made is kept: a handler's answers of one second are often the same
 * bytes, given again without the hashing and the lookup of a new string.
 * Upvalues: the loop's clock, and a table holding the last answer. */
static int http_answer(lua_State *T)
{
	int status = (int)luaL_checkinteger(T, 2);
	size_t rlen, slen, clen = 0, nlen, blen = 0, last_len;
	const char *reason = luaL_checklstring(T, 3, &rlen);
	const char *server = luaL_checklstring(T, 4, &slen);
	const char *conn = luaL_optlstring(T, 6, NULL, &clen);
	const char *body = NULL, *k = NULL, *last;
	int has_server = 0, has_date = 0, close = 0, whole = lua_type(T, 5) == LUA_TBOOLEAN;
	int big = 0, head_only = 0, has_length = 0;
	uint64_t length = 0;                /* Content-Length, when has_length */
	struct http_answers *a = lua_touserdata(T, lua_upvalueindex(1));
	char small[1024], fsmall[512];
	struct http_out o = { small, 0, sizeof small, 10 };    /* the head */
	struct http_out f = { fsmall, 0, sizeof fsmall, 11 };  /* h's fields, in one pass */

	luaL_checktype(T, 1, LUA_TTABLE);
	if (whole) {
		int t = lua_type(T, 7);

		if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TNIL) {
			lua_pushnil(T);
			lua_pushfstring(T, "bad body (string expected, got %s)", lua_typename(T, t));
			return 2;
		}
		body = lua_tolstring(T, 7, &blen);   /* a number becomes its text, in place */
		has_length = status >= 200 && status != 204 && status != 304;
		if (!body || !has_length) {
			body = "";
			blen = 0;
		}
		length = blen;
		big = blen > HTTP_INLINE;
		head_only = lua_toboolean(T, 8);
		if (http_memo_hit(T, a, status, head_only, reason, server, conn))
			return 2;
		if (big || head_only)
			blen = 0;                   /* written apart, or not at all (HEAD) */
	} else {
		body = luaL_optlstring(T, 7, NULL, &blen);
		if ((has_length = lua_type(T, 5) == LUA_TNUMBER))
			length = (uint64_t)lua_tonumber(T, 5);
	}
	lua_settop(T, 11);                  /* 10, 11: the head's and the fields' userdata */
	for (lua_pushnil(T); lua_next(T, 1); lua_pop(T, 1)) {
		int bad;

		k = lua_type(T, -2) == LUA_TSTRING ? lua_tolstring(T, -2, &nlen) : NULL;
		bad = !k || nlen == 0;
		for (size_t i = 0; !bad && i < nlen; i++)
			bad = !http_tchar((unsigned char)k[i]);
		if (bad) {
			if (lua_type(T, -1) == LUA_TBOOLEAN && !lua_toboolean(T, -1))
				continue;
			lua_getglobal(T, "tostring");
			lua_pushvalue(T, -3);
			lua_call(T, 1, 1);
			lua_pushfstring(T, "invalid header name \"%s\"", lua_tostring(T, -1));
			goto fail;
		}
		if (nlen == 6 && !memcmp(k, "server", 6))
			has_server = 1;
		else if (nlen == 4 && !memcmp(k, "date", 4))
			has_date = 1;
		if (lua_type(T, -1) == LUA_TBOOLEAN && !lua_toboolean(T, -1))
			continue;
		if (nlen == 10 && !memcmp(k, "connection", 10)) {
			if (lua_type(T, -1) == LUA_TSTRING) {
				size_t vlen;
				const char *v = lua_tolstring(T, -1, &vlen);
				close = close || http_says_close(v, vlen);
			}
			continue;
		}
		if ((nlen == 14 && !memcmp(k, "content-length", 14)) ||
		    (nlen == 17 && !memcmp(k, "transfer-encoding", 17)))
			continue;
		if (lua_type(T, -1) == LUA_TTABLE) {
			int n = (int)lua_objlen(T, -1);
			for (int i = 1; i <= n; i++) {
				lua_rawgeti(T, -1, i);
				if (http_addfield(T, &f, k, nlen) < 0)
					goto badvalue;
			}
		} else {
			lua_pushvalue(T, -1);
			if (http_addfield(T, &f, k, nlen) < 0)
				goto badvalue;
		}
	}
	http_put(T, &o, "HTTP/1.1 ", 9);
	http_putnum(T, &o, (uint64_t)status);
	http_put(T, &o, " ", 1);
	http_put(T, &o, reason, rlen);
	http_put(T, &o, "\r\n", 2);
	if (!has_server) {
		http_put(T, &o, "Server: ", 8);
		http_put(T, &o, server, slen);
		http_put(T, &o, "\r\n", 2);
	}
	if (!has_date) {
		http_put(T, &o, "Date: ", 6);
		http_put(T, &o, http_date(&a->clock), 29);
		http_put(T, &o, "\r\n", 2);
	}
	http_put(T, &o, f.p, f.len);
	if (has_length) {
		http_put(T, &o, "Content-Length: ", 16);
		http_putnum(T, &o, length);
		http_put(T, &o, "\r\n", 2);
	} else if (lua_type(T, 5) == LUA_TSTRING) {
		http_put(T, &o, "Transfer-Encoding: chunked\r\n", 28);
	}
	if (close || (conn && clen == 5 && !memcmp(conn, "close", 5))) {
		close = 1;
		http_put(T, &o, "Connection: close\r\n", 19);
	} else if (conn) {
		http_put(T, &o, "Connection: ", 12);
		http_put(T, &o, conn, clen);
		http_put(T, &o, "\r\n", 2);
	}
	http_put(T, &o, "\r\n", 2);
	if (body)
		http_put(T, &o, body, blen);
	lua_rawgeti(T, lua_upvalueindex(2), 1);
	last = lua_tolstring(T, -1, &last_len);
	if (!last || last_len != o.len || memcmp(last, o.p, o.len)) {
		lua_pop(T, 1);
		lua_pushlstring(T, o.p, o.len);
		if (o.len <= sizeof small) {    /* a big one would stay in memory for nothing */
			lua_pushvalue(T, -1);
			lua_rawseti(T, lua_upvalueindex(2), 1);
			a->memo.valid = 0;
		}
	}
	if (whole && !big && o.len <= sizeof small)
		http_memo_keep(T, a, status, head_only, close);
	lua_pushboolean(T, close);
	if (big && !head_only) {
		lua_pushvalue(T, 7);
		return 3;
	}
	return 2;
badvalue:
	lua_pushfstring(T, "invalid value for header %s", k);
fail:
	lua_pushnil(T);
	lua_insert(T, -2);
	return 2;
}

/* A metatable whose __index is the table of methods (leaves that table on the stack). */
static void http_class(lua_State *L, const char *name, const luaL_Reg *methods)
{
	luaL_newmetatable(L, name);
	lua_newtable(L);
	luaL_register(L, NULL, methods);
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "__index");
	lua_remove(L, -2);
}

int luaopen_lem_http(lua_State *L)
{
	static const luaL_Reg none[] = { { NULL, NULL } };
	static const luaL_Reg chunked_methods[] = {
		{ "decode", http_chunked_feed }, { "want", http_chunked_want }, { NULL, NULL }
	};
	static const luaL_Reg c_half[] = {
		{ "parser", http_parser_new }, { "chunked", http_chunked_new },
		{ "server", http_server }, { "setlower", http_setlower }, { NULL, NULL }
	};

	http_class(L, HTTP_PARSER_MT, none);
	for (int v = 0; v < 3; v++) {   /* request, response, response_head */
		lua_pushboolean(L, v > 0);
		lua_pushboolean(L, v < 2);
		lua_pushcclosure(L, http_parse, 2);
		lua_setfield(L, -2, v == 0 ? "request" : v == 1 ? "response" : "response_head");
	}
	lua_pop(L, 1);
	http_class(L, HTTP_CHUNKED_MT, chunked_methods);
	lua_pop(L, 1);
	if (luaL_loadbuffer(L, http_lua, sizeof http_lua, "=[lem.http]") != 0)
		return lua_error(L);
	lua_newtable(L);
	luaL_register(L, NULL, c_half);
#ifdef LEM_LUAJIT
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, "luajit");
#endif
	lua_pushinteger(L, HTTP_INLINE);
	lua_setfield(L, -2, "inline");
	memset(lua_newuserdata(L, sizeof(struct http_answers)), 0, sizeof(struct http_answers));
	lua_createtable(L, 1, 0);
	lua_pushcclosure(L, http_answer, 2);
	lua_setfield(L, -2, "answer");
	lua_call(L, 1, 1);                /* http.lua returns the module */
	return 1;
}
