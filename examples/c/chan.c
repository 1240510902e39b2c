/* chan.c: channels between the coroutines of a loop, the second example of docs/c-api.md.
 *
 *   local chan = require 'chan'
 *   local c = chan.new()
 *   c:send(v)                  -- never blocks: wakes the first waiting receiver with v,
 *                              -- or queues v
 *   c:recv([timeout])          -- a queued value at once, else suspends until a send:
 *                              -- v | nil, 'timeout'
 *
 * A channel's environment table is its FIFO, at indices head+1..tail: the values sent
 * that no receiver took yet, or the receivers waiting for one (never both). A receiver is
 * a userdata whose environment holds its coroutine: the channel keeps the coroutines that
 * wait on it alive and nothing else does, so a channel nobody can reach is garbage with
 * them. A timed receiver is also anchored, so that its timer finds it; when it times out
 * it leaves a hole (false) in the FIFO, which sends skip.
 *
 * Build: cc -shared -fPIC $(pkg-config --cflags lem) chan.c -o chan.so */
#include <lem.h>

#define CHAN "chan"
#define RECV "chan.recv"

struct chan {
	lem_loop *loop;
	int head, tail;        /* the FIFO holds env[head+1..tail] */
	int receivers;         /* it holds receivers, not values */
};

struct recv {
	ev_timer timer;        /* first: the callback gets it back as a struct recv */
	lem_loop *loop;
	struct chan *c;
	lem_waiter w;
	int pos;               /* its index in the FIFO */
	int slot;              /* anchors it while its timer runs */
};

/* A receiver that goes unused (its suspension raised) frees its anchor slot. */
static int recv_gc(lua_State *L)
{
	struct recv *r = lua_touserdata(L, 1);

	lem_unanchor(r->loop, r->slot);
	return 0;
}

/* [-0, +1, -] Shifts the FIFO's first entry, the FIFO being on top of L. */
static void fifo_shift(lua_State *L, struct chan *c)
{
	lua_rawgeti(L, -1, ++c->head);
	if (!lua_isnil(L, -1)) {                 /* drop the FIFO's reference */
		lua_pushnil(L);
		lua_rawseti(L, -3, c->head);         /* the key exists: this cannot allocate */
	}
	if (c->head == c->tail)                  /* empty: start again at 1 */
		c->head = c->tail = 0;
}

/* The timer of a timed receiver, on lem_state: nothing may raise here. */
static void recv_timeout(struct ev_loop *ev, ev_timer *timer, int revents)
{
	struct recv *r = (struct recv *)timer;
	struct chan *c = r->c;                   /* alive: r's coroutine refers to it */
	lua_State *L = lem_state(r->loop);
	int top = lua_gettop(L);

	(void)ev; (void)revents;
	lem_anchor_push(r->loop, L, r->slot);    /* L: r, kept here until it is woken */
	lua_getfenv(L, -1);
	lua_rawgeti(L, -1, 2);
	lua_getfenv(L, -1);                      /* L: r, env, chan, fifo */
	lua_pushboolean(L, 0);
	lua_rawseti(L, -2, r->pos);              /* leave a hole: the key exists */
	while (c->tail > c->head) {              /* holes at the end go at once */
		lua_rawgeti(L, -1, c->tail);
		if (lua_toboolean(L, -1))
			break;
		lua_pushnil(L);
		lua_rawseti(L, -3, c->tail--);
		lua_pop(L, 1);
	}
	if (c->head == c->tail)
		c->head = c->tail = 0;
	lua_settop(L, top + 1);                  /* L: r */
	lua_pushnil(L);
	lua_pushliteral(L, "timeout");
	lem_wake(r->loop, &r->w, L, 2);          /* stale (resumed by hand): pops them */
	lem_unanchor(r->loop, r->slot);
	r->slot = 0;
	lua_settop(L, top);
}

/* chan.new() --> channel */
static int chan_new(lua_State *T)
{
	struct chan *c = lua_newuserdata(T, sizeof *c);

	c->loop = lem_loop_of(T);
	c->head = c->tail = c->receivers = 0;
	luaL_getmetatable(T, CHAN);
	lua_setmetatable(T, -2);
	lua_newtable(T);
	lua_setfenv(T, -2);
	return 1;
}

/* c:send(v): wakes the first receiver waiting with v, or queues v */
static int chan_send(lua_State *T)
{
	struct chan *c = luaL_checkudata(T, 1, CHAN);

	luaL_checkany(T, 2);
	lua_settop(T, 2);
	lua_getfenv(T, 1);                       /* T: chan, v, fifo */
	while (c->receivers && c->tail > c->head) {
		struct recv *r;
		fifo_shift(T, c);                    /* T: chan, v, fifo, r | false */
		if (!(r = lua_touserdata(T, 4))) {   /* a hole */
			lua_pop(T, 1);
			continue;
		}
		if (r->slot) {                       /* timed: its timer is no longer needed */
			ev_timer_stop(lem_ev(c->loop), &r->timer);
			lem_unanchor(c->loop, r->slot);
			r->slot = 0;
		}
		lua_pushvalue(T, 2);
		if (lem_wake(c->loop, &r->w, T, 1))  /* moves v to r's coroutine */
			return 0;
		lua_pop(T, 1);                       /* stale: resumed by hand; the next one */
	}
	c->receivers = 0;
	lua_pushvalue(T, 2);
	lua_rawseti(T, 3, c->tail + 1);          /* may raise: count it after */
	c->tail++;
	return 0;
}

/* c:recv([timeout]) --> v | nil, 'timeout' */
static int chan_recv(lua_State *T)
{
	struct chan *c = luaL_checkudata(T, 1, CHAN);
	int timed = !lua_isnoneornil(T, 2), ret;
	lua_Number timeout = timed ? luaL_checknumber(T, 2) : 0;
	struct recv *r;

	luaL_argcheck(T, timeout == timeout, 2, "timeout is not a number");   /* NaN */
	lua_settop(T, 1);
	lua_getfenv(T, 1);                       /* T: chan, fifo */
	if (!c->receivers && c->tail > c->head) {
		fifo_shift(T, c);
		return 1;
	}
	if (timed && timeout <= 0) {
		lua_pushnil(T);
		lua_pushliteral(T, "timeout");
		return 2;
	}
	/* Everything that can fail comes before the suspension: the receiver, its
	 * environment, its place in the FIFO (false until it waits) and its anchor slot.
	 * If lem_suspend raises, the collector takes them, and the FIFO's next entry
	 * takes that place. */
	r = lua_newuserdata(T, sizeof *r);       /* T: chan, fifo, r */
	r->loop = c->loop;
	r->c = c;
	r->slot = 0;
	luaL_getmetatable(T, RECV);
	lua_setmetatable(T, 3);
	lua_createtable(T, 2, 0);                /* r's environment: { coroutine, chan } */
	lua_pushvalue(T, 1);
	lua_rawseti(T, -2, 2);
	lua_setfenv(T, 3);
	lua_pushboolean(T, 0);
	lua_rawseti(T, 2, c->tail + 1);
	if (timed) {
		lua_pushnil(T);
		r->slot = lem_anchor(c->loop, T);
	}
	ret = lem_suspend(T, &r->w, 2);          /* T: fifo, r, mark */
	/* Nothing may raise from here on: every store below has its place already. */
	r->pos = ++c->tail;
	c->receivers = 1;
	lua_pushvalue(T, 2);
	lua_rawseti(T, 1, r->pos);               /* the FIFO holds r... */
	lua_getfenv(T, 2);
	lua_pushthread(r->w.co);                 /* (pushing a thread allocates nothing) */
	lua_xmove(r->w.co, T, 1);
	lua_rawseti(T, -2, 1);                   /* ...and r its coroutine */
	lua_pop(T, 1);
	if (timed) {
		lua_pushvalue(T, 2);
		lem_anchor_set(c->loop, T, r->slot);
		ev_timer_init(&r->timer, recv_timeout, timeout, 0);
		ev_timer_start(lem_ev(c->loop), &r->timer);
		lem_deadline(c->loop, ev_now(lem_ev(c->loop)) + timeout);
	}
	return ret;
}

int luaopen_chan(lua_State *L)
{
	luaL_newmetatable(L, RECV);
	lua_pushcfunction(L, recv_gc);
	lua_setfield(L, -2, "__gc");
	luaL_newmetatable(L, CHAN);
	lua_newtable(L);                         /* the methods */
	lua_pushcfunction(L, chan_send);
	lua_setfield(L, -2, "send");
	lua_pushcfunction(L, chan_recv);
	lua_setfield(L, -2, "recv");
	lua_setfield(L, -2, "__index");
	lua_newtable(L);                         /* the module */
	lua_pushcfunction(L, chan_new);
	lua_setfield(L, -2, "new");
	return 1;
}
