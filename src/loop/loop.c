/* loop.c: a loop's life: creating its ev_loop and lua_State, running, reporting, closing. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/timerfd.h>
#include <lualib.h>
#include "loop.h"
#include "mailbox.h"


lem_loop *lem_loop_of(lua_State *T)
{
	(void)T;
	return lem_current;
}

struct ev_loop *lem_ev(lem_loop *loop)
{
	return loop->ev;
}

lua_State *lem_state(lem_loop *loop)
{
	return loop->L;
}

void lem_fatal(const char *fmt, ...)
{
	va_list ap;

	fputs("lem: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* ---- values made in callbacks (lem_protect) ---- */

struct protected {
	int (*push)(lua_State *S, void *ud);
	void *ud;
};

static int protect_call(lua_State *S)
{
	struct protected *p = lua_touserdata(S, 1);

	return p->push(S, p->ud);
}

/* The function is made once and called with lua_pcall: lua_cpcall would make a closure
 * every time. Moving values between threads allocates nothing. */
int lem_protect(lem_loop *loop, lua_State *to, int (*push)(lua_State *S, void *ud), void *ud)
{
	struct protected p = { push, ud };
	lua_State *S = loop->scratch;
	int top = lua_gettop(S), n;

	lua_pushvalue(loop->H, LEM_PROTECT);
	lua_xmove(loop->H, S, 1);
	lua_pushlightuserdata(S, &p);
	if (lua_pcall(S, 1, LUA_MULTRET, 0) == 0) {
		n = lua_gettop(S) - top;
		lua_xmove(S, to, n);
		return n;
	}
	lua_pushnil(to);
	lua_xmove(S, to, 1);                 /* the message: Lua keeps its memory error made */
	return -1;
}

/* Runs push(S, ud) in S itself, a thread that runs nothing, under a protected call: a
 * memory error raised on S (growing its stack, say) comes back here as -1, where
 * without one it would abort the process. Its results are dropped; 0 when it returned,
 * -1 with the error value left on top of S when it raised. */
int lem_protect_in(lem_loop *loop, lua_State *S, int (*push)(lua_State *S, void *ud), void *ud)
{
	struct protected p = { push, ud };
	int top = lua_gettop(S);

	lua_pushvalue(loop->H, LEM_PROTECT);
	lua_xmove(loop->H, S, 1);
	lua_pushlightuserdata(S, &p);
	if (lua_pcall(S, 1, 1, 0) != 0)
		return -1;
	lua_settop(S, top);
	return 0;
}

static int panic(lua_State *L)
{
	lem_fatal("unprotected error in the Lua API (%s)",
	          lua_isstring(L, -1) ? lua_tostring(L, -1) : "no message");
}

/* ---- waking on time ----
 * libev's epoll backend waits at least a millisecond and rounds its timeout up to whole
 * milliseconds: a timer due 0.3 ms after the loop has run its coroutines fires up to
 * 0.7 ms late, and one already due makes the poll wait a millisecond all the same. lem
 * notes the earliest deadline of its own timers and sleeps, and before the poll arms a
 * timerfd for it, whose readiness ends the poll on time. Best effort: once it fired, the
 * next deadline is known again only when a timer starts. */
#define NEVER 1e300
#define SLACK 20e-6       /* fire a little after the deadline, never before it */

static void tfd_cb(struct ev_loop *ev, ev_io *w, int revents)
{
	lem_loop *loop = w->data;
	uint64_t n;

	(void)ev; (void)revents;
	if (read(loop->tfd, &n, sizeof n) < 0) { /* EAGAIN: fired and read already */ }
	loop->tfd_want = loop->tfd_armed = NEVER;
}

void lem_deadline(lem_loop *loop, ev_tstamp at)
{
	if (at < loop->tfd_want)
		loop->tfd_want = at;
}

void lem_loop_before_poll(lem_loop *loop)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };
	ev_tstamp rel;

	if (loop->tfd < 0 || loop->tfd_want >= loop->tfd_armed)
		return;
	rel = loop->tfd_want - ev_time() + SLACK;
	if (rel <= 0) {           /* due already: poll without waiting */
		ev_idle_start(loop->ev, &loop->spin);
		loop->tfd_want = NEVER;
		return;
	}
	if (rel > 1e6)            /* far off (or infinite): libev's own wait is on time enough */
		return;
	its.it_value.tv_sec = (time_t)rel;
	its.it_value.tv_nsec = (long)((rel - (ev_tstamp)its.it_value.tv_sec) * 1e9);
	if (timerfd_settime(loop->tfd, 0, &its, NULL) == 0)
		loop->tfd_armed = loop->tfd_want;
}

#ifdef LEM_LUAJIT
static void body_new(lua_State *H);
#endif

static void spin_cb(struct ev_loop *ev, ev_idle *w, int revents)
{
	(void)w; (void)revents;
}

lem_loop *lem_loop_new(const char *progname)
{
	lem_loop *loop = calloc(1, sizeof *loop);
	lua_State *L, *H;

	if (!loop)
		return NULL;
	loop->progname = progname;
	loop->reserve = malloc(LEM_RESERVE);   /* none: a memory error may abort its report */
	loop->ev = ev_loop_new(EVFLAG_AUTO);
	if (!loop->ev)
		goto err;
	loop->L = L = lua_newstate(lem_alloc, &loop->alloc);
#ifdef LEM_LUAJIT
	if (!L)                     /* a LuaJIT without GC64 takes no allocator of ours */
		loop->L = L = luaL_newstate();
#endif
	if (!L) {
		errno = ENOMEM;
		goto err;
	}
	lua_atpanic(L, panic);
	lem_current = loop;
	luaL_openlibs(L);

	loop->H = H = lua_newthread(L);   /* L[1], for ever */
	luaL_checkstack(H, LEM_NSLOTS + LUA_MINSTACK, "loop slots");
	for (int i = LEM_SPARES; i < LEM_SCRATCH; i++)
		lua_newtable(H);
	loop->scratch = lua_newthread(H);
	lua_pushcfunction(H, protect_call);
	lua_getglobal(H, "debug");
	lua_getfield(H, -1, "traceback");
	lua_remove(H, -2);
#ifdef LEM_LUAJIT
	body_new(H);
#else
	lua_pushnil(H);
	lua_pushnil(H);
#endif
	lua_pushnil(H);
	lua_pushnil(H);
	lem_site_open(H);
	for (int i = LEM_ONERROR; i <= LEM_ONERRVAL; i++) {   /* weak keys, as LEM_SITES */
		lua_newtable(H);
		lua_getmetatable(H, LEM_SITES);
		lua_setmetatable(H, -2);
	}

	lem_pcall_open(L);
	lem_stdlib_open(L);

	lem_sched_init(loop);
	ev_prepare_init(&loop->drain, lem_sched_drain);
	loop->drain.data = loop;
	ev_idle_init(&loop->spin, spin_cb);
	loop->tfd_want = loop->tfd_armed = NEVER;
	loop->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (loop->tfd >= 0) {
		ev_io_init(&loop->tfd_w, tfd_cb, loop->tfd, EV_READ);
		loop->tfd_w.data = loop;
		ev_io_start(loop->ev, &loop->tfd_w);
		ev_unref(loop->ev);   /* it keeps nothing alive */
	}
	return loop;
err:
	if (loop) {   /* errno says why */
		if (loop->ev)
			ev_loop_destroy(loop->ev);
		free(loop);
	}
	return NULL;
}

int lem_loop_run(lem_loop *loop)
{
	lem_current = loop;
	ev_prepare_start(loop->ev, &loop->drain);
	ev_unref(loop->ev);    /* the drain alone keeps nothing alive */
	if (loop->mbox) {
		lem_mbox_run(loop);
		lem_mbox_report(loop);
	} else {
		ev_run(loop->ev, 0);
	}
	lem_mbox_close(loop);
	return loop->status;
}

void lem_loop_free(lem_loop *loop)
{
	if (!loop)
		return;
	loop->closing = 1;
	if (loop->jobs_free)        /* done callbacks still see the Lua state */
		loop->jobs_free(loop);
	lua_close(loop->L);   /* runs the finalizers */
	lem_alloc_free(&loop->alloc);
	lem_anchor_free(loop);
	lem_sched_free(loop);
	ev_loop_destroy(loop->ev);
	if (loop->tfd >= 0)
		close(loop->tfd);
	free(loop->sighooks);
	lem_stats_free(loop);
	free(loop->reserve);
	free(loop);
}

void lem_loop_stop(lem_loop *loop, int status)
{
	if (loop->stopping)
		return;
	loop->stopping = 1;
	loop->status = status;
	ev_break(loop->ev, EVBREAK_ALL);
	if (!ev_is_active(&loop->spin))   /* do not block in the last poll */
		ev_idle_start(loop->ev, &loop->spin);
}

/* ---- interrupting Lua code ----
 * A loop running Lua code that never suspends does not see a stop in its mailbox. The
 * runtime then signals its thread, and the handler hooks the coroutine it runs: the next
 * instruction raises "interrupted!", as in lua.c. The hook stays, so that the error also
 * gets past every pcall on its way out; the stopping loop resumes nothing afterwards.
 * LuaJIT runs compiled traces without looking at hooks: a loop busy in one is stopped
 * only by a second signal, which ends the process. */
#define INTERRUPT_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT)   /* count: each instruction */

static void interrupt_hook(lua_State *T, lua_Debug *ar)
{
	lem_loop *loop = lem_current;

	(void)ar;
	loop->interrupted = 1;
	lem_loop_stop(loop, lem_group_status(loop->group));   /* its errors go unreported */
	if (loop->running && loop->running != T)  /* for the pcalls between them */
		lua_sethook(loop->running, interrupt_hook, INTERRUPT_MASK, 1);
	luaL_error(T, "interrupted!");
}

/* Only stores: lua_sethook writes four fields of T, which is what lua.c does in its
 * SIGINT handler too. Interrupts only a loop that another thread asked to stop. */
void lem_loop_interrupt(lem_loop *loop)
{
	lua_State *T;

	if (!loop || loop->stopping || !loop->mbox)
		return;
	if (!__atomic_load_n(&loop->mbox->stop, __ATOMIC_SEQ_CST)) {
		lem_probe_arm(loop);         /* or a probe asked for (probe.c) */
		return;
	}
	T = loop->inner;
	if (T)
		lua_sethook(T, interrupt_hook, INTERRUPT_MASK, 1);
}

/* The loop stops before the group does: the group's stop interrupts every loop thread,
 * this one's too, and must find this loop stopping. Else the interrupt hooks the coroutine
 * that called exit where it cannot suspend (in a coroutine.resume), and its unreported
 * "interrupted!" cuts short the code that exit lets run there (docs/utils.md). */
void lem_exit(lem_loop *loop, int status)
{
	lem_loop_stop(loop, status);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);   /* stopping stored before the handler can run */
	if (loop->group)
		lem_group_stop(loop->group, status);
}

/* ---- tracebacks ----
 * The traceback of an uncaught error is best taken where the error was raised: LuaJIT
 * unwinds a coroutine's frames that lie above a C function (table.sort's comparator, a
 * required chunk) as the error crosses it, and forgets the current line of the frame that
 * raised it; both builds unwind the frames that a protected call of lem's own (require)
 * catches before it raises the error again. So those places keep the traceback of the
 * error they saw, with its value, and the report uses it when that value is the one that
 * ended the coroutine. PUC Lua keeps a failed coroutine's frames otherwise: its traceback
 * is taken afterwards. */

#ifdef LEM_LUAJIT
/* The functions that run a coroutine's body f(...) in the LuaJIT build, with and without
 * arguments: under xpcall, whose handler sees the frames that unwinding loses. f is called
 * from a Lua function, not from xpcall itself, and for want of arguments from one that
 * takes no varargs: LuaJIT compiles no trace that returns into a pcall frame nor one
 * through a vararg function, and spawned functions would be interpreted (half as many
 * spawns per second of an empty function). They are loaded without debug information,
 * so that f shows no name (it would be the local 'f'), and without lines: the handler
 * removes the position "[lem body]:0: " that an error then gets from error(message, 2)
 * in a body or from a C function run as one: plain Lua gives it none there, the caller
 * being C. After a stack overflow, LuaJIT has not always room left to call the handler,
 * and xpcall returns "error in error handling" (as it does in plain LuaJIT). Both return
 * the body function for bodies without arguments, alone, or with false and the error: it
 * stays at the bottom of the finished coroutine's stack, and a reused coroutine starts
 * with it (sched.c). */
#define BODY_WHERE "[lem body]:0: "
#define ERRERR "error in error handling"
static const char body_src[] =
	"local xpcall, onerror = ...\n"
	"local function call(f, ...) f(...) end\n"
	"local function call0(f) f() end\n"
	"local body0\n"
	"function body0(f)\n"
	"  local ok, e = xpcall(call0, onerror, f)\n"
	"  if ok then return body0 end\n"
	"  return body0, ok, e\n"
	"end\n"
	"return function(f, ...)\n"
	"  local ok, e = xpcall(call, onerror, f, ...)\n"
	"  if ok then return body0 end\n"
	"  return body0, ok, e\n"
	"end, body0\n";
#define BODY_FRAMES 3     /* the body function, xpcall and call, at the bottom */
#define ONERROR_LEVEL 1   /* the raiser, seen from lem_loop_onerror */

/* [-0, +2, -] at start-up, on H: LEM_BODY and LEM_BODY0 */
static void body_new(lua_State *H)
{
	size_t n;
	const char *code;

	lua_getglobal(H, "string");
	lua_getfield(H, -1, "dump");
	lua_remove(H, -2);
	if (luaL_loadbuffer(H, body_src, sizeof body_src - 1, "=[lem body]") != 0)
		lem_fatal("%s", lua_tostring(H, -1));
	lua_pushboolean(H, 1);                 /* strip */
	lua_call(H, 2, 1);
	code = lua_tolstring(H, -1, &n);
	if (luaL_loadbuffer(H, code, n, "=[lem body]") != 0)
		lem_fatal("%s", lua_tostring(H, -1));
	lua_remove(H, -2);
	lua_getglobal(H, "xpcall");
	lua_pushcfunction(H, lem_loop_onerror);
	lua_call(H, 2, 2);
}

/* Whether the deepest frame of T is the function that runs a coroutine's body: frames of
 * lem's, which tracebacks do not show. */
static int body_frame(lua_State *L, lua_State *T)
{
	lua_Debug ar;
	int lo = 0, hi = 1, r;

	if (!lua_getstack(T, 0, &ar))
		return 0;
	while (lua_getstack(T, hi, &ar))
		lo = hi, hi *= 2;
	while (hi - lo > 1) {          /* lo exists, hi does not */
		int mid = lo + (hi - lo) / 2;
		if (lua_getstack(T, mid, &ar))
			lo = mid;
		else
			hi = mid;
	}
	lua_getstack(T, lo, &ar);
	lua_getinfo(T, "f", &ar);
	if (T != L)                   /* compared on L: T may be a suspended coroutine */
		lua_xmove(T, L, 1);
	lua_pushvalue(lem_current->H, LEM_BODY);
	lua_pushvalue(lem_current->H, LEM_BODY0);
	lua_xmove(lem_current->H, L, 2);
	r = lua_rawequal(L, -1, -3) || lua_rawequal(L, -2, -3);
	lua_pop(L, 3);
	return r;
}

/* [-0, +1, m] luaL_traceback, without the frame of lem's body xpcall at the bottom. */
void lem_loop_traceback(lua_State *L, lua_State *T, const char *msg, int level)
{
	const char *tb, *end;

	luaL_traceback(L, T, msg, level);
	if (body_frame(L, T)) {
		tb = lua_tostring(L, -1);
		end = tb + lua_objlen(L, -1);
		for (int i = 0; i < BODY_FRAMES && end > tb && strstr(tb, "stack traceback:") < end; i++)
			while (--end > tb && *end != '\n') {}
		lua_pushlstring(L, tb, (size_t)(end - tb));
		lua_remove(L, -2);
	}
}
#endif

/* [-0, +0, m] When the error value on top of T is the VM's "attempt to yield across a
 * C-call boundary", which says neither where nor why, replaces it with "<where>: cannot
 * suspend <why>": where is the first frame of T from `level` on that has a line. */
void lem_loop_yield_error(lua_State *T, int level, const char *why)
{
	const char *m = lua_tostring(T, -1);
	int top = lua_gettop(T);
	lua_Debug ar;

	if (lua_type(T, -1) != LUA_TSTRING ||
	    (strcmp(m, "attempt to yield across metamethod/C-call boundary") != 0 &&
	     strcmp(m, "attempt to yield across C-call boundary") != 0))
		return;
	lua_checkstack(T, 3);
	for (; lua_getstack(T, level, &ar); level++) {
		lua_getinfo(T, "Sl", &ar);
		if (ar.currentline > 0) {
			lua_pushfstring(T, "%s:%d: ", ar.short_src, ar.currentline);
			break;
		}
	}
	lua_pushfstring(T, "cannot suspend %s", why);
	lua_concat(T, lua_gettop(T) - top);
	lua_replace(T, -2);
}

#define ACROSS_C "across a C function: a table.sort comparator, a string.gsub callback, " \
                 "a metamethod or an iterator in PUC Lua"

/* [-0, +0, m] The error value is on top of T, which runs the handler that calls this
 * (level 0 of T): keeps it with T's traceback from `level` on, for the report, as the
 * error of loop->running. */
void lem_loop_keep_traceback(lua_State *T, int level)
{
	lem_loop *loop = lem_current;
	lua_State *H = loop->H;
#ifdef LEM_LUAJIT
	lua_State *S = loop->scratch;   /* T may have no room left: a stack overflow */

	lua_xmove(T, S, 1);
	lem_loop_traceback(S, T, NULL, level);
	lua_pushvalue(S, -2);
	lua_xmove(S, H, 2);
	lua_xmove(S, T, 1);             /* the error value, back where it was */
#else
	lua_checkstack(T, 4);
	lua_pushcfunction(T, lem_pcall_traceback);
	lua_pushliteral(T, "");
	lua_pushinteger(T, level + 1);          /* + the traceback function's own frame */
	lua_call(T, 2, 1);
	lua_pushstring(T, lua_tostring(T, -1) + 1);   /* without the message's newline */
	lua_remove(T, -2);
	lua_pushvalue(T, -2);
	lua_xmove(T, H, 2);
#endif
	lua_replace(H, LEM_ERRVAL);
	lua_replace(H, LEM_ERRTB);
	loop->err_co = loop->running;
}

#ifdef LEM_LUAJIT
/* The handler of the xpcall that runs each coroutine's body: keeps the traceback.
 * Returns the error value as it came. */
int lem_loop_onerror(lua_State *T)
{
	lem_loop *loop = lem_current;
	lua_State *S = loop->scratch;   /* compared there: T may have no room left */
	int kept;

	lua_settop(T, 1);
	lua_pushvalue(T, 1);
	lua_xmove(T, S, 1);
	lua_pushvalue(loop->H, LEM_ERRVAL);
	lua_xmove(loop->H, S, 1);
	kept = loop->err_co == loop->running && lua_rawequal(S, -1, -2);
	lua_pop(S, 2);
	if (kept)             /* kept already, deeper, by require (stdlib.c) */
		return 1;
	lem_loop_yield_error(T, ONERROR_LEVEL, ACROSS_C);
	if (lua_type(T, 1) == LUA_TSTRING &&
	    strncmp(lua_tostring(T, 1), BODY_WHERE, sizeof BODY_WHERE - 1) == 0) {
		lua_pushstring(T, lua_tostring(T, 1) + sizeof BODY_WHERE - 1);
		lua_replace(T, 1);
	}
	lem_loop_keep_traceback(T, ONERROR_LEVEL);
	return 1;
}
#endif

/* The message of an error value: strings and numbers as they are, else __tostring, else
 * its type. Runs protected: a __tostring may fail too. */
static int describe(lua_State *L)
{
	if (!lua_isstring(L, 1) && !(luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1)))
		lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	lua_tostring(L, -1);
	return 1;
}

static int oom_collect(lua_State *S, void *ud)
{
	(void)ud;
	lua_gc(S, LUA_GCCOLLECT, 0);   /* protected: a finalizer may raise */
	return 0;
}

/* T failed with a memory error and may still hold what it allocated (its locals are on
 * its stack): before its report (after 0) the reserve goes, so that the report's own
 * allocations, made where no Lua call protects them, do not abort the process; after
 * it, T's values go, a full collection frees them, and the reserve is taken again. */
void lem_loop_oom(lem_loop *loop, lua_State *T, int after)
{
	if (!after) {
		free(loop->reserve);
		loop->reserve = NULL;
		return;
	}
	lua_settop(T, 0);                 /* T is dead: nothing reads its stack again */
	if (lem_protect(loop, loop->L, oom_collect, NULL) < 0)
		lua_pop(loop->L, 2);
	if (!loop->reserve)
		loop->reserve = malloc(LEM_RESERVE);
}

/* lem_loop_fail's report, made on L in a protected call (lem_protect_in): every
 * allocation may raise, out of memory or by a finalizer (__gc) that errs in the collector
 * step it starts. Sets *ud[2] when T's function for its errors took the message, else
 * prints "lem: <message>". */
static int fail_report(lua_State *L, void *ud)
{
	lua_State *T = ((void **)ud)[0];
	lem_loop *loop = ((void **)ud)[1];
	lua_State *H = loop->H;
	int kept;

#ifndef LEM_LUAJIT
	lem_loop_yield_error(T, 0, ACROSS_C);    /* PUC keeps T's frames: level 0 raised it */
#else
	if (lua_type(T, -1) == LUA_TSTRING && strcmp(lua_tostring(T, -1), ERRERR) == 0) {
		lua_pop(T, 1);                       /* the body's handler could not be called */
		lua_pushliteral(T, ERRERR " (the stack was full, most likely: a runaway recursion)");
	}
#endif
	lua_pushcfunction(L, describe);
	lua_xmove(T, L, 1);   /* the error value */
	lua_pushvalue(H, LEM_ERRVAL);
	lua_xmove(H, L, 1);
	kept = loop->err_co == T && lua_rawequal(L, -1, -2);
	lua_pop(L, 1);
	loop->err_co = NULL;
	if (lua_pcall(L, 1, 1, 0) != 0 || !lua_isstring(L, -1)) {
		lua_pop(L, 1);
		lua_pushliteral(L, "(error object cannot be described)");
	}
	if (loop->note) {
		lua_pushliteral(L, " (");
		lua_pushfstring(L, loop->note, loop->note_arg);
		lua_pushliteral(L, ")");
		lua_concat(L, 4);
	}
	if (kept) {               /* L: message */
		lua_pushliteral(L, "\n");
		lua_pushvalue(H, LEM_ERRTB);
		lua_xmove(H, L, 1);
		lua_concat(L, 3);
	} else {
		lua_pushvalue(H, LEM_TRACEBACK);
		lua_xmove(H, L, 1);
		lua_pushthread(T);
		lua_xmove(T, L, 1);
		lua_pushvalue(L, -3);  /* L: message, traceback, T, message */
		if (lua_pcall(L, 2, 1, 0) != 0 || !lua_isstring(L, -1))
			lua_pop(L, 1);     /* the message alone */
		else
			lua_remove(L, -2);
	}
	if (lem_site_describe(loop, T, L)) {
		lua_pushliteral(L, "\n");
		lua_insert(L, -2);
		lua_concat(L, 3);
	}
	lua_pushnil(H);
	lua_replace(H, LEM_ERRVAL);   /* nothing kept alive for nothing */
	lua_pushnil(H);
	lua_replace(H, LEM_ERRTB);
	if (loop->onerrors && lem_sched_onerror(loop, T, L)) {
		*(int *)((void **)ud)[2] = 1;   /* its function runs instead: the loop goes on */
		return 0;
	}
	fprintf(stderr, "%s: %s\n", loop->progname, lua_tostring(L, -1));
	fflush(stderr);
	return 0;
}

/* After a protected call on L failed with its error value on top: when nobody can be
 * given the error, a memory error is fatal; any other error (a finalizer, __gc, that
 * erred in the collector step an allocation started) is reported as an uncaught error,
 * "lem: <message> (raised while <during>)", and the loop stops with status 1. The
 * error value stays on L. */
void lem_loop_uncaught(lem_loop *loop, const char *during)
{
	lua_State *L = loop->L;
	const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;

	if (msg && strcmp(msg, "not enough memory") == 0)
		lem_fatal("out of memory (%s)", during);
	if (loop->stopping)
		return;
	fprintf(stderr, "%s: %s (raised while %s)\n", loop->progname, msg ? msg : "an error",
	        during);
	fflush(stderr);
	lem_exit(loop, 1);
}

/* Prints "lem: <message>" and T's stack traceback, and stops the loop with status 1;
 * or, when T has a function for its errors (lem_onerror), spawns that with the message.
 * The error value is on top of T's stack. An error raised while the report is made is
 * lem_loop_uncaught's. */
void lem_loop_fail(lem_loop *loop, lua_State *T)
{
	lua_State *L = loop->L;
	int top = lua_gettop(L), taken = 0;
	void *args[3] = { T, loop, &taken };

	if (loop->stopping)   /* exiting already: errors of the last moments do not count */
		return;
	if (lem_protect_in(loop, L, fail_report, args) != 0)
		lem_loop_uncaught(loop, "an uncaught error was reported");
	else if (!taken)
		lem_exit(loop, 1);
	lua_settop(L, top);
}
