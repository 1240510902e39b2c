/* message.c: encoding Lua values into one buffer, to cross from one loop to another.
 *
 * A tag byte per value: nil, false, true, number (the 8 bytes of the double, so nan, inf
 * and -0 arrive as they left), string (length, then the bytes), table (key, value, ...,
 * then an end tag). Lengths are little-endian base-128. Metatables do not cross. */
#include <stdlib.h>
#include <string.h>
#include "loop.h"
#include "mailbox.h"

enum { T_NIL, T_FALSE, T_TRUE, T_NUMBER, T_STRING, T_TABLE, T_END };

#define MAX_DEPTH 100   /* nesting of tables; also bounds the decoder's stack use */
#define MAX_VALUES 4000 /* top-level values, well under what a C stack may take */

struct enc {
	struct lem_msg *m;
	const void *path[MAX_DEPTH];   /* the tables being encoded, to find cycles */
	int depth;
	const char *err;               /* why encoding failed */
	const char *type;              /* ... the type that cannot be sent, or NULL */
};

static int reserve(struct enc *e, size_t n)
{
	struct lem_msg *m = e->m;

	if (m->len + n <= m->cap)
		return 0;
	size_t cap = m->cap * 2 > m->len + n ? m->cap * 2 : m->len + n;
	m = realloc(m, sizeof *m + cap);
	if (!m) {
		e->err = "not enough memory";
		return -1;
	}
	m->cap = cap;
	e->m = m;
	return 0;
}

static int put(struct enc *e, const void *p, size_t n)
{
	if (reserve(e, n))
		return -1;
	memcpy(e->m->data + e->m->len, p, n);
	e->m->len += n;
	return 0;
}

static int put_tag(struct enc *e, unsigned char tag)
{
	return put(e, &tag, 1);
}

static int put_len(struct enc *e, size_t n)
{
	unsigned char b[10];
	int i = 0;

	do {
		b[i++] = (unsigned char)((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
		n >>= 7;
	} while (n);
	return put(e, b, i);
}

/* Encodes the value at idx (absolute) of L. */
static int encode(struct enc *e, lua_State *L, int idx)
{
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return put_tag(e, T_NIL);
	case LUA_TBOOLEAN:
		return put_tag(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
	case LUA_TNUMBER: {
		lua_Number n = lua_tonumber(L, idx);
		return put_tag(e, T_NUMBER) || put(e, &n, sizeof n);
	}
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		return put_tag(e, T_STRING) || put_len(e, len) || put(e, s, len);
	}
	case LUA_TTABLE: {
		const void *t = lua_topointer(L, idx);
		int i;

		for (i = 0; i < e->depth; i++)
			if (e->path[i] == t) {
				e->err = "cannot send a table that contains itself";
				return -1;
			}
		if (e->depth == MAX_DEPTH || !lua_checkstack(L, 3)) {
			e->err = "cannot send tables nested that deep";
			return -1;
		}
		e->path[e->depth++] = t;
		if (put_tag(e, T_TABLE))
			return -1;
		lua_pushnil(L);
		while (lua_next(L, idx)) {   /* on failure the caller resets the stack */
			int top = lua_gettop(L);
			if (encode(e, L, top - 1) || encode(e, L, top))
				return -1;
			lua_pop(L, 1);
		}
		e->depth--;
		return put_tag(e, T_END);
	}
	default:
		e->type = luaL_typename(L, idx);
		return -1;
	}
}

struct lem_msg *lem_msg_encode(lua_State *L, int first, int last, int *badarg)
{
	struct enc e;
	int i, top = lua_gettop(L);

	if (last - first + 1 > MAX_VALUES) {
		*badarg = first + MAX_VALUES;
		lua_pushfstring(L, "cannot send more than %d values at once", MAX_VALUES);
		return NULL;
	}
	e.m = malloc(sizeof *e.m + 64);
	if (!e.m) {
		*badarg = first;
		lua_pushliteral(L, "not enough memory");
		return NULL;
	}
	e.m->next = NULL;
	e.m->len = 0;
	e.m->cap = 64;
	e.m->nvalues = last - first + 1;
	e.depth = 0;
	e.err = e.type = NULL;
	for (i = first; i <= last; i++) {
		if (encode(&e, L, i)) {
			free(e.m);
			lua_settop(L, top);
			*badarg = i;
			if (e.type)
				lua_pushfstring(L, "cannot send a %s", e.type);
			else
				lua_pushstring(L, e.err);
			return NULL;
		}
	}
	return e.m;
}

struct lem_msg *lem_msg_copy(const struct lem_msg *m)
{
	struct lem_msg *c = malloc(sizeof *c + m->len);

	if (c) {
		memcpy(c, m, sizeof *c + m->len);
		c->cap = m->len;
		c->next = NULL;
	}
	return c;
}

static size_t get_len(const unsigned char **p)
{
	size_t n = 0;
	int shift = 0;
	unsigned char b;

	do {
		b = *(*p)++;
		n |= (size_t)(b & 0x7f) << shift;
		shift += 7;
	} while (b & 0x80);
	return n;
}

/* Pushes one value; returns 0, or 1 at a table's end tag. The encoder bounded the depth,
 * so the stack needs two slots per level. */
static int decode(lua_State *L, const unsigned char **p)
{
	switch (*(*p)++) {
	case T_NIL: lua_pushnil(L); break;
	case T_FALSE: lua_pushboolean(L, 0); break;
	case T_TRUE: lua_pushboolean(L, 1); break;
	case T_NUMBER: {
		lua_Number n;
		memcpy(&n, *p, sizeof n);
		*p += sizeof n;
		lua_pushnumber(L, n);
		break;
	}
	case T_STRING: {
		size_t len = get_len(p);
		lua_pushlstring(L, (const char *)*p, len);
		*p += len;
		break;
	}
	case T_TABLE:
		luaL_checkstack(L, 3, "decoding a message");
		lua_newtable(L);
		while (decode(L, p) == 0) {
			decode(L, p);
			lua_rawset(L, -3);
		}
		break;
	default:
		return 1;
	}
	return 0;
}

void lem_msg_decode(lua_State *L, const struct lem_msg *m)
{
	const unsigned char *p = m->data;
	int i;

	luaL_checkstack(L, m->nvalues + 1, "decoding a message");
	for (i = 0; i < m->nvalues; i++)
		decode(L, &p);
}
