/* http.c: lem.http's C half: the parser's bindings, handed to the Lua half (http.lua,
 * built into the binary as http_lua.h), which serves connections and makes requests. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

/* [-0, +4, m] The fields shared by requests and responses: body kind, content length,
 * keep-alive, expect-continue. */
static void http_pushframing(lua_State *T, const struct http_head *h)
{
	lua_pushstring(T, http_bodies[h->body]);
	lua_pushnumber(T, (lua_Number)h->content_length);
	lua_pushboolean(T, (h->flags & HTTP_KEEP_ALIVE) != 0);
	lua_pushboolean(T, (h->flags & HTTP_EXPECT_CONTINUE) != 0);
}

/* parser:request(head [, more]) --> method, target, minor, body, length, keep_alive,
 *                          expect, headers, multi, head_len | false (incomplete)
 *                          | nil, status, reason
 * more: the rest of the head, parsed as if joined to head (a server reads a head's first
 * byte apart): short heads are joined on the C stack, without a Lua string.
 * body: 'none', 'length' or 'chunked'. A length above 2^53 loses precision: callers bound
 * it far below.
 * parser:response(head) --> status, reason, minor, ...the same
 * body: 'none', 'length', 'chunked' or 'close'. Upvalue 1: true for responses. */
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
	http_pushfields(T, buf, &h);
	lua_pushinteger(T, n);
	return 10;
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
		{ "parser", http_parser_new }, { "chunked", http_chunked_new }, { NULL, NULL }
	};

	http_class(L, HTTP_PARSER_MT, none);
	for (int response = 0; response <= 1; response++) {
		lua_pushboolean(L, response);
		lua_pushcclosure(L, http_parse, 1);
		lua_setfield(L, -2, response ? "response" : "request");
	}
	lua_pop(L, 1);
	http_class(L, HTTP_CHUNKED_MT, chunked_methods);
	lua_pop(L, 1);
	if (luaL_loadbuffer(L, http_lua, sizeof http_lua, "=[lem.http]") != 0)
		return lua_error(L);
	lua_newtable(L);
	luaL_register(L, NULL, c_half);
	lua_call(L, 1, 1);                /* http.lua returns the module */
	return 1;
}
