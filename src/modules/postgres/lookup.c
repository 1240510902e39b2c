/* lookup.c: host names looked up before a connect, on lem's thread pool.
 *
 * libpq resolves a host name inside PQconnectPoll with getaddrinfo, which may block for
 * seconds. So a connect whose host list holds a name looks the names up first, off the
 * loop (lem_async_run), and hands libpq their addresses as hostaddr: it then resolves
 * nothing, and still uses host for passwords and SSL. Unix socket paths and numeric
 * addresses need no lookup. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include "pg.h"

struct lookup {
	struct pg_conn *c;          /* NULL once nobody waits for it (lookup_forget) */
	const char *conninfo;       /* in c's connect request: alive while c waits */
	char *hostaddr;             /* the addresses, comma-separated, for libpq */
	char err[256];              /* or why not */
	char host[];                /* the host list */
};

/* Whether a host list element needs no lookup: a socket path (or an abstract socket's
 * '@'), or a numeric address. */
static int lookup_numeric(const char *h, size_t len)
{
	char buf[INET6_ADDRSTRLEN + 1];
	unsigned char addr[sizeof(struct in6_addr)];

	if (len == 0 || h[0] == '/' || h[0] == '@')
		return 1;
	if (len >= sizeof buf)
		return 0;
	memcpy(buf, h, len);
	buf[len] = '\0';
	return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

/* [-0, +0, -] Parses conninfo (no network); *host gets a copy (malloc) of its host list
 * when it has names to look up, else NULL. Returns 0, -EINVAL (conninfo is invalid) or
 * -ENOMEM. */
int lookup_needed(const char *conninfo, char **host)
{
	PQconninfoOption *opts, *o;
	const char *h = NULL, *addr = NULL;
	char *err = NULL;
	int names = 0;

	*host = NULL;
	if (!(opts = PQconninfoParse(conninfo, &err))) {
		if (!err)
			return -ENOMEM;
		PQfreemem(err);
		return -EINVAL;
	}
	for (o = opts; o->keyword; o++) {
		if (!strcmp(o->keyword, "host"))
			h = o->val;
		else if (!strcmp(o->keyword, "hostaddr"))
			addr = o->val;
	}
	if (!h || !*h)                         /* libpq's defaults come from there */
		h = getenv("PGHOST");
	if (!addr || !*addr)
		addr = getenv("PGHOSTADDR");
	if (h && (!addr || !*addr)) {
		for (const char *p = h; ; p++) {
			size_t len = strcspn(p, ",");
			names |= !lookup_numeric(p, len);
			p += len;
			if (!*p)
				break;
		}
	}
	if (names && !(*host = strdup(h))) {
		PQconninfoFree(opts);
		return -ENOMEM;
	}
	PQconninfoFree(opts);
	return 0;
}

/* On the pool: each name's first address, in the order of the host list. */
static void lookup_work(void *arg)
{
	struct lookup *l = arg;
	size_t cap = strlen(l->host) * 2 + 64, used = 0;
	char *out = malloc(cap);

	if (!out) {
		snprintf(l->err, sizeof l->err, "not enough memory");
		return;
	}
	for (char *p = l->host; ; p++) {
		size_t len = strcspn(p, ",");
		char save = p[len], num[INET6_ADDRSTRLEN] = "";
		p[len] = '\0';
		if (!lookup_numeric(p, len)) {
			struct addrinfo hints, *res;
			int gai;
			memset(&hints, 0, sizeof hints);
			hints.ai_socktype = SOCK_STREAM;
			hints.ai_flags = AI_ADDRCONFIG;
			if ((gai = getaddrinfo(p, NULL, &hints, &res)) != 0) {
				snprintf(l->err, sizeof l->err,
				         "could not translate host name \"%s\" to address: %s",
				         p, gai_strerror(gai));
				free(out);
				return;
			}
			getnameinfo(res->ai_addr, res->ai_addrlen, num, sizeof num, NULL, 0,
			            NI_NUMERICHOST);
			freeaddrinfo(res);
		}
		if (used + strlen(num) + 2 > cap) {
			char *more = realloc(out, cap = cap * 2 + strlen(num) + 2);
			if (!more) {
				snprintf(l->err, sizeof l->err, "not enough memory");
				free(out);
				return;
			}
			out = more;
		}
		/* a path's hostaddr stays empty: libpq then uses its host */
		used += sprintf(out + used, "%s%s", p == l->host ? "" : ",", num);
		p[len] = save;
		p += len;
		if (!*p)
			break;
	}
	l->hostaddr = out;
}

static void lookup_done(lem_loop *loop, void *arg)
{
	struct lookup *l = arg;

	(void)loop;
	if (l->c) {
		l->c->lookup = NULL;
		if (l->err[0])
			pg_connect_start(l->c, l->conninfo, NULL, l->err);
		else
			pg_connect_start(l->c, l->conninfo, l->hostaddr, NULL);
	}
	free(l->hostaddr);
	free(l);
}

/* Looks up the names of host (taken: freed here) for c's connect, which then starts;
 * or ends the connect with the reason. Raises nothing. */
void lookup_start(struct pg_conn *c, const char *conninfo, char *host)
{
	size_t len = strlen(host);
	struct lookup *l = malloc(sizeof *l + len + 1);
	int err;

	if (!l) {
		free(host);
		pg_connect_start(c, conninfo, NULL, "not enough memory");
		return;
	}
	memcpy(l->host, host, len + 1);
	free(host);
	l->c = c;
	l->conninfo = conninfo;
	l->hostaddr = NULL;
	l->err[0] = '\0';
	if ((err = lem_async_run(c->loop, lookup_work, lookup_done, l)) < 0) {
		free(l);
		pg_connect_start(c, conninfo, NULL, err == -ENOMEM ? "not enough memory" :
		                 "the loop is closing");
		return;
	}
	c->lookup = l;
}

/* c's connect no longer waits for its lookup (a timeout, or c closes). */
void lookup_forget(struct pg_conn *c)
{
	if (c->lookup) {
		c->lookup->c = NULL;
		c->lookup = NULL;
	}
}
