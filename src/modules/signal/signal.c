/* signal.c: lem.signal: coroutines wait for signals, and for the shutdown.
 *
 * A loop catches a signal from the first signal.wait for it on, until signal.default or
 * signal.ignore in that loop (lem_signal). lem hands each signal to the loop's signal
 * hook (signal_hook), in its thread; the hook wakes every coroutine of the loop that
 * waits for it, or, when none does, keeps it for the next signal.wait: one signal,
 * however many arrived, so that a coroutine that handles a signal and waits again misses
 * none that came meanwhile. Waits are few: one list for every signal, scanned in full at
 * each delivery. A coroutine that waits for a signal keeps its loop running, as a pending
 * timer does, until the shutdown begins; waits for the shutdown never do. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "lem.h"

#define SIGNAL_STATE lua_upvalueindex(1)   /* every function's: the module's struct */
#define SIGNAL_KEY "lem.signal.state"      /* registry: one struct per loop */
#define SIGNAL_BIT(sig) ((uint64_t)1 << ((sig) - 1))

/* A coroutine waiting in signal.wait; in its loop's list. */
struct signal_waiter {
	ev_timer timer;            /* its timeout, if any; first: the callback casts it back */
	struct signal_waiter *next, *prev;
	struct signals *st;
	lem_waiter w;
	int anchor;                /* keeps the coroutine alive while it waits */
	int sig;                   /* 0: the shutdown */
	unsigned char timed;       /* the timer runs */
	unsigned char ref;         /* it keeps the loop running (ev_ref) */
	const char *name;          /* its argument, kept on its stack: what it returns */
};

/* The module's state in one loop. */
struct signals {
	lem_loop *loop;
	struct signal_waiter *head, *tail;
	struct signal_waiter *spare;   /* allocated by a wait whose suspension raised, with
	                                  its anchor slot: for the next one */
	uint64_t caught;               /* signals this loop catches, bit sig - 1 */
	uint64_t kept;                 /* caught while no coroutine waited for them */
	int shutdown;                  /* the shutdown began */
};

static struct signals *signal_state(lua_State *T)
{
	return lua_touserdata(T, SIGNAL_STATE);
}

/* ---- names ---- */

static const struct { const char *name; int sig; } signal_names[] = {
	{ "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "USR1", SIGUSR1 },
	{ "USR2", SIGUSR2 }, { "ALRM", SIGALRM }, { "TERM", SIGTERM }, { "CHLD", SIGCHLD },
	{ "CONT", SIGCONT }, { "TSTP", SIGTSTP }, { "TTIN", SIGTTIN }, { "TTOU", SIGTTOU },
	{ "WINCH", SIGWINCH },
	/* known, but never handed out: lem.h's lem_signal says why */
	{ "KILL", -1 }, { "STOP", -1 }, { "SEGV", -1 }, { "BUS", -1 }, { "FPE", -1 },
	{ "ILL", -1 }, { "TRAP", -1 }, { "SYS", -1 }, { "ABRT", -1 }, { "PIPE", -1 },
	{ "URG", -1 },
	{ NULL, 0 }
};

/* RTMIN, RTMIN+n, RTMAX-n, RTMAX: the signal, or 0. */
static int signal_rt(const char *s)
{
	int base, sign, n = 0;

	if (strncmp(s, "RTMIN", 5) == 0)
		base = SIGRTMIN, sign = 1;
	else if (strncmp(s, "RTMAX", 5) == 0)
		base = SIGRTMAX, sign = -1;
	else
		return 0;
	s += 5;
	if (*s) {
		if (*s++ != (sign > 0 ? '+' : '-') || !*s)
			return 0;
		for (; *s; s++) {
			if (*s < '0' || *s > '9' || n > SIGRTMAX)
				return 0;
			n = n * 10 + (*s - '0');
		}
	}
	n = base + sign * n;
	return n >= SIGRTMIN && n <= SIGRTMAX ? n : 0;
}

/* [-0, +0, v] The signal named at idx; 0 for 'shutdown' where shutdown is allowed. */
static int signal_check(lua_State *T, int idx, int shutdown)
{
	const char *s = luaL_checkstring(T, idx);
	int sig = signal_rt(s);

	if (shutdown && strcmp(s, "shutdown") == 0)
		return 0;
	for (int i = 0; !sig && signal_names[i].name; i++)
		if (strcmp(s, signal_names[i].name) == 0)
			sig = signal_names[i].sig;
	if (sig < 0)
		return luaL_argerror(T, idx, lua_pushfstring(T, "lem does not hand out %s", s));
	if (sig == 0)
		return luaL_argerror(T, idx, lua_pushfstring(T, "unknown signal '%s'", s));
	return sig;
}

/* ---- waits ---- */

static void signal_unlink(struct signals *st, struct signal_waiter *wt)
{
	struct ev_loop *ev = lem_ev(st->loop);

	if (wt->prev) wt->prev->next = wt->next; else st->head = wt->next;
	if (wt->next) wt->next->prev = wt->prev; else st->tail = wt->prev;
	if (wt->timed)
		ev_timer_stop(ev, &wt->timer);
	if (wt->ref)
		ev_unref(ev);
	lem_unanchor(st->loop, wt->anchor);
}

/* [-0, +1|+2] on S: the name v[1], or nil and why v[0] (lem_protect). */
static int signal_push_end(lua_State *S, void *ud)
{
	const char **v = ud;

	if (!v[0]) {
		lua_pushstring(S, v[1]);
		return 1;
	}
	lua_pushnil(S);
	lua_pushstring(S, v[0]);
	return 2;
}

/* Ends wt's wait: it returns its name (why NULL) or nil, why, made on from (a thread of
 * the loop) in a protected call: a string pushed may start a collector step, and a
 * finalizer may err in it (then wt gets nil and that error). */
static int signal_end(struct signals *st, struct signal_waiter *wt, lua_State *from,
                      const char *why)
{
	int woken, n;

	signal_unlink(st, wt);
	n = lem_protect(st->loop, from, signal_push_end, (const char *[]){ why, wt->name });
	woken = lem_wake(st->loop, &wt->w, from, n < 0 ? 2 : n);
	free(wt);
	return woken;
}

/* Ends the waits for sig (0: the shutdown) as signal_end does. Returns how many woke. */
static int signal_end_all(struct signals *st, int sig, lua_State *from, const char *why)
{
	struct signal_waiter *wt, *next;
	int n = 0;

	for (wt = st->head; wt; wt = next) {
		next = wt->next;
		if (wt->sig == sig)
			n += signal_end(st, wt, from, why);
	}
	return n;
}

static void signal_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct signal_waiter *wt = (struct signal_waiter *)w;

	(void)ev; (void)revents;
	wt->timed = 0;                 /* libev stopped it */
	signal_end(wt->st, wt, lem_state(wt->st->loop), "timeout");
}

static int signal_hook(lem_loop *loop, int event, void *ud)
{
	struct signals *st = ud;
	lua_State *L = lem_state(loop);
	struct signal_waiter *wt;
	int n = 0;

	if (event == LEM_DEADLINE) {
		for (wt = st->head; wt; wt = wt->next)
			n++;
		return n;
	}
	if (event == LEM_SHUTDOWN) {
		st->shutdown = 1;
		signal_end_all(st, 0, L, NULL);
		for (wt = st->head; wt; wt = wt->next)   /* the rest no longer keep the loop */
			if (wt->ref) {
				wt->ref = 0;
				ev_unref(lem_ev(loop));
			}
		return 0;
	}
	if ((st->caught & SIGNAL_BIT(event)) && signal_end_all(st, event, L, NULL) == 0)
		st->kept |= SIGNAL_BIT(event);
	return 0;
}

/* signal.wait(name [, timeout]) --> name | nil, 'timeout' | nil, 'closed' */
static int signal_wait(lua_State *T)
{
	struct signals *st = signal_state(T);
	lem_loop *loop = st->loop;
	int sig = signal_check(T, 1, 1), timed = !lua_isnoneornil(T, 2), err, r;
	lua_Number timeout = 0;
	struct signal_waiter *wt;

	if (timed) {
		timeout = luaL_checknumber(T, 2);
		if (timeout != timeout)
			luaL_argerror(T, 2, "timeout is not a number");
	}
	lua_settop(T, 1);                            /* the name: kept while it waits */
	if (sig == 0 && st->shutdown)
		return 1;                                /* return 'shutdown' */
	if (sig && !(st->caught & SIGNAL_BIT(sig))) {
		if ((err = lem_signal(loop, sig, LEM_SIG_CATCH)) != 0)
			return luaL_error(T, "cannot catch %s (error %d)", lua_tostring(T, 1), -err);
		st->caught |= SIGNAL_BIT(sig);
	}
	if (sig && (st->kept & SIGNAL_BIT(sig))) {
		st->kept &= ~SIGNAL_BIT(sig);
		return 1;                                /* return the name */
	}
	if (timed && timeout <= 0) {
		lua_pushnil(T);
		lua_pushliteral(T, "timeout");
		return 2;
	}
	/* What can fail comes first: the wait and its anchor slot. They are the spare until
	 * the suspension is done, so that one that raises leaks nothing. */
	if (!(wt = st->spare)) {
		if (!(wt = malloc(sizeof *wt)))
			return luaL_error(T, "not enough memory");
		wt->anchor = 0;
		st->spare = wt;
	}
	if (!wt->anchor) {
		lua_pushnil(T);
		wt->anchor = lem_anchor(loop, T);
	}
	r = lem_suspend(T, &wt->w, 1);
	st->spare = NULL;
	lua_pushthread(wt->w.co);
	lua_xmove(wt->w.co, T, 1);
	lem_anchor_set(loop, T, wt->anchor);
	wt->st = st;
	wt->sig = sig;
	wt->name = lua_tostring(T, 1);
	wt->timed = timed;
	wt->ref = sig != 0 && !timed && !st->shutdown;
	if (wt->ref)
		ev_ref(lem_ev(loop));
	if (timed) {
		ev_timer_init(&wt->timer, signal_timeout, timeout, 0);
		ev_timer_start(lem_ev(loop), &wt->timer);
		lem_deadline(loop, ev_now(lem_ev(loop)) + timeout);
	}
	wt->next = NULL;
	wt->prev = st->tail;
	if (st->tail) st->tail->next = wt; else st->head = wt;
	st->tail = wt;
	return r;
}

/* signal.ignore(name), signal.default(name) --> true
 * The loop stops catching the signal; its coroutines that wait for it return nil,
 * 'closed'. */
static int signal_set(lua_State *T, int how)
{
	struct signals *st = signal_state(T);
	int sig = signal_check(T, 1, 0), err = lem_signal(st->loop, sig, how);

	if (err)
		return luaL_error(T, "cannot set %s (error %d)", lua_tostring(T, 1), -err);
	st->caught &= ~SIGNAL_BIT(sig);
	st->kept &= ~SIGNAL_BIT(sig);
	signal_end_all(st, sig, T, "closed");
	lua_pushboolean(T, 1);
	return 1;
}

static int signal_ignore(lua_State *T)
{
	return signal_set(T, LEM_SIG_IGNORE);
}

static int signal_default(lua_State *T)
{
	return signal_set(T, LEM_SIG_DEFAULT);
}

/* The state's __gc, at lua_close: its waiting coroutines never run again. */
static int signal_gc(lua_State *L)
{
	struct signals *st = lua_touserdata(L, 1);

	while (st->head) {
		struct signal_waiter *wt = st->head;
		signal_unlink(st, wt);
		free(wt);
	}
	free(st->spare);
	st->spare = NULL;
	return 0;
}

/* The module's figures, in utils.stats(). */
static void signal_stats_hook(lem_loop *loop, lua_State *T, void *ud)
{
	struct signals *st = ud;
	int n = 0;

	(void)loop;
	for (struct signal_waiter *wt = st->head; wt; wt = wt->next)
		n++;
	lua_pushinteger(T, n);
	lua_setfield(T, -2, "parked_signal");
}

/* [-0, +1, m] The loop's struct signals, made and hooked on first use. */
static struct signals *signal_open_state(lua_State *L)
{
	struct signals *st;
	int r;

	lua_getfield(L, LUA_REGISTRYINDEX, SIGNAL_KEY);
	if (!lua_isnil(L, -1))
		return lua_touserdata(L, -1);
	lua_pop(L, 1);
	st = lua_newuserdata(L, sizeof *st);
	memset(st, 0, sizeof *st);
	st->loop = lem_loop_of(L);
	lua_newtable(L);
	lua_pushcfunction(L, signal_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, SIGNAL_KEY);   /* first: the hook outlives no state */
	if ((r = lem_signal_hook_add(st->loop, signal_hook, st)) < 0 ||
	    lem_stats_hook_add(st->loop, signal_stats_hook, st) < 0) {
		lua_pushnil(L);
		lua_setfield(L, LUA_REGISTRYINDEX, SIGNAL_KEY);
		luaL_error(L, "not enough memory");
	}
	st->shutdown = r;
	return st;
}

int luaopen_lem_signal(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "wait", signal_wait },
		{ "ignore", signal_ignore },
		{ "default", signal_default },
		{ NULL, NULL }
	};

	lua_newtable(L);
	signal_open_state(L);
	for (const luaL_Reg *f = funcs; f->name; f++) {
		lua_pushvalue(L, -1);
		lua_pushcclosure(L, f->func, 1);
		lua_setfield(L, -3, f->name);
	}
	lua_pop(L, 1);
	return 1;
}
