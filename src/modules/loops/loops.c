/* loops.c: lem.loops: the id and count of loops, and messages between them.
 *
 * A message is decoded in the coroutine that receives it, under a protected call: when
 * memory runs out there, that coroutine gets the error and the message is freed. PUC Lua
 * 5.1 cannot raise an error into a coroutine it resumes, so a receiver woken by a message
 * is resumed with the message undecoded (a light userdata), and receive's Lua half hands
 * it to receive_done, which decodes it. Until then the message is on the module's list
 * of handed messages, freed when the mailbox closes: a receiver that is never resumed
 * (its loop stopped) leaks nothing. A message taken for a receiver that turned out stale
 * (resumed by other means meanwhile) is kept back for the next receive. */
#include <errno.h>
#include <stdlib.h>
#include "loops.h"

/* Upvalues of every function of lem.loops. */
#define LOOPS_DECODE lua_upvalueindex(1)   /* loops_decode */
#define LOOPS_STATE  lua_upvalueindex(2)   /* the module's struct loops (a userdata) */

/* Where a loop keeps its struct loops: one per loop, however often the module opens. */
#define LOOPS_KEY "lem.loops.state"

/* A coroutine waiting in receive; in its loop's list of receivers. */
struct recv {
	ev_timer timer;            /* the timeout, when there is one; first: its callback
	                              casts it back; data: the struct loops */
	struct recv *next, *prev;
	lem_waiter w;
	int anchor;                /* keeps the coroutine alive while a message may come */
	int timed;
	uint64_t since;            /* lem_mail_wait's epoch when it began to wait */
};

/* The module's state in one loop. */
struct loops {
	lem_loop *loop;
	int id, count;
	struct recv *whead, *wlast;   /* waiting receivers, first come first served */
	struct recv *spare;           /* allocated by a receive whose suspension raised, for
	                                 the next one, with its anchor slot */
	struct msg *handed;           /* given to woken receivers, not yet decoded */
	lem_msg *kept;                /* taken from the mailbox, not yet received: older than
	                                 what the mailbox holds */
	unsigned burst;               /* receives served at once since the last yield */
	int closed;                   /* the mailbox closed: nothing can come */
	/* figures (utils.stats): messages and their encoded bytes, sends that were 'full' */
	unsigned long sent, received, full;
	unsigned long long bytes_sent, bytes_received;
};

static struct loops *loops_state(lua_State *T)
{
	return lua_touserdata(T, LOOPS_STATE);
}

/* The oldest message not yet received, or NULL. */
static struct msg *loops_take(struct loops *st)
{
	lem_msg *l = st->kept;

	if (!l)
		return msg_of(lem_take(st->loop));
	st->kept = l->next;
	return msg_of(l);
}

/* Gives m back: the next loops_take returns it. */
static void loops_keep(struct loops *st, struct msg *m)
{
	m->link.next = st->kept;
	st->kept = &m->link;
}

static void loops_hand(struct loops *st, struct msg *m)
{
	m->prev = NULL;
	m->next = st->handed;
	if (m->next)
		m->next->prev = m;
	st->handed = m;
}

static void loops_unhand(struct loops *st, struct msg *m)
{
	if (m->prev) m->prev->next = m->next; else st->handed = m->next;
	if (m->next) m->next->prev = m->prev;
}

static void loops_unlink(struct loops *st, struct recv *r)
{
	lem_loop *loop = st->loop;

	if (r->prev) r->prev->next = r->next; else st->whead = r->next;
	if (r->next) r->next->prev = r->prev; else st->wlast = r->prev;
	if (r->timed) {
		/* The timer was unref'd when started: libev's rule is to ref the loop before
		 * stopping it. When it has expired, libev stopped it (and unref'd) already,
		 * and the stop clears its pending callback: the ref is due as well. */
		ev_ref(lem_ev(loop));
		ev_timer_stop(lem_ev(loop), &r->timer);
	}
	lem_unanchor(loop, r->anchor);
	lem_mail_wait(loop, -1, r->timed);
}

/* [-1, +n, m] m (a light userdata) -> its sender's id and values. Runs protected. */
static int loops_decode(lua_State *T)
{
	const struct msg *m = lua_touserdata(T, 1);

	lua_pushinteger(T, m->from);
	msg_decode(T, m);
	return m->nvalues + 1;
}

/* [-0, +n, m] pushes the sender's id and the values of m on T, and frees m; if decoding
 * fails, frees m and raises its error in T. An error that ends T before it suspends again
 * names the sender. Pushing loops_decode from the upvalues costs
 * no allocation, where lua_pushcfunction would. */
static int loops_push(lua_State *T, struct msg *m)
{
	int top = lua_gettop(T), status;
	struct loops *st = loops_state(T);

	st->received++;
	st->bytes_received += m->len;
	lem_note(T, "handling a message from loop %d", m->from);
	lua_pushvalue(T, LOOPS_DECODE);
	lua_pushlightuserdata(T, m);
	status = lua_pcall(T, 1, LUA_MULTRET, 0);
	free(m);
	if (status)
		lua_error(T);
	return lua_gettop(T) - top;
}

/* Hands messages to the waiting receivers, oldest first. */
static void loops_deliver(struct loops *st)
{
	lua_State *L = lem_state(st->loop);
	struct msg *m;

	while (st->whead && (m = loops_take(st))) {
		struct recv *r = st->whead;

		loops_unlink(st, r);
		lua_pushlightuserdata(L, m);
		if (lem_wake(st->loop, &r->w, L, 1))
			loops_hand(st, m);   /* receive_done decodes it in the receiver */
		else
			loops_keep(st, m);   /* r was resumed by other means: the next one's */
		free(r);
	}
}

static int loops_push_end(lua_State *S, void *ud)
{
	lua_pushnil(S);
	lua_pushstring(S, ud);
	return 2;
}

/* Ends r's wait: it returns nil, why. */
static void loops_end(struct loops *st, struct recv *r, const char *why)
{
	lua_State *L = lem_state(st->loop);

	/* The values first, the anchor last: making a string may run the collector, and
	 * until lem_wake queues it, r's anchor is all that keeps its coroutine alive. In a
	 * protected call: a finalizer may err in that collector step (r then gets nil and
	 * that error, two values all the same). */
	lem_protect(st->loop, L, loops_push_end, (void *)why);
	lem_wake(st->loop, &r->w, L, 2);
	loops_unlink(st, r);
	free(r);
}

/* Frees the receivers (their coroutines never run again) and the messages. */
static void loops_drop(struct loops *st)
{
	while (st->whead) {
		struct recv *r = st->whead;
		loops_unlink(st, r);
		free(r);
	}
	if (st->spare) {
		lem_unanchor(st->loop, st->spare->anchor);
		free(st->spare);
		st->spare = NULL;
	}
	while (st->handed) {
		struct msg *m = st->handed;
		st->handed = m->next;
		free(m);
	}
	while (st->kept)
		free(loops_take(st));
	st->closed = 1;
}

static void loops_hook(lem_loop *loop, int event, uint64_t epoch, void *ud)
{
	struct loops *st = ud;

	(void)loop;
	switch (event) {
	case LEM_MAIL_ARRIVED:
		loops_deliver(st);
		break;
	case LEM_MAIL_QUIET:
		/* the list is in the order the waits began: their epochs never decrease */
		while (st->whead && st->whead->since < epoch)
			loops_end(st, st->whead, "closed");
		break;
	default:
		loops_drop(st);
	}
}

/* Tells lem, at the shutdown's deadline, how many receives still wait. */
static int loops_signal_hook(lem_loop *loop, int event, void *ud)
{
	struct loops *st = ud;
	int n = 0;

	(void)loop;
	if (event == LEM_DEADLINE)
		for (struct recv *r = st->whead; r; r = r->next)
			n++;
	return n;
}

static void loops_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	(void)ev; (void)revents;
	loops_end(w->data, (struct recv *)w, "timeout");
}

/* Raises msg at the position of receive's caller: level 1 is receive's Lua half. */
static int loops_error(lua_State *T, const char *msg)
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
 * message undecoded for receive_done. */
static int loops_receive(lua_State *T)
{
	struct loops *st = loops_state(T);
	lem_loop *loop = st->loop;
	lua_Number timeout = 0;
	int timed = !lua_isnoneornil(T, 1), rr;
	struct recv *r;
	struct msg *m;
	lem_waiter w;

	if (timed) {
		timeout = lua_tonumber(T, 1);
		if (timeout == 0 && !lua_isnumber(T, 1))
			loops_error(T, lua_pushfstring(T, "bad argument #1 to 'receive' "
			            "(number expected, got %s)", luaL_typename(T, 1)));
		if (timeout != timeout)
			loops_error(T, "bad argument #1 to 'receive' (timeout is not a number)");
	}
	lua_settop(T, 0);
	if (st->closed) {                           /* the loop has finished */
		lua_pushnil(T);
		lua_pushliteral(T, "closed");
		return 2;
	}
	if (!st->whead && (m = loops_take(st))) {
		if (++st->burst < RECV_BURST || !lem_suspendable(T))
			return loops_push(T, m);
		/* A receiver that other loops keep fed would never suspend, and its loop's
		 * timers, sleepers and I/O would wait for ever: now and then it goes to the
		 * back of the runqueue, with the message for receive_done. The message is kept
		 * back until the yield is done: one that raises leaves it to the next receive. */
		st->burst = 0;
		loops_keep(st, m);
		lua_pushlightuserdata(T, m);
		rr = lem_yield(T, 1);
		loops_hand(st, loops_take(st));   /* m, at the front */
		return rr;
	}
	st->burst = 0;
	if (timed && timeout <= 0) {
		lua_pushnil(T);
		lua_pushliteral(T, "timeout");
		return 2;
	}
	if (!lem_suspendable(T))   /* as lem_suspend says it, but at the caller's line */
		loops_error(T, "cannot suspend here: not a coroutine run by lem "
		               "(inside coroutine.resume or coroutine.wrap?)");
	/* What can fail comes first: the receiver and its anchor slot. They are the spare
	 * until the suspension is done, so that one that raises leaks nothing. */
	if (!(r = st->spare)) {
		if (!(r = malloc(sizeof *r)))
			loops_error(T, "not enough memory");
		r->anchor = 0;
		st->spare = r;
	}
	if (!r->anchor) {
		lua_pushnil(T);
		r->anchor = lem_anchor(loop, T);
	}
	rr = lem_suspend(T, &w, 0);
	st->spare = NULL;
	r->w = w;
	lua_pushthread(w.co);
	lua_xmove(w.co, T, 1);
	lem_anchor_set(loop, T, r->anchor);
	r->timed = timed;
	if (timed) {
		/* A timed receive alone does not keep its loop busy: the loop counts as
		 * waiting (lem_mail_wait), so it can hear 'closed'. */
		ev_timer_init(&r->timer, loops_timeout, timeout, 0);
		r->timer.data = st;
		ev_timer_start(lem_ev(loop), &r->timer);
		ev_unref(lem_ev(loop));
		lem_deadline(loop, ev_now(lem_ev(loop)) + timeout);
	}
	r->next = NULL;
	r->prev = st->wlast;
	if (st->wlast) st->wlast->next = r; else st->whead = r;
	st->wlast = r;
	r->since = lem_mail_wait(loop, 1, timed);
	return rr;
}

/* receive's second half, in the receiving coroutine: decodes a message handed to it
 * while it waited, where an error can reach it; passes anything else on. */
static int loops_receive_done(lua_State *T)
{
	struct msg *m;

	if (lua_type(T, 1) != LUA_TLIGHTUSERDATA)
		return lua_gettop(T);
	m = lua_touserdata(T, 1);
	loops_unhand(loops_state(T), m);
	lua_settop(T, 0);
	return loops_push(T, m);
}

static int loops_checkid(lua_State *T, int arg, int count)
{
	lua_Number n = luaL_checknumber(T, arg);
	int id = (int)n;

	if ((lua_Number)id != n || id < 1 || id > count)
		luaL_argerror(T, arg, lua_pushfstring(T, "loop id must be a whole number from 1 to %d", count));
	return id;
}

static int loops_result(lua_State *T, int err)
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
	struct loops *st = loops_state(T);
	int to = loops_checkid(T, 1, st->count), bad, err;
	struct msg *m = msg_encode(T, 2, lua_gettop(T), &bad);
	size_t n;

	if (!m)
		return luaL_argerror(T, bad, lua_tostring(T, -1));
	m->from = st->id;
	n = m->len;
	err = lem_post(st->loop, to, &m->link);
	if (err) {
		free(m);
		st->full += err == -ENOSPC;
	} else {
		st->sent++;
		st->bytes_sent += n;
	}
	return loops_result(T, err);
}

/* loops.broadcast(...) --> how many other loops it reached */
static int loops_broadcast(lua_State *T)
{
	struct loops *st = loops_state(T);
	int bad, i, reached = 0, err;
	struct msg *m = msg_encode(T, 1, lua_gettop(T), &bad), *c = NULL;

	if (!m)
		return luaL_argerror(T, bad, lua_tostring(T, -1));
	m->from = st->id;
	for (i = 1; i <= st->count; i++) {
		if (i == st->id)
			continue;
		if (!c && !(c = msg_copy(m)))
			return luaL_error(T, "not enough memory");
		if ((err = lem_post(st->loop, i, &c->link)) == 0) {
			reached++;
			st->sent++;
			st->bytes_sent += m->len;
			c = NULL;
		} else {
			st->full += err == -ENOSPC;
		}
	}
	free(c);
	free(m);
	lua_pushinteger(T, reached);
	return 1;
}

/* The state's __gc, at lua_close: the mailbox has closed (LEM_MAIL_CLOSED) and left
 * nothing, unless the module opened after that. */
static int loops_gc(lua_State *L)
{
	loops_drop(lua_touserdata(L, 1));
	return 0;
}

/* The module's figures, in utils.stats(). */
static void loops_stats_hook(lem_loop *loop, lua_State *T, void *ud)
{
	struct loops *st = ud;
	int n = 0;

	(void)loop;
	for (struct recv *r = st->whead; r; r = r->next)
		n++;
	lua_pushinteger(T, n);
	lua_setfield(T, -2, "parked_receive");
	lua_pushnumber(T, (lua_Number)st->sent);
	lua_setfield(T, -2, "sent");
	lua_pushnumber(T, (lua_Number)st->received);
	lua_setfield(T, -2, "received");
	lua_pushnumber(T, (lua_Number)st->bytes_sent);
	lua_setfield(T, -2, "bytes_sent");
	lua_pushnumber(T, (lua_Number)st->bytes_received);
	lua_setfield(T, -2, "bytes_received");
	lua_pushnumber(T, (lua_Number)st->full);
	lua_setfield(T, -2, "full");
}

/* loops.stats() --> utils.stats()'s table: the loop's figures, these among them */
static int loops_stats(lua_State *T)
{
	lem_stats(lem_loop_of(T), T);
	return 1;
}

/* [-0, +1, m] The loop's struct loops, made and hooked to its mailbox on first use. */
static struct loops *loops_open_state(lua_State *L)
{
	struct loops *st;

	lua_getfield(L, LUA_REGISTRYINDEX, LOOPS_KEY);
	if (!lua_isnil(L, -1))
		return lua_touserdata(L, -1);
	lua_pop(L, 1);
	st = lua_newuserdata(L, sizeof *st);
	st->loop = lem_loop_of(L);
	st->count = lem_loops(st->loop, &st->id);
	st->whead = st->wlast = st->spare = NULL;
	st->handed = NULL;
	st->kept = NULL;
	st->burst = 0;
	st->closed = 0;
	st->sent = st->received = st->full = 0;
	st->bytes_sent = st->bytes_received = 0;
	lua_newtable(L);
	lua_pushcfunction(L, loops_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, LOOPS_KEY);
	lem_mail_hook_set(st->loop, loops_hook, st);
	if (lem_signal_hook_add(st->loop, loops_signal_hook, st) < 0 ||
	    lem_stats_hook_add(st->loop, loops_stats_hook, st) < 0)
		luaL_error(L, "not enough memory");
	return st;
}

/* [-0, +1, m] A closure of f with the module's upvalues, decode and state, on top. */
static void loops_closure(lua_State *L, lua_CFunction f)
{
	lua_pushvalue(L, -2);
	lua_pushvalue(L, -2);
	lua_pushcclosure(L, f, 2);
}

/* loops.receive([timeout]) --> from, ... | nil, 'timeout' | nil, 'closed'. Its halves
 * are upvalues named as the function, for the errors they raise. */
static const char receive_lua[] =
	"local receive, receive_done = ...\n"
	"return function(timeout) return receive_done(receive(timeout)) end\n";

int luaopen_lem_loops(lua_State *L)
{
	struct loops *st;

	lua_newtable(L);                              /* M */
	if (luaL_loadbuffer(L, receive_lua, sizeof receive_lua - 1, "=[lem.loops]") != 0)
		return lua_error(L);
	lua_pushcfunction(L, loops_decode);           /* M, chunk, decode */
	st = loops_open_state(L);                     /* M, chunk, decode, state */
	loops_closure(L, loops_send);
	lua_setfield(L, -5, "send");
	loops_closure(L, loops_broadcast);
	lua_setfield(L, -5, "broadcast");
	loops_closure(L, loops_receive);
	lua_insert(L, -3);                            /* M, chunk, receive, decode, state */
	loops_closure(L, loops_receive_done);
	lua_insert(L, -3);                            /* M, chunk, receive, done, decode, state */
	lua_pop(L, 2);
	lua_call(L, 2, 1);                            /* M, receive */
	lua_setfield(L, -2, "receive");
	lua_pushcfunction(L, loops_stats);
	lua_setfield(L, -2, "stats");
	lua_pushinteger(L, st->id);
	lua_setfield(L, -2, "id");
	lua_pushinteger(L, st->count);
	lua_setfield(L, -2, "count");
	return 1;
}
