/* anchor.c: keeping Lua values alive while only a watcher refers to them. */
#include <stdlib.h>
#include <stdio.h>
#include "loop.h"

/* Slots are indices into LEM_ANCHORS. Freed ones are reused first, so the table stays an
 * array as long as the peak number of anchored values. A memory error can come from the
 * list of free slots, raised on T where a protected call or the coroutine gets it, or
 * from the table's growth on the loop's own state, which no Lua call protects: that one
 * is the fatal path (lem_fatal, through the panic function). Making the table anew on T
 * at each doubling instead cost a timer 10% more. */
static void grow(lem_loop *loop, lua_State *T)
{
	int cap = loop->free_anchors_cap ? 2 * loop->free_anchors_cap : 64;
	int *p = realloc(loop->free_anchors, cap * sizeof *p);   /* holds no more than cap */

	if (!p)
		luaL_error(T, "not enough memory");
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
