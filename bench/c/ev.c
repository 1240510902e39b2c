/* ev.c: the C limit for timers and sleeps: the same workloads written in C directly on
 * libev, with no Lua at all.
 *   ev timers [n=200000] [max=0.05]       n one-shot ev_timers, random delays in [0, max]
 *   ev sleeps [k=1000] [r=200] [delay=0.001]   k timers each restarted r times
 * Prints its phases and "result" lines like the Lua programs (bench/common.lua). */
#include <ev.h>
#include "common.h"

/* ---- timers ---- */

static long fired, nfire;

static void tick(struct ev_loop *ev, ev_timer *w, int revents)
{
	(void)w; (void)revents;
	if (++fired == nfire)
		ev_break(ev, EVBREAK_ALL);
}

static void bench_timers(long n, double max)
{
	struct ev_loop *ev = ev_loop_new(EVFLAG_AUTO);
	ev_timer *t = malloc((n ? n : 1) * sizeof *t);   /* owned by the caller, as in lem */
	double t0, c0, t1, c1;

	srand48(1);
	nfire = n;
	ev_now_update(ev);
	t0 = now(); c0 = cpu();
	for (long i = 0; i < n; i++) {
		ev_timer_init(&t[i], tick, drand48() * max, 0);
		ev_timer_start(ev, &t[i]);
	}
	t1 = now(); c1 = cpu();
	phase("start", -1, c1 - c0);
	result("rss", rss());
	if (n > 0) {
		ev_run(ev, 0);
		phase("fire", now() - t1, cpu() - c1);
		result("fires/s", n / (now() - t0));
	}
	free(t);
	ev_loop_destroy(ev);
}

/* ---- sleeps ---- */

struct sleeper {
	ev_timer w;
	double delay;
	long left;
};

static long awake;

static void wake(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct sleeper *s = (struct sleeper *)w;

	(void)revents;
	if (--s->left > 0) {
		ev_timer_set(w, s->delay, 0);   /* sleep again, from this iteration's time */
		ev_timer_start(ev, w);
	} else if (--awake == 0) {
		ev_break(ev, EVBREAK_ALL);
	}
}

static void bench_sleeps(long k, long r, double delay)
{
	struct ev_loop *ev = ev_loop_new(EVFLAG_AUTO);
	struct sleeper *s = malloc(k * sizeof *s);
	double t0, c0, t1, c1;

	awake = k;
	ev_now_update(ev);
	t0 = now(); c0 = cpu();
	for (long i = 0; i < k; i++) {
		ev_timer_init(&s[i].w, wake, delay, 0);
		s[i].delay = delay;
		s[i].left = r;
		ev_timer_start(ev, &s[i].w);
	}
	ev_run(ev, 0);
	t1 = now(); c1 = cpu();
	phase("run", t1 - t0, c1 - c0);
	result("sleeps/s", k * r / (t1 - t0));
	result("cpu-us/sleep", (c1 - c0) / (k * r) * 1e6);
	free(s);
	ev_loop_destroy(ev);
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "";

	if (strcmp(what, "timers") == 0) {
		long n = arg(argc, argv, "n", 200000);
		double max = argf(argc, argv, "max", 0.05);
		printf("# timers (C limit): max=%g n=%ld\n", max, n);
		bench_timers(n, max);
	} else if (strcmp(what, "sleeps") == 0) {
		long k = arg(argc, argv, "k", 1000), r = arg(argc, argv, "r", 200);
		double delay = argf(argc, argv, "delay", 0.001);
		printf("# sleeps (C limit): delay=%g k=%ld r=%ld\n", delay, k, r);
		bench_sleeps(k, r, delay);
	} else {
		fprintf(stderr, "usage: ev timers|sleeps [name=value...]\n");
		return 2;
	}
	return 0;
}
