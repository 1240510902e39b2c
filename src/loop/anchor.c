/* anchor.c: keeping Lua values alive while only a watcher refers to them. */
#include <stdlib.h>
#include <stdio.h>
#include "loop.h"

/* Slots are indices into LEM_ANCHORS. Freed ones are reused first, so the table stays an
 * array as long as the peak number of anchored values. */
int lem_anchor(lem_loop *loop, lua_State *T)
{
	lua_State *L = loop->L;
	int slot;

	if (loop->closing) {
		lua_pop(T, 1);
		return 0;
	}
	if (loop->nfree_anchors > 0) {
		slot = loop->free_anchors[--loop->nfree_anchors];
	} else {
		if (loop->anchors_len == loop->free_anchors_cap) {
			/* free_anchors never holds more than anchors_len slots */
			int cap = loop->free_anchors_cap ? 2 * loop->free_anchors_cap : 64;
			int *p = realloc(loop->free_anchors, cap * sizeof *p);
			if (!p)
				lem_fatal("out of memory (anchors)");
			loop->free_anchors = p;
			loop->free_anchors_cap = cap;
		}
		slot = ++loop->anchors_len;
	}
	lua_xmove(T, L, 1);
	lua_rawseti(L, LEM_ANCHORS, slot);
	return slot;
}

void lem_anchor_push(lem_loop *loop, lua_State *T, int slot)
{
	lua_rawgeti(loop->L, LEM_ANCHORS, slot);
	if (T != loop->L)
		lua_xmove(loop->L, T, 1);
}

void lem_unanchor(lem_loop *loop, int slot)
{
	if (slot <= 0 || loop->closing)
		return;
	lua_pushnil(loop->L);
	lua_rawseti(loop->L, LEM_ANCHORS, slot);
	loop->free_anchors[loop->nfree_anchors++] = slot;
}

struct lem_wait *lem_wait_get(lem_loop *loop)
{
	struct lem_wait *w = loop->free_waits;

	if (w) {
		loop->free_waits = w->next_free;
		return w;
	}
	w = malloc(sizeof *w);
	if (!w)
		lem_fatal("out of memory (timers)");
	w->loop = loop;
	w->next_all = loop->all_waits;
	loop->all_waits = w;
	return w;
}

void lem_wait_put(lem_loop *loop, struct lem_wait *w)
{
	w->next_free = loop->free_waits;
	loop->free_waits = w;
}

/* After lua_close and before the ev_loop goes. */
void lem_anchor_free(lem_loop *loop)
{
	struct lem_wait *w, *next;

	for (w = loop->all_waits; w; w = next) {
		next = w->next_all;
		free(w);
	}
	loop->all_waits = loop->free_waits = NULL;
	free(loop->free_anchors);
	loop->free_anchors = NULL;
}

/* ---- holds: the public API's anchors, keyed by coroutine ---- */

static void hold_set(lem_loop *loop, lua_State *T, int on)
{
	lua_State *L = loop->L;

	if (loop->closing)
		return;
	lua_pushthread(T);
	lua_xmove(T, L, 1);
	if (on)
		lua_pushboolean(L, 1);
	else
		lua_pushnil(L);
	lua_rawset(L, LEM_HOLDS);
}

void lem_hold(lem_loop *loop, lua_State *T)
{
	hold_set(loop, T, 1);
}

void lem_forget(lem_loop *loop, lua_State *T)
{
	hold_set(loop, T, 0);
}

lua_State *lem_newthread(lem_loop *loop)
{
	lua_State *T = lem_sched_thread(loop);

	lem_hold(loop, T);
	lua_pop(loop->L, 1);
	return T;
}
