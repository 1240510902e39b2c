/* loops.c: lem.loops: the id and count of loops, and messages between them.
 *
 * A message is decoded in the coroutine that receives it, under a protected call: when
 * memory runs out there, that coroutine gets the error and the message is freed. PUC Lua
 * 5.1 cannot raise an error into a coroutine it resumes, so a receiver woken by a message
 * is resumed with the message undecoded (a light userdata), and receive's Lua half hands
 * it to receive_done, which decodes it. Until then the message is on its mailbox's list
 * of handed messages, freed with the loop: a receiver that is never resumed (its loop
 * stopped) leaks nothing. */
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
	uint64_t since;            /* its mailbox's epoch when it began to wait */
};

static void recv_unlink(lem_loop *loop, struct lem_recv *r)
{
	struct lem_mbox *mb = loop->mbox;

	if (r->prev) r->prev->next = r->next; else mb->whead = r->next;
	if (r->next) r->next->prev = r->prev; else mb->wlast = r->prev;
	mb->nwaiting--;
	if (r->timed) {
		/* The timer was unref'd when started: libev's rule is to ref the loop before
		 * stopping it. When it has expired, libev stopped it (and unref'd) already,
		 * and the stop clears its pending callback: the ref is due as well. */
		mb->ntimed--;
		ev_ref(loop->ev);
		ev_timer_stop(loop->ev, &r->timer);
	}
	lem_unanchor(loop, r->anchor);
}

static void handed_link(struct lem_mbox *mb, struct lem_vmsg *m)
{
	m->prev = NULL;
	m->next = mb->handed;
	if (m->next)
		m->next->prev = m;
	mb->handed = m;
}

static void handed_unlink(struct lem_mbox *mb, struct lem_vmsg *m)
{
	if (m->prev) m->prev->next = m->next; else mb->handed = m->next;
	if (m->next) m->next->prev = m->prev;
}

/* [-1, +n] m (a light userdata) -> its sender's id and values. Runs protected. */
static int decode_msg(lua_State *T)
{
	const struct lem_vmsg *m = lua_touserdata(T, 1);

	lua_pushinteger(T, m->from);
	lem_msg_decode(T, m);
	return m->nvalues + 1;
}

/* [-0, +n] pushes the sender's id and the values of m on T, and frees m; if decoding
 * fails, frees m and raises its error in T. Only for C functions whose upvalue 1 is
 * decode_msg: pushing that costs no allocation, where lua_pushcfunction would. */
static int push_msg(lua_State *T, struct lem_vmsg *m)
{
	int top = lua_gettop(T), status;

	lua_pushvalue(T, lua_upvalueindex(1));
	lua_pushlightuserdata(T, m);
	status = lua_pcall(T, 1, LUA_MULTRET, 0);
	free(m);
	if (status)
		lua_error(T);
	return lua_gettop(T) - top;
}

void lem_loops_deliver(lem_loop *loop)
{
	struct lem_mbox *mb = loop->mbox;
	struct lem_vmsg *m;

	while (mb->whead) {
		struct lem_recv *r = mb->whead;

		if (lem_sched_valid(&r->w)) {
			if (!(m = lem_mbox_take(mb)))
				return;
			handed_link(mb, m);   /* receive_done decodes it in the receiver */
			lua_pushlightuserdata(loop->L, m);
			lem_wake(loop, &r->w, loop->L, 1);
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

/* The list is in the order the receives began: their epochs never decrease. */
void lem_loops_close_waiting(lem_loop *loop, uint64_t epoch)
{
	while (loop->mbox->whead && loop->mbox->whead->since < epoch)
		recv_end(loop, loop->mbox->whead, "closed");
}

void lem_loops_drop_waiting(lem_loop *loop)
{
	struct lem_mbox *mb = loop->mbox;

	while (mb->whead) {
		struct lem_recv *r = mb->whead;
		recv_unlink(loop, r);
		free(r);
	}
	free(mb->spare);
	mb->spare = NULL;
	while (mb->handed) {
		struct lem_vmsg *m = mb->handed;
		mb->handed = m->next;
		free(m);
	}
}

static void recv_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct lem_recv *r = (struct lem_recv *)w;

	(void)ev; (void)revents;
	lem_mbox_busy(lem_current);   /* the loop may be idle: it runs a coroutine now */
	recv_end(lem_current, r, "timeout");
}

/* Raises msg at the position of receive's caller: level 1 is receive's Lua half. */
static int receive_error(lua_State *T, const char *msg)
{
	luaL_where(T, 2);
	lua_pushstring(T, msg);
	lua_concat(T, 2);
	return lua_error(T);
}

/* Messages a receive takes at once, without suspending, before it lets the rest of its
 * loop run. */
#define RECV_BURST 32

/* receive's C half: from, ... | nil, 'timeout' | nil, 'closed', or, after waiting, the
 * message undecoded for receive_done. Upvalue 1: decode_msg. */
static int loops_receive(lua_State *T)
{
	lem_loop *loop = lem_current;
	struct lem_mbox *mb = loop->mbox;
	lua_Number timeout = 0;
	int timed = !lua_isnoneornil(T, 1);
	struct lem_recv *r;
	struct lem_vmsg *m;
	lem_waiter w;
	int rr;

	if (timed) {
		timeout = lua_tonumber(T, 1);
		if (timeout == 0 && !lua_isnumber(T, 1))
			receive_error(T, lua_pushfstring(T, "bad argument #1 to 'receive' "
			              "(number expected, got %s)", luaL_typename(T, 1)));
		if (timeout != timeout)
			receive_error(T, "bad argument #1 to 'receive' (timeout is not a number)");
	}
	lua_settop(T, 0);
	if (!mb) {                                  /* the loop has finished */
		lua_pushnil(T);
		lua_pushliteral(T, "closed");
		return 2;
	}
	if (mb->nwaiting == 0 && (m = lem_mbox_take(mb))) {
		if (++mb->burst < RECV_BURST || T != loop->yielder)
			return push_msg(T, m);
		/* A receiver that other loops keep fed would never suspend, and its loop's
		 * timers, sleepers and I/O would wait for ever: now and then it goes to the
		 * back of the runqueue, with the message for receive_done. */
		mb->burst = 0;
		handed_link(mb, m);
		lua_pushlightuserdata(T, m);
		return lem_yield(T, 1);
	}
	mb->burst = 0;
	if (timed && timeout <= 0) {
		lua_pushnil(T);
		lua_pushliteral(T, "timeout");
		return 2;
	}
	if (T != loop->yielder)   /* as lem_sched_suspend says it, but at the caller's line */
		receive_error(T, "cannot suspend here: not a coroutine run by lem "
		                 "(inside coroutine.resume or coroutine.wrap?)");
	/* The receiver is allocated first: once T has yielded, no error can reach it. It is
	 * the spare until then, so that a suspension that raises leaks nothing. */
	r = mb->spare ? mb->spare : malloc(sizeof *r);
	if (!r)
		receive_error(T, "not enough memory");
	mb->spare = r;
	rr = lem_suspend(T, &w, 0);
	mb->spare = NULL;
	r->w = w;
	lua_pushthread(w.co);
	lua_xmove(w.co, T, 1);
	r->anchor = lem_anchor(loop, T);
	r->timed = timed;
	r->since = mb->epoch;
	if (timed) {
		/* A timed receive alone does not keep its loop busy: the loop counts as
		 * waiting (see check_quiet in mailbox.c), so it can hear 'closed'. */
		ev_timer_init(&r->timer, recv_timeout, timeout, 0);
		ev_timer_start(loop->ev, &r->timer);
		ev_unref(loop->ev);
		mb->ntimed++;
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
	return rr;
}

/* receive's second half, in the receiving coroutine: decodes a message handed to it
 * while it waited, where an error can reach it; passes anything else on. Upvalue 1:
 * decode_msg. */
static int loops_receive_done(lua_State *T)
{
	struct lem_vmsg *m;

	if (lua_type(T, 1) != LUA_TLIGHTUSERDATA)
		return lua_gettop(T);
	m = lua_touserdata(T, 1);
	handed_unlink(lem_current->mbox, m);
	lua_settop(T, 0);
	return push_msg(T, m);
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
	struct lem_vmsg *m = lem_msg_encode(T, 2, lua_gettop(T), &bad);

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
	struct lem_vmsg *m = lem_msg_encode(T, 1, lua_gettop(T), &bad), *c = NULL;

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

/* loops.receive([timeout]) --> from, ... | nil, 'timeout' | nil, 'closed'. Its halves
 * are upvalues named as the function, for the errors they raise. */
static const char receive_lua[] =
	"local receive, receive_done = ...\n"
	"return function(timeout) return receive_done(receive(timeout)) end\n";

int luaopen_lem_loops(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "send", loops_send },
		{ "broadcast", loops_broadcast },
		{ NULL, NULL }
	};
	lem_loop *loop = lem_current;

	lua_newtable(L);
	luaL_register(L, NULL, funcs);
	if (luaL_loadbuffer(L, receive_lua, sizeof receive_lua - 1, "=[lem.loops]") != 0)
		return lua_error(L);
	lua_pushcfunction(L, decode_msg);             /* M, chunk, decode */
	lua_pushvalue(L, -1);
	lua_pushcclosure(L, loops_receive, 1);        /* M, chunk, decode, receive */
	lua_insert(L, -2);
	lua_pushcclosure(L, loops_receive_done, 1);   /* M, chunk, receive, receive_done */
	lua_call(L, 2, 1);
	lua_setfield(L, -2, "receive");
	lua_pushinteger(L, loop->id);
	lua_setfield(L, -2, "id");
	lua_pushinteger(L, loop->group->count);
	lua_setfield(L, -2, "count");
	return 1;
}
