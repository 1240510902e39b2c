/* anchor.c: keeping Lua values alive while only a watcher refers to them. */
#include <stdlib.h>
#include <stdio.h>
#include "loop.h"

/* Slots are indices into LEM_ANCHORS. Freed ones are reused first, so the table stays an
 * array as long as the peak number of anchored values. Setting a slot must allocate
 * nothing: it is done on the loop's own state H, which no Lua call protects, and a memory
 * error there aborts the process (the panic function). So the table's array always has
 * free_anchors_cap slots, every slot ever used among them: Lua then stores each at its
 * place in the array, and never rehashes the table. At each doubling the table is made
 * anew, and the list of free slots grown, on T, where a protected call or the
 * coroutine gets a memory error: a server with a million timers under a memory limit
 * grows a table of 32 MB there. */
static void grow(lem_loop *loop, lua_State *T)
{
	lua_State *H = loop->H;
	int cap = loop->free_anchors_cap ? 2 * loop->free_anchors_cap : 64;
	int *p;

	lua_createtable(T, cap, 0);
	for (int i = 1; i <= loop->anchors_len; i++) {
		lua_rawgeti(H, LEM_ANCHORS, i);
		lua_xmove(H, T, 1);
		lua_rawseti(T, -2, i);
	}
	p = realloc(loop->free_anchors, cap * sizeof *p);   /* holds no more than cap */
	if (!p)
		luaL_error(T, "not enough memory");   /* nothing changed: the new table is garbage */
	lua_xmove(T, H, 1);
	lua_replace(H, LEM_ANCHORS);
	loop->free_anchors = p;
	loop->free_anchors_cap = cap;
}

int lem_anchor(lem_loop *loop, lua_State *T)
{
	lua_State *H = loop->H;
	int slot;

	if (loop->closing) {
		lua_pop(T, 1);
		return 0;
	}
	if (loop->nfree_anchors > 0) {
		slot = loop->free_anchors[--loop->nfree_anchors];
	} else {
		if (loop->anchors_len == loop->free_anchors_cap)
			grow(loop, T);
		slot = ++loop->anchors_len;
	}
	lua_xmove(T, H, 1);
	lua_rawseti(H, LEM_ANCHORS, slot);
	return slot;
}

void lem_anchor_set(lem_loop *loop, lua_State *T, int slot)
{
	if (slot <= 0 || loop->closing) {
		lua_pop(T, 1);
		return;
	}
	lua_xmove(T, loop->H, 1);
	lua_rawseti(loop->H, LEM_ANCHORS, slot);
}

void lem_anchor_push(lem_loop *loop, lua_State *T, int slot)
{
	lua_rawgeti(loop->H, LEM_ANCHORS, slot);
	lua_xmove(loop->H, T, 1);
}

void lem_unanchor(lem_loop *loop, int slot)
{
	if (slot <= 0 || loop->closing)
		return;
	lua_pushnil(loop->H);
	lua_rawseti(loop->H, LEM_ANCHORS, slot);
	loop->free_anchors[loop->nfree_anchors++] = slot;
}

/* After lua_close and before the ev_loop goes. */
void lem_anchor_free(lem_loop *loop)
{
	free(loop->free_anchors);
	loop->free_anchors = NULL;
}
