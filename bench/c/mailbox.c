/* mailbox.c: the C limit for messages between loops: two threads, each with its own
 * ev_loop and a mailbox (a mutex-protected bounded ring plus an ev_async that wakes its
 * loop), as lem's loops talk. Sending never blocks: a full ring is retried from an ev_idle,
 * as a lem sender yields and retries.
 *   mailbox stream [n=1000000] [size=16] [cap=1024]   thread 1 sends n messages to 2
 *   mailbox pingpong [n=100000]                      threads 1 and 2 bounce one message
 * Prints its phases and "result" lines like the Lua programs (bench/common.lua). */
#include <pthread.h>
#include <ev.h>
#include "common.h"

#define MAXSTR 256
#define TAKE 256    /* messages taken out of the ring per lock */

struct msg {
	double num;
	unsigned len;
	char str[MAXSTR];
};

struct mbox {
	pthread_mutex_t mu;
	struct msg *ring;
	unsigned cap, head, len;
	struct ev_loop *ev;
	ev_async async;
};

static struct mbox box[2];
static long n, size, got;
static double t0, c0;
static char payload[MAXSTR];

/* Copies msg into m; 0, or -1 when the ring is full. May be called from any thread. */
static int mbox_send(struct mbox *m, double num, const char *str, unsigned len)
{
	struct msg *slot;

	pthread_mutex_lock(&m->mu);
	if (m->len == m->cap) {
		pthread_mutex_unlock(&m->mu);
		return -1;
	}
	slot = &m->ring[(m->head + m->len++) % m->cap];
	slot->num = num;
	slot->len = len;
	memcpy(slot->str, str, len);
	pthread_mutex_unlock(&m->mu);
	ev_async_send(m->ev, &m->async);   /* a no-op while a wake-up is pending */
	return 0;
}

/* Moves up to max messages out of m into out; returns how many. */
static unsigned mbox_take(struct mbox *m, struct msg *out, unsigned max)
{
	unsigned k;

	pthread_mutex_lock(&m->mu);
	for (k = 0; k < max && m->len > 0; k++, m->len--) {
		const struct msg *slot = &m->ring[m->head];

		out[k].num = slot->num;
		out[k].len = slot->len;
		memcpy(out[k].str, slot->str, slot->len);
		m->head = (m->head + 1) % m->cap;
	}
	pthread_mutex_unlock(&m->mu);
	return k;
}

static void mbox_init(struct mbox *m, unsigned cap, void (*cb)(struct ev_loop *, ev_async *, int))
{
	pthread_mutex_init(&m->mu, NULL);
	m->ring = malloc(cap * sizeof *m->ring);
	m->cap = cap;
	m->head = m->len = 0;
	m->ev = ev_loop_new(EVFLAG_AUTO);
	ev_async_init(&m->async, cb);
	ev_async_start(m->ev, &m->async);
}

static void *run(void *arg)
{
	ev_run(((struct mbox *)arg)->ev, 0);
	return NULL;
}

/* Runs both loops to their end, each in its own thread. */
static void run_both(void)
{
	pthread_t th[2];

	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, run, &box[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
}

/* ---- stream ---- */

static long sent;
static ev_idle sender;

static void stream_send(struct ev_loop *ev, ev_idle *w, int revents)
{
	(void)revents;
	while (sent < n && mbox_send(&box[1], (double)(sent + 1), payload, size) == 0)
		sent++;
	if (sent == n)
		ev_idle_stop(ev, w);
}

static void stream_receive(struct ev_loop *ev, ev_async *w, int revents)
{
	static struct msg buf[TAKE];
	unsigned k;

	(void)w; (void)revents;
	while ((k = mbox_take(&box[1], buf, TAKE)) > 0) {
		for (unsigned i = 0; i < k; i++)
			if (buf[i].num != (double)++got || buf[i].len != size) {
				fprintf(stderr, "mailbox: message %ld out of order\n", got);
				exit(1);
			}
	}
	if (got == n) {
		mbox_send(&box[0], 0, "", 0);   /* done */
		ev_break(ev, EVBREAK_ALL);
	}
}

static void stream_done(struct ev_loop *ev, ev_async *w, int revents)
{
	struct msg m;

	(void)w; (void)revents;
	if (mbox_take(&box[0], &m, 1))
		ev_break(ev, EVBREAK_ALL);
}

static void bench_stream(long cap)
{
	double t1, c1;

	memset(payload, 'x', size);
	mbox_init(&box[0], cap, stream_done);
	mbox_init(&box[1], cap, stream_receive);
	ev_idle_init(&sender, stream_send);
	ev_idle_start(box[0].ev, &sender);
	t0 = now(); c0 = cpu();
	run_both();
	t1 = now(); c1 = cpu();
	phase("run", t1 - t0, c1 - c0);
	result("messages/s", n / (t1 - t0));
}

/* ---- pingpong ---- */

static void ping(struct ev_loop *ev, ev_async *w, int revents)
{
	struct msg m;

	(void)w; (void)revents;
	while (mbox_take(&box[0], &m, 1)) {
		if (++got == n) {
			mbox_send(&box[1], -1, "", 0);   /* stop */
			ev_break(ev, EVBREAK_ALL);
			return;
		}
		mbox_send(&box[1], (double)(got + 1), "", 0);
	}
}

static void pong(struct ev_loop *ev, ev_async *w, int revents)
{
	struct msg m;

	(void)w; (void)revents;
	while (mbox_take(&box[1], &m, 1)) {
		if (m.num < 0) {
			ev_break(ev, EVBREAK_ALL);
			return;
		}
		mbox_send(&box[0], m.num, "", 0);
	}
}

static void bench_pingpong(void)
{
	double t1, c1;

	mbox_init(&box[0], 16, ping);
	mbox_init(&box[1], 16, pong);
	t0 = now(); c0 = cpu();
	mbox_send(&box[1], 1, "", 0);
	run_both();
	t1 = now(); c1 = cpu();
	phase("run", t1 - t0, c1 - c0);
	result("us/roundtrip", (t1 - t0) / n * 1e6);
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "";

	if (strcmp(what, "stream") == 0) {
		long cap = arg(argc, argv, "cap", 1024);
		n = arg(argc, argv, "n", 1000000);
		size = arg(argc, argv, "size", 16);
		if (size < 0 || size > MAXSTR || cap < 1) {
			fprintf(stderr, "mailbox: size must be in [0, %d], cap >= 1\n", MAXSTR);
			return 2;
		}
		printf("# mailbox-stream (C limit): cap=%ld n=%ld size=%ld\n", cap, n, size);
		bench_stream(cap);
	} else if (strcmp(what, "pingpong") == 0) {
		n = arg(argc, argv, "n", 100000);
		printf("# mailbox-pingpong (C limit): n=%ld\n", n);
		bench_pingpong();
	} else {
		fprintf(stderr, "usage: mailbox stream|pingpong [name=value...]\n");
		return 2;
	}
	return 0;
}
