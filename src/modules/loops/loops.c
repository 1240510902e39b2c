/* loops.c: lem.loops: the id and count of loops, and messages between them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "../../loop/loop.h"
#include "../../loop/mailbox.h"

/* A coroutine waiting in receive; in its mailbox's list of receivers. */
struct lem_recv {
	ev_timer timer;            /* the timeout, when there is one */
	struct lem_recv *next, *prev;
	lem_waiter w;
	int anchor;                /* keeps the coroutine alive while a message may come */
	int timed;
};

static void recv_unlink(lem_loop *loop, struct lem_recv *r)
{
	struct lem_mbox *mb = loop->mbox;

	if (r->prev) r->prev->next = r->next; else mb->whead = r->next;
	if (r->next) r->next->prev = r->prev; else mb->wlast = r->prev;
	mb->nwaiting--;
	if (r->timed)
		ev_timer_stop(loop->ev, &r->timer);
	lem_unanchor(loop, r->anchor);
}

/* Pushes the sender's id and the values of m on L, frees m; returns how many. */
static int push_msg(lua_State *L, struct lem_msg *m)
{
	int n = m->nvalues + 1;

	lua_pushinteger(L, m->from);
	lem_msg_decode(L, m);
	free(m);
	return n;
}

void lem_loops_deliver(lem_loop *loop)
{
	struct lem_mbox *mb = loop->mbox;
	struct lem_msg *m;

	while (mb->whead) {
		struct lem_recv *r = mb->whead;

		if (lem_sched_valid(&r->w)) {
			if (!(m = lem_mbox_take(mb)))
				return;
			lem_wake(loop, &r->w, loop->L, push_msg(loop->L, m));
		}
		recv_unlink(loop, r);   /* served, or its suspension failed: none to serve */
		free(r);
	}
}

static void recv_end(lem_loop *loop, struct lem_recv *r, const char *why)
{
	recv_unlink(loop, r);
	lua_pushnil(loop->L);
	lua_pushstring(loop->L, why);
	lem_wake(loop, &r->w, loop->L, 2);
	free(r);
}

void lem_loops_close_waiting(lem_loop *loop)
{
	while (loop->mbox->whead)
		recv_end(loop, loop->mbox->whead, "closed");
}

void lem_loops_drop_waiting(lem_loop *loop)
{
	while (loop->mbox->whead) {
		struct lem_recv *r = loop->mbox->whead;
		recv_unlink(loop, r);
		free(r);
	}
}

static void recv_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct lem_recv *r = (struct lem_recv *)w;

	(void)ev; (void)revents;
	recv_end(lem_current, r, "timeout");
}

/* loops.receive([timeout]) --> from, ... | nil, 'timeout' | nil, 'closed' */
static int loops_receive(lua_State *T)
{
	lem_loop *loop = lem_current;
	struct lem_mbox *mb = loop->mbox;
	lua_Number timeout = 0;
	int timed = !lua_isnoneornil(T, 1);
	struct lem_recv *r;
	struct lem_msg *m;
	lem_waiter w;

	if (timed)
		timeout = luaL_checknumber(T, 1);
	lua_settop(T, 0);
	if (!mb) {                                  /* the loop has finished */
		lua_pushnil(T);
		lua_pushliteral(T, "closed");
		return 2;
	}
	if (mb->nwaiting == 0 && (m = lem_mbox_take(mb)))
		return push_msg(T, m);
	if (timed && timeout <= 0) {
		lua_pushnil(T);
		lua_pushliteral(T, "timeout");
		return 2;
	}
	lem_sched_suspend(T, loop, &w, 0);
	r = malloc(sizeof *r);
	if (!r) {   /* T has yielded already: it cannot get an error any more */
		fprintf(stderr, "lem: out of memory (receive)\n");
		abort();
	}
	r->w = w;
	lua_pushthread(w.co);
	lua_xmove(w.co, T, 1);
	r->anchor = lem_anchor(loop, T);
	r->timed = timed;
	if (timed) {
		ev_timer_init(&r->timer, recv_timeout, timeout, 0);
		ev_timer_start(loop->ev, &r->timer);
	}
	r->next = NULL;
	r->prev = mb->wlast;
	if (mb->wlast) mb->wlast->next = r; else mb->whead = r;
	mb->wlast = r;
	mb->nwaiting++;
	/* A message taken earlier may wait behind receivers that are gone (a message still
	 * in the shared queue has had its ev_async_send). */
	if (mb->lhead)
		ev_async_send(loop->ev, &mb->wake);
	return lem_sched_suspended(T, loop);
}

static int checkid(lua_State *T, int arg, int count)
{
	lua_Number n = luaL_checknumber(T, arg);
	int id = (int)n;

	if ((lua_Number)id != n || id < 1 || id > count)
		luaL_argerror(T, arg, lua_pushfstring(T, "loop id must be a whole number from 1 to %d", count));
	return id;
}

static int send_result(lua_State *T, int err)
{
	if (err == 0) {
		lua_pushboolean(T, 1);
		return 1;
	}
	lua_pushnil(T);
	lua_pushstring(T, err == -EPIPE ? "closed" : "full");
	return 2;
}

/* loops.send(id, ...) --> true | nil, 'closed' | nil, 'full' */
static int loops_send(lua_State *T)
{
	lem_loop *loop = lem_current;
	int to = checkid(T, 1, loop->group->count), bad, err;
	struct lem_msg *m = lem_msg_encode(T, 2, lua_gettop(T), &bad);

	if (!m)
		return luaL_argerror(T, bad, lua_tostring(T, -1));
	m->from = loop->id;
	err = lem_mbox_send(loop->group, to, m);
	if (err)
		free(m);
	return send_result(T, err);
}

/* loops.broadcast(...) --> how many other loops it reached */
static int loops_broadcast(lua_State *T)
{
	lem_loop *loop = lem_current;
	struct lem_group *g = loop->group;
	int bad, i, reached = 0;
	struct lem_msg *m = lem_msg_encode(T, 1, lua_gettop(T), &bad), *c = NULL;

	if (!m)
		return luaL_argerror(T, bad, lua_tostring(T, -1));
	m->from = loop->id;
	for (i = 1; i <= g->count; i++) {
		if (i == loop->id)
			continue;
		if (!c && !(c = lem_msg_copy(m)))
			return luaL_error(T, "not enough memory");
		if (lem_mbox_send(g, i, c) == 0) {
			reached++;
			c = NULL;
		}
	}
	free(c);
	free(m);
	lua_pushinteger(T, reached);
	return 1;
}

int luaopen_lem_loops(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "send", loops_send },
		{ "broadcast", loops_broadcast },
		{ "receive", loops_receive },
		{ NULL, NULL }
	};
	lem_loop *loop = lem_current;

	lua_newtable(L);
	luaL_register(L, NULL, funcs);
	lua_pushinteger(L, loop->id);
	lua_setfield(L, -2, "id");
	lua_pushinteger(L, loop->group->count);
	lua_setfield(L, -2, "count");
	return 1;
}
