/* message.c: encoding Lua values into one buffer, to cross from one loop to another.
 *
 * A tag byte per value: nil, false, true, number (the 8 bytes of the double, so nan, inf
 * and -0 arrive as they left), string (length, then the bytes), table (key, value, ...,
 * then an end tag). Lengths are little-endian base-128. Metatables do not cross. */
#include <stdlib.h>
#include <string.h>
#include "loops.h"

enum { T_NIL, T_FALSE, T_TRUE, T_NUMBER, T_STRING, T_TABLE, T_END };

/* Nesting of tables: decoded JSON is sent as it is, and JSON decoders allow 1000 levels.
 * Neither side recurses in C: each keeps its own stack of the tables it is inside. On the
 * Lua stack a level takes two slots (a table and a key, or a key and a value), so 1000
 * levels and MAX_VALUES values stay under the 8000 slots PUC Lua lets a C function use. */
#define MAX_DEPTH 1000
#define MAX_VALUES 4000 /* top-level values */

/* A table being encoded: its pair on top of the Lua stack is at a stage. */
enum { S_NEXT, S_KEY, S_VALUE };   /* take the next pair; the key started; the value */

struct frame {
	const void *t;                 /* the table, to find cycles */
	int idx;                       /* its stack index */
	int stage;
};

struct enc {
	struct msg *m;
	struct frame f[MAX_DEPTH];     /* the tables being encoded, outermost first */
	int depth;
	const char *err;               /* why encoding failed */
	const char *type;              /* ... the type that cannot be sent, or NULL */
};

static int msg_reserve(struct enc *e, size_t n)
{
	struct msg *m = e->m;

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

static int msg_put(struct enc *e, const void *p, size_t n)
{
	if (msg_reserve(e, n))
		return -1;
	memcpy(e->m->data + e->m->len, p, n);
	e->m->len += n;
	return 0;
}

static int msg_put_tag(struct enc *e, unsigned char tag)
{
	return msg_put(e, &tag, 1);
}

static int msg_put_len(struct enc *e, size_t n)
{
	unsigned char b[10];
	int i = 0;

	do {
		b[i++] = (unsigned char)((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
		n >>= 7;
	} while (n);
	return msg_put(e, b, i);
}

/* Encodes the scalar at idx (absolute) of L, or opens the table there: a frame, and its
 * first key (nil) pushed. Returns 0, or -1 on failure. */
static int msg_encode_one(struct enc *e, lua_State *L, int idx)
{
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return msg_put_tag(e, T_NIL);
	case LUA_TBOOLEAN:
		return msg_put_tag(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
	case LUA_TNUMBER: {
		lua_Number n = lua_tonumber(L, idx);
		return msg_put_tag(e, T_NUMBER) || msg_put(e, &n, sizeof n);
	}
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		return msg_put_tag(e, T_STRING) || msg_put_len(e, len) || msg_put(e, s, len);
	}
	case LUA_TTABLE: {
		const void *t = lua_topointer(L, idx);
		struct frame *f;
		int i;

		/* O(depth) per table: only a deep path costs, and it is at most MAX_DEPTH */
		for (i = 0; i < e->depth; i++)
			if (e->f[i].t == t) {
				e->err = "cannot send a table that contains itself";
				return -1;
			}
		if (e->depth == MAX_DEPTH || !lua_checkstack(L, 3)) {
			e->err = "cannot send tables nested that deep";
			return -1;
		}
		if (msg_put_tag(e, T_TABLE))
			return -1;
		f = &e->f[e->depth++];
		f->t = t;
		f->idx = idx;
		f->stage = S_NEXT;
		lua_pushnil(L);
		return 0;
	}
	default:
		e->type = luaL_typename(L, idx);
		return -1;
	}
}

/* Encodes the value at idx (absolute) of L. Inside a table the Lua stack holds its
 * current key (stage S_NEXT), or its key and value; a key or value that is a table opens
 * a frame above them. On failure the caller resets the stack. */
static int msg_encode_value(struct enc *e, lua_State *L, int idx)
{
	if (msg_encode_one(e, L, idx))
		return -1;
	while (e->depth > 0) {
		struct frame *f = &e->f[e->depth - 1];
		int top;

		switch (f->stage) {
		case S_NEXT:
			if (!lua_next(L, f->idx)) {   /* the table is done: back to its parent */
				e->depth--;
				if (msg_put_tag(e, T_END))
					return -1;
				continue;
			}
			f->stage = S_KEY;
			top = lua_gettop(L);
			if (msg_encode_one(e, L, top - 1))
				return -1;
			break;
		case S_KEY:
			f->stage = S_VALUE;
			if (msg_encode_one(e, L, lua_gettop(L)))
				return -1;
			break;
		default:
			lua_pop(L, 1);   /* the value; the key stays for lua_next */
			f->stage = S_NEXT;
			break;
		}
	}
	return 0;
}

struct msg *msg_encode(lua_State *L, int first, int last, int *badarg)
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
	e.m->link.next = NULL;
	e.m->len = 0;
	e.m->cap = 64;
	e.m->nvalues = last - first + 1;
	e.depth = 0;
	e.err = e.type = NULL;
	for (i = first; i <= last; i++) {
		if (msg_encode_value(&e, L, i)) {
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

struct msg *msg_copy(const struct msg *m)
{
	struct msg *c = malloc(sizeof *c + m->len);

	if (c) {
		memcpy(c, m, sizeof *c + m->len);
		c->cap = m->len;
		c->link.next = NULL;
	}
	return c;
}

static size_t msg_get_len(const unsigned char **p)
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

/* Pushes the values of m on L, the stack of tables being filled kept in C and on L's
 * stack, not in C recursion. Raises on failure (out of memory, or a message nested deeper
 * than any encoder makes): call it protected. */
void msg_decode(lua_State *L, const struct msg *m)
{
	const unsigned char *p = m->data;
	int t[MAX_DEPTH];   /* stack indices of the tables being filled */
	int depth = 0, done = 0;

	luaL_checkstack(L, m->nvalues + 1, "decoding a message");
	while (done < m->nvalues) {
		switch (*p++) {
		case T_NIL: lua_pushnil(L); break;
		case T_FALSE: lua_pushboolean(L, 0); break;
		case T_TRUE: lua_pushboolean(L, 1); break;
		case T_NUMBER: {
			lua_Number n;
			memcpy(&n, p, sizeof n);
			p += sizeof n;
			lua_pushnumber(L, n);
			break;
		}
		case T_STRING: {
			size_t len = msg_get_len(&p);
			lua_pushlstring(L, (const char *)p, len);
			p += len;
			break;
		}
		case T_TABLE:
			if (depth == MAX_DEPTH)
				luaL_error(L, "message nested too deep");
			luaL_checkstack(L, 3, "decoding a message");   /* it, a key, a value */
			lua_newtable(L);
			t[depth++] = lua_gettop(L);
			continue;      /* complete at its end tag */
		default:           /* T_END */
			depth--;
			break;
		}
		/* A complete value on top: a top-level value, a key, or the value of a pair. */
		if (depth == 0)
			done++;
		else if (lua_gettop(L) == t[depth - 1] + 2)
			lua_rawset(L, t[depth - 1]);
	}
}
