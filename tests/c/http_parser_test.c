/* http_parser_test.c: the HTTP/1.1 parser's tests (src/modules/http/parser.c), printing TAP.
 *   http_parser_test CORPUS_DIR           the unit tests, then each case of the corpus
 *   http_parser_test --seeds OUT CORPUS_DIR   write the corpus as fuzzer seeds into
 *                                         OUT/head and OUT/chunked (see fuzz/)
 *
 * A corpus case is a text file: "key: value" lines, a line "--", then the message. In the
 * message the file's own line ends are ignored and escapes give every octet: \r \n \t \0
 * \s (SP) \\ \xHH, and \{N:text} for text (itself escaped, '}' written \}) N times.
 *   kind: request | response | chunked
 *   expect: complete | incomplete | STATUS (the http_status_of of the first error)
 *   messages: N          messages read back to back, bodies skipped (complete; default 1)
 *   body: none | length N | chunked | close     of the first message
 *   status: N            of the first response
 *   keep-alive: yes | no of the first message
 *   flags: upgrade expect-continue ...           set on the first message
 *   data: ESCAPED        a chunked case's decoded data
 *   limits: head=N fields=N target=N chunk-line=N    instead of the defaults */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "parser.h"
#include "tap.h"

/* ---- shared by the tests ---- */

#define MAXF 128
static struct http_field fields[MAXF];

#define S(lit) lit, sizeof lit - 1

static int req(const char *s, size_t n, struct http_head *h)
{
	h->fields = fields;
	return http_parse_request(s, n, h, NULL);
}

static int resp(const char *s, size_t n, struct http_head *h)
{
	h->fields = fields;
	return http_parse_response(s, n, h, NULL);
}

static int span_is(const char *buf, uint32_t off, uint32_t len, const char *want)
{
	return len == strlen(want) && !memcmp(buf + off, want, len);
}

/* Every proper prefix of a complete head must ask for more, never fail. */
static int prefixes_wait(const char *s, int n, int response, const struct http_limits *lim)
{
	struct http_head h;
	h.fields = fields;
	for (int k = 0; k < n; k++) {
		int r = response ? http_parse_response(s, k, &h, lim) : http_parse_request(s, k, &h, lim);
		if (r != 0) {
			printf("#   prefix of %d bytes: %d (%s)\n", k, r, http_strerror(r));
			return 0;
		}
	}
	return 1;
}

/* Decodes a whole chunked body at once, then octet by octet; both must agree. */
static int chunked(const char *body, size_t n, const struct http_limits *lim,
                   char *out, size_t *outlen, size_t *used)
{
	struct http_chunked st;
	char *a = malloc(n + 1), *b = malloc(n + 1);
	size_t consumed, decoded, total = 0, got = 0;
	int r, r2 = 0;

	memcpy(a, body, n);
	memcpy(b, body, n);
	http_chunked_init(&st, lim);
	r = http_chunked_decode(&st, a, n, &consumed, &decoded);
	memcpy(out, a, decoded);
	*outlen = decoded;
	*used = consumed;

	http_chunked_init(&st, lim);
	for (size_t i = 0; i < n && r2 == 0; i++) {
		r2 = http_chunked_decode(&st, b + i, 1, &consumed, &decoded);
		total += consumed;
		if (decoded)
			b[got++] = b[i];
	}
	if (r2 != r || (r >= 0 && got != *outlen) || memcmp(b, out, got < *outlen ? got : *outlen)
	    || (r == 1 && total != *used)) {
		printf("#   at once: %d, %zu decoded; octet by octet: %d, %zu decoded\n", r, *outlen, r2, got);
		r = -1000;
	}
	free(a);
	free(b);
	return r;
}

/* ---- the head ---- */

static void test_request(void)
{
	static const char m[] =
		"\r\n\r\nPOST /a/b?c=d HTTP/1.1\r\n"
		"Host: example.com:8080\r\n"
		"X-Empty:\r\n"
		"X-Spaces: \t a  b \t\r\n"
		"Content-Length: 5\r\n"
		"\r\nhello";
	struct http_head h;
	int n = req(S(m), &h);
	is(n, sizeof m - 1 - 5, "a request: its head's length, leading empty lines included");
	ok(span_is(m, h.method, h.method_len, "POST"), "method");
	ok(span_is(m, h.target, h.target_len, "/a/b?c=d"), "target");
	is(h.minor, 1, "HTTP/1.1");
	is(h.nfields, 4, "four fields");
	ok(span_is(m, fields[0].name, fields[0].name_len, "Host")
	   && span_is(m, fields[0].value, fields[0].value_len, "example.com:8080"), "a field's name and value");
	ok(span_is(m, fields[1].name, fields[1].name_len, "X-Empty") && fields[1].value_len == 0,
	   "an empty value");
	ok(span_is(m, fields[2].value, fields[2].value_len, "a  b"), "a value without its OWS");
	is(h.body, HTTP_BODY_LENGTH, "body: Content-Length");
	is((long long)h.content_length, 5, "content_length");
	is(h.flags, HTTP_KEEP_ALIVE, "HTTP/1.1 persists");
	ok(prefixes_wait(S(m) - 5, 0, NULL), "every prefix of the head asks for more");
	is(req(m, 2, &h), 0, "an empty line alone asks for more");

	static const char m10[] = "GET / HTTP/1.0\r\n\r\n";
	is(req(S(m10), &h), sizeof m10 - 1, "HTTP/1.0 without Host");
	is(h.minor, 0, "minor 0");
	is(h.flags, 0, "HTTP/1.0 closes");
	is(h.body, HTTP_BODY_NONE, "no body");
	static const char m10k[] = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
	req(S(m10k), &h);
	is(h.flags, HTTP_CONN_KEEP_ALIVE | HTTP_KEEP_ALIVE, "HTTP/1.0 with keep-alive persists");
	static const char mc[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n";
	req(S(mc), &h);
	is(h.flags, HTTP_CONN_CLOSE, "Connection: close, in a list and any case");
	static const char me[] = "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n";
	req(S(me), &h);
	ok(h.flags & HTTP_EXPECT_CONTINUE, "Expect: 100-continue");
	static const char me10[] = "PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
	req(S(me10), &h);
	ok(!(h.flags & HTTP_EXPECT_CONTINUE), "... ignored in HTTP/1.0 (RFC 9110 10.1.1)");
	static const char mu[] = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
	req(S(mu), &h);
	is(h.flags, HTTP_CONN_KEEP_ALIVE | HTTP_CONN_UPGRADE | HTTP_UPGRADE | HTTP_KEEP_ALIVE, "Upgrade");
	static const char mu2[] = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
	req(S(mu2), &h);
	ok(!(h.flags & HTTP_UPGRADE), "Upgrade without Connection: upgrade is no upgrade");
	static const char mch[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n";
	req(S(mch), &h);
	is(h.body, HTTP_BODY_CHUNKED, "Transfer-Encoding: chunked");
	static const char mcl0[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
	req(S(mcl0), &h);
	is(h.body, HTTP_BODY_NONE, "Content-Length: 0 is no body");
	static const char mmax[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n";
	ok(req(S(mmax), &h) > 0 && h.content_length == UINT64_MAX, "Content-Length: 2^64 - 1");
	static const char mobs[] = "GET /\xff HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n";
	is(req(S(mobs), &h), HTTP_E_TARGET, "a non-ASCII octet in the target");
	static const char mobs2[] = "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n";
	ok(req(S(mobs2), &h) > 0, "obs-text in a field value");
	static const char mlong[] =
		"GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789abcdef0123456789abcdef\t0123456789abcdef\r\n\r\n";
	ok(req(S(mlong), &h) > 0 && fields[1].value_len == 49, "a long value with a tab");
}

static void test_response(void)
{
	struct http_head h;
	static const char r1[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
	is(resp(S(r1), &h), sizeof r1 - 3, "a response");
	is(h.status, 200, "status");
	ok(span_is(r1, h.reason, h.reason_len, "OK"), "reason");
	is(h.body, HTTP_BODY_LENGTH, "Content-Length");
	ok(prefixes_wait(S(r1) - 2, 1, NULL), "every prefix asks for more");
	static const char r2[] = "HTTP/1.1 404 \r\n\r\n";
	ok(resp(S(r2), &h) > 0 && h.reason_len == 0 && h.body == HTTP_BODY_CLOSE
	   && !(h.flags & HTTP_KEEP_ALIVE), "an empty reason; no length: read until close");
	static const char r3[] = "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n";
	ok(resp(S(r3), &h) > 0 && h.status == 200 && h.flags == HTTP_KEEP_ALIVE,
	   "no SP before an empty reason");
	static const char r4[] = "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n";
	ok(resp(S(r4), &h) > 0 && h.body == HTTP_BODY_NONE && h.content_length == 100,
	   "304: no body, the length is the representation's");
	static const char r5[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
	ok(resp(S(r5), &h) > 0 && h.body == HTTP_BODY_NONE && (h.flags & HTTP_UPGRADE), "101 with Upgrade");
	static const char r6[] = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n";
	ok(resp(S(r6), &h) > 0 && (h.flags & HTTP_KEEP_ALIVE), "HTTP/1.0 keep-alive response");
	static const char r7[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	ok(resp(S(r7), &h) > 0 && h.body == HTTP_BODY_CHUNKED, "chunked response");
	static const char r8[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
	is(resp(S(r8), &h), HTTP_E_TE_UNKNOWN, "a response coded in gzip: not implemented");
	static const char r9[] = "HTTP/1.1 200 \xe9t\xe9\r\n\r\n";
	ok(resp(S(r9), &h) > 0 && h.reason_len == 3, "obs-text in the reason");
}

struct bad { const char *what; const char *msg; size_t len; int err; int response; };
#define BAD(w, m, e) { w, m, sizeof m - 1, e, 0 }
#define BADR(w, m, e) { w, m, sizeof m - 1, e, 1 }

static const struct bad bads[] = {
	BAD("bare LF ends the request-line", "GET / HTTP/1.1\nHost: a\r\n\r\n", HTTP_E_CRLF),
	BAD("bare LF ends a field", "GET / HTTP/1.1\r\nHost: a\n\r\n", HTTP_E_CRLF),
	BAD("bare LF ends the head", "GET / HTTP/1.1\r\nHost: a\r\n\n", HTTP_E_CRLF),
	BAD("bare LF as an empty line first", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_CRLF),
	BAD("bare CR in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", HTTP_E_CRLF),
	BAD("bare CR before a name", "GET / HTTP/1.1\r\nHost: a\r\n\rX: a\r\n\r\n", HTTP_E_CRLF),
	BAD("bare CR after the version", "GET / HTTP/1.1\rHost: a\r\n\r\n", HTTP_E_CRLF),
	BAD("bare CR in the method", "G\rT / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_METHOD),
	BAD("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", HTTP_E_OBS_FOLD),
	BAD("whitespace before the first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", HTTP_E_OBS_FOLD),
	BAD("space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", HTTP_E_FIELD_SPACE),
	BAD("tab before the colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", HTTP_E_FIELD_SPACE),
	BAD("no colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", HTTP_E_FIELD_NAME),
	BAD("empty name", "GET / HTTP/1.1\r\n: a\r\n\r\n", HTTP_E_FIELD_NAME),
	BAD("'@' in a name", "GET / HTTP/1.1\r\nHo@st: a\r\n\r\n", HTTP_E_FIELD_NAME),
	BAD("DEL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", HTTP_E_FIELD_VALUE),
	BAD("ESC in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[0m\r\n\r\n", HTTP_E_FIELD_VALUE),
	BAD("'(' in the method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_METHOD),
	BAD("no method", " / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_METHOD),
	BAD("two spaces after the method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_TARGET),
	BAD("tab after the method", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_METHOD),
	BAD("HTTP/0.9 request", "GET /\r\n\r\n", HTTP_E_LINE),
	BAD("two spaces before the version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_VERSION),
	BAD("trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", HTTP_E_VERSION),
	BAD("tab in the target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_TARGET),
	BAD("NUL in the target", "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_TARGET),
	BAD("fragment in the target", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_TARGET),
	BAD("relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_TARGET),
	BAD("* but for OPTIONS", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_TARGET),
	BAD("CONNECT to a path", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_TARGET),
	BAD("CONNECT without a port", "CONNECT a.b HTTP/1.1\r\nHost: a.b\r\n\r\n", HTTP_E_TARGET),
	BAD("lowercase http", "GET / http/1.1\r\nHost: a\r\n\r\n", HTTP_E_VERSION),
	BAD("HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", HTTP_E_VERSION),
	BAD("HTTP/1", "GET / HTTP/1\r\nHost: a\r\n\r\n", HTTP_E_VERSION),
	BAD("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", HTTP_E_VERSION_UNSUPPORTED),
	BAD("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", HTTP_E_VERSION_UNSUPPORTED),
	BAD("HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", HTTP_E_VERSION_UNSUPPORTED),
	BAD("no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", HTTP_E_HOST),
	BAD("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", HTTP_E_HOST),
	BAD("two Hosts in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", HTTP_E_HOST),
	BAD("Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", HTTP_E_HOST),
	BAD("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", HTTP_E_HOST),
	BAD("Host with a bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", HTTP_E_HOST),
	BAD("Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", HTTP_E_HOST),
	BAD("Host with a bad %", "GET / HTTP/1.1\r\nHost: a%2\r\n\r\n", HTTP_E_HOST),
	BAD("CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_E_CL_AND_TE),
	BAD("TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", HTTP_E_CL_AND_TE),
	BAD("TE: chunked, identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", HTTP_E_TE_FRAMING),
	BAD("TE: identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", HTTP_E_TE_FRAMING),
	BAD("TE: gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", HTTP_E_TE_FRAMING),
	BAD("TE: chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_E_TE_FRAMING),
	BAD("TE: empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", HTTP_E_TE_FRAMING),
	BAD("TE: chunked with a parameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;a=b\r\n\r\n", HTTP_E_TE_FRAMING),
	BAD("TE: \"chunked\"", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", HTTP_E_TE_FRAMING),
	BAD("TE: chunked in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_E_TE_FRAMING),
	BAD("TE: gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HTTP_E_TE_UNKNOWN),
	BAD("TE: x;q=\"a,b\", chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x;q=\"a,b\" , chunked\r\n\r\n", HTTP_E_TE_UNKNOWN),
	BAD("TE: unterminated quote", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x;q=\"a, chunked\r\n\r\n", HTTP_E_TE_FRAMING),
	BAD("TE: chunk", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunk\r\n\r\n", HTTP_E_TE_FRAMING),
	BAD("CL: +5", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", HTTP_E_CONTENT_LENGTH),
	BAD("CL: -5", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", HTTP_E_CONTENT_LENGTH),
	BAD("CL: 0x5", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", HTTP_E_CONTENT_LENGTH),
	BAD("CL: 5 5", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", HTTP_E_CONTENT_LENGTH),
	BAD("CL: 5, 6", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", HTTP_E_CONTENT_LENGTH),
	BAD("CL: 5,,5", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,,5\r\n\r\n", HTTP_E_CONTENT_LENGTH),
	BAD("CL: 5,", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", HTTP_E_CONTENT_LENGTH),
	BAD("CL: empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", HTTP_E_CONTENT_LENGTH),
	BAD("CL: 2^64", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", HTTP_E_CONTENT_LENGTH),
	BAD("CL: 5 then 6", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", HTTP_E_CONTENT_LENGTH),
	BAD("CL: 5.0", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n", HTTP_E_CONTENT_LENGTH),
	BADR("response: HTTP/1.1 200OK", "HTTP/1.1 200OK\r\n\r\n", HTTP_E_STATUS),
	BADR("response: status 600", "HTTP/1.1 600 X\r\n\r\n", HTTP_E_STATUS),
	BADR("response: status 99", "HTTP/1.1 99 X\r\n\r\n", HTTP_E_STATUS),
	BADR("response: status 2000", "HTTP/1.1 2000 X\r\n\r\n", HTTP_E_STATUS),
	BADR("response: ICY", "ICY 200 OK\r\n\r\n", HTTP_E_STATUS),
	BADR("response: HTTP/2", "HTTP/2.0 200 OK\r\n\r\n", HTTP_E_VERSION_UNSUPPORTED),
	BADR("response: bare LF", "HTTP/1.1 200 OK\n\r\n", HTTP_E_CRLF),
	BADR("response: CTL in the reason", "HTTP/1.1 200 O\x01K\r\n\r\n", HTTP_E_STATUS),
	BADR("response: CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_E_CL_AND_TE),
	BADR("response: TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_E_TE_FRAMING),
	BADR("response: obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\n\r\n", HTTP_E_OBS_FOLD),
	BADR("response: leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n", HTTP_E_STATUS),
};

static void test_bad(void)
{
	struct http_head h;
	for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
		const struct bad *b = &bads[i];
		int r = b->response ? resp(b->msg, b->len, &h) : req(b->msg, b->len, &h);
		if (!ok(r == b->err, "rejected: %s (%d %s)", b->what, http_status_of(b->err),
		        http_strerror(b->err)))
			printf("#   got %d (%s)\n", r, r < 0 ? http_strerror(r) : "");
	}
}

static void test_forms(void)
{
	static const char *good[] = {
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://a.b/c?d HTTP/1.1\r\nHost: a.b\r\n\r\n",
		"GET svn+ssh://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost:\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a%2Db.example:\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n",
		"GET /%7e!$&'()*+,;=:@[]|^`{}\"<>\\ HTTP/1.1\r\nHost: a\r\n\r\n",
		"PROPFIND * HTTP/1.1\r\nHost: a\r\n\r\n" /* not OPTIONS: refused */,
	};
	struct http_head h;
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		int r = req(good[i], strlen(good[i]), &h);
		int want = i == sizeof good / sizeof *good - 1 ? HTTP_E_TARGET : (int)strlen(good[i]);
		if (!ok(r == want, "request-target form %zu", i))
			printf("#   got %d (%s)\n", r, r < 0 ? http_strerror(r) : "");
	}
}

static void test_limits(void)
{
	struct http_head h;
	struct http_limits lim = { 64, 3, 16, 8 };
	char buf[4096];
	h.fields = fields;

	static const char three[] = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
	is(http_parse_request(S(three), &h, &lim), sizeof three - 1, "max_fields fields");
	static const char four[] = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
	is(http_parse_request(S(four), &h, &lim), HTTP_E_TOO_MANY_FIELDS, "one more: 431");
	ok(http_status_of(HTTP_E_TOO_MANY_FIELDS) == 431, "... 431");

	int n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: a\r\nX: %0*d\r\n\r\n", 64 - 32, 0);
	is(n, 64, "(a head of 64 bytes)");
	is(http_parse_request(buf, n, &h, &lim), 64, "a head of max_head bytes");
	is(http_parse_request(buf, n - 1, &h, &lim), 0, "its prefix: more");
	memset(buf + n - 4, 'x', 4);
	is(http_parse_request(buf, n, &h, &lim), HTTP_E_HEAD_TOO_LARGE, "max_head bytes and no end: 431");
	is(http_parse_request(buf, n - 1, &h, &lim), 0, "one less: more");

	static const char t16[] = "GET /234567890123456 HTTP/1.1\r\nHost: a\r\n\r\n";
	ok(http_parse_request(S(t16), &h, &lim) > 0, "a target of max_target bytes");
	static const char t17[] = "GET /2345678901234567";
	is(http_parse_request(S(t17), &h, &lim), HTTP_E_TARGET_TOO_LONG, "one more, even unfinished: 414");
	is(http_parse_request(S(t17) - 1, &h, &lim), 0, "one less: more");
}

static void test_pipeline(void)
{
	static const char m[] =
		"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
		"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
		"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
		"HEAD /4 HTTP/1.0\r\n\r\n";
	char buf[sizeof m];
	struct http_head h;
	struct http_chunked st;
	size_t off = 0, used, dec;
	int n;
	memcpy(buf, m, sizeof m);

	n = req(buf, sizeof m - 1, &h);
	ok(n > 0 && span_is(buf, h.target, h.target_len, "/1") && h.body == HTTP_BODY_NONE, "pipelined 1");
	off += n;
	n = req(buf + off, sizeof m - 1 - off, &h);
	ok(n > 0 && span_is(buf + off, h.target, h.target_len, "/2") && h.content_length == 4, "pipelined 2");
	off += n + 4;
	n = req(buf + off, sizeof m - 1 - off, &h);
	ok(n > 0 && span_is(buf + off, h.target, h.target_len, "/3") && h.body == HTTP_BODY_CHUNKED, "pipelined 3");
	off += n;
	http_chunked_init(&st, NULL);
	n = http_chunked_decode(&st, buf + off, sizeof m - 1 - off, &used, &dec);
	ok(n == 1 && dec == 3 && !memcmp(buf + off, "abc", 3), "its chunked body");
	off += used;
	n = req(buf + off, sizeof m - 1 - off, &h);
	ok(n > 0 && span_is(buf + off, h.method, h.method_len, "HEAD") && h.minor == 0, "pipelined 4");
	is(off + n, sizeof m - 1, "the buffer read to its end");
}

static void test_errors(void)
{
	int seen[600] = { 0 };
	for (int e = -1; http_status_of(e) != 500; e--) {
		seen[http_status_of(e)]++;
		if (!http_strerror(e)[0] || !strcmp(http_strerror(e), "no error"))
			ok(0, "error %d has a reason", e);
	}
	ok(seen[400] && seen[414] && seen[431] && seen[501] && seen[505] && !seen[413],
	   "errors map to 400, 414, 431, 501, 505");
	is(http_status_of(0), 500, "0 is no error");
	ok(!strcmp(http_strerror(5), "no error"), "nor is a length");
}

/* ---- chunked ---- */

static void test_chunked(void)
{
	char out[256];
	size_t n, used;
	int r;
	struct http_limits lim = { 40, 2, 16, 100 };

#define CH(body, want_r, want_data, name) do { \
	r = chunked(S(body), NULL, out, &n, &used); \
	if (!ok(r == (want_r) && (r != 1 || (n == sizeof want_data - 1 && !memcmp(out, want_data, n))), \
	        "chunked: %s", name)) \
		printf("#   got %d (%s), %zu bytes\n", r, r < 0 ? http_strerror(r) : "", n); \
} while (0)
	CH("5\r\nhello\r\n0\r\n\r\n", 1, "hello", "one chunk");
	CH("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 1, "hello world", "two chunks");
	CH("0\r\n\r\n", 1, "", "empty");
	CH("A\r\n0123456789\r\na\r\n0123456789\r\n000\r\n\r\n", 1, "01234567890123456789", "hex in either case, zeros");
	CH("00000000000000000000003\r\nabc\r\n0\r\n\r\n", 1, "abc", "leading zeros");
	CH("3;a\r\nabc\r\n0;b=c\r\n\r\n", 1, "abc", "extensions");
	CH("3 ; a = \"x;\\\"y\" ;b\t;c=d\r\nabc\r\n0\r\n\r\n", 1, "abc", "extensions with BWS and quotes");
	CH("3\r\nabc\r\n0\r\nX-Sum: 1\r\nY:\r\n\r\n", 1, "abc", "trailers");
	CH("3\r\na\r\n\r\n0\r\n\r\n", 1, "a\r\n", "CRLF in data");
	CH("5\r\nhel", 0, "", "incomplete data");
	CH("5 \r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_EXT, "", "space after the size");
	CH("5\t\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_EXT, "", "tab after the size");
	CH(" 5\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SIZE, "", "space before the size");
	CH("0x5\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SIZE, "", "0x");
	CH("+5\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SIZE, "", "a sign");
	CH("5g\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SIZE, "", "junk after the size");
	CH("\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SIZE, "", "no size");
	CH("10000000000000000\r\n", HTTP_E_CHUNK_SIZE, "", "2^64: overflow");
	CH("ffffffffffffffff\r\nabc", 0, "abc", "2^64 - 1: valid, then incomplete");
	CH("5\nhello\r\n0\r\n\r\n", HTTP_E_CRLF, "", "bare LF after the size");
	CH("5\rhello\r\n0\r\n\r\n", HTTP_E_CRLF, "", "bare CR after the size");
	CH("5;a\nhello\r\n0\r\n\r\n", HTTP_E_CRLF, "", "bare LF after an extension");
	CH("5\r\nhelloX\r\n0\r\n\r\n", HTTP_E_CHUNK_DATA, "", "data longer than its size");
	CH("5\r\nhello\n0\r\n\r\n", HTTP_E_CHUNK_DATA, "", "bare LF after data");
	CH("5\r\nhello\rX0\r\n\r\n", HTTP_E_CHUNK_DATA, "", "bare CR after data");
	CH("5;\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_EXT, "", "';' alone");
	CH("5;a=\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_EXT, "", "no value after '='");
	CH("5;a \r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_EXT, "", "space after a name");
	CH("5;a=b \r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_EXT, "", "space after a value");
	CH("5;a=\"b\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_EXT, "", "unterminated quote");
	CH("5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_EXT, "", "CTL in a quoted value");
	CH("5;a@b\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_EXT, "", "'@' in a name");
	CH("5;a=b\"c\"\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_EXT, "", "a quote in a token");
	CH("0\r\nX : 1\r\n\r\n", HTTP_E_FIELD_SPACE, "", "trailer: space before the colon");
	CH("0\r\nX: 1\r\n 2\r\n\r\n", HTTP_E_OBS_FOLD, "", "trailer: obs-fold");
	CH("0\r\nX: a\rb\r\n\r\n", HTTP_E_CRLF, "", "trailer: bare CR");
	CH("0\r\nX: a\n\r\n", HTTP_E_CRLF, "", "trailer: bare LF");
	CH("0\r\n\n", HTTP_E_CRLF, "", "bare LF as the last line");
	CH("0\r\n\rX", HTTP_E_CRLF, "", "bare CR as the last line");
	CH("0\r\nX: \0\r\n\r\n", HTTP_E_FIELD_VALUE, "", "trailer: NUL");
	CH("0\r\nX\r\n\r\n", HTTP_E_FIELD_NAME, "", "trailer: no colon");

	static const char longext[] = "1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
	r = chunked(S(longext), &lim, out, &n, &used);
	is(r, HTTP_E_CHUNK_LINE, "chunked: a size line over max_chunk_line");
	static const char trailers3[] = "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
	is(chunked(S(trailers3), &lim, out, &n, &used), HTTP_E_TOO_MANY_FIELDS, "chunked: too many trailer fields");
	static const char trailers2[] = "0\r\nA: 1\r\nB: 2\r\n\r\n";
	is(chunked(S(trailers2), &lim, out, &n, &used), 1, "chunked: max_fields trailer fields");
	static const char tbig[] = "0\r\nA: 0123456789012345678901234567890123456789\r\n\r\n";
	is(chunked(S(tbig), &lim, out, &n, &used), HTTP_E_TRAILER_TOO_LARGE, "chunked: trailer section over max_head");

	/* the end, then the next message; done stays done, errors stay */
	struct http_chunked st;
	char b2[] = "3\r\nabc\r\n0\r\n\r\nGET";
	size_t dec;
	http_chunked_init(&st, NULL);
	r = http_chunked_decode(&st, b2, sizeof b2 - 1, &used, &dec);
	ok(r == 1 && used == sizeof b2 - 4 && dec == 3, "chunked: stops at the message's end");
	r = http_chunked_decode(&st, b2 + used, 3, &used, &dec);
	ok(r == 1 && used == 0 && dec == 0, "chunked: done stays done");
	char b3[] = "3\r\nabcX";
	http_chunked_init(&st, NULL);
	r = http_chunked_decode(&st, b3, sizeof b3 - 1, &used, &dec);
	ok(r == HTTP_E_CHUNK_DATA && used == 6 && dec == 3, "chunked: an error says where");
	r = http_chunked_decode(&st, b3, 1, &used, &dec);
	ok(r == HTTP_E_CHUNK_DATA && used == 0, "chunked: errors stay");
}

/* ---- benchmark ---- */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void bench(void)
{
	static const char m[] =
		"GET /find?q=lem&lang=en HTTP/1.1\r\n"
		"Host: www.example.com\r\n"
		"Accept-Language: en-GB,en;q=0.8,fr;q=0.5,de;q=0.3,*;q=0.1\r\n"
		"Accept: text/html,application/xhtml+xml\r\n"
		"Accept-Encoding: gzip, deflate\r\n"
		"Connection: keep-alive\r\n"
		"\r\n";
	struct http_head h;
	int n = 0, iters = 200000;
	double best = 1e9;
	for (int round = 0; round < 3; round++) {
		double t = now();
		for (int i = 0; i < iters; i++) {
			n += req(m, sizeof m - 1, &h);
			__asm__ __volatile__("" ::: "memory");
		}
		t = (now() - t) / iters;
		if (t < best)
			best = t;
	}
	ok(n == 3 * iters * (int)(sizeof m - 1), "benchmark request parses");
	printf("# %.0f ns per parse of a %zu-byte request (%.2f ns/byte)\n",
	       best * 1e9, sizeof m - 1, best * 1e9 / (sizeof m - 1));

	/* decoding moves the data in place: each round decodes a fresh copy */
	static char body[65536 + 64], copy[sizeof body];
	int off = 0;
	for (int c = 0; c < 4; c++) {
		off += sprintf(body + off, "4000\r\n");
		memset(body + off, 'x', 0x4000);
		off += 0x4000;
		off += sprintf(body + off, "\r\n");
	}
	off += sprintf(body + off, "0\r\n\r\n");
	struct http_chunked st;
	size_t used, dec = 0, total = 0;
	double t = now();
	for (int i = 0; i < 2000; i++) {
		memcpy(copy, body, off);
		http_chunked_init(&st, NULL);
		http_chunked_decode(&st, copy, off, &used, &dec);
		total += dec;
	}
	t = (now() - t) / 2000;
	ok(total == 2000 * 0x10000, "benchmark chunked body decodes");
	printf("# chunked: %.1f us per 64 KiB body in 16 KiB chunks, a copy of it included\n", t * 1e6);
}

/* ---- the corpus ---- */

struct buf { char *p; size_t n, cap; };

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

/* Decodes the escapes of [s, e) into b; returns where it stopped: e, or an unescaped '}'
 * when inner. NULL on a bad escape. */
static const char *unescape(const char *s, const char *e, struct buf *b, int inner)
{
	while (s < e) {
		char c = *s++;
		if (c == '\n' || c == '\r')
			continue;
		if (c == '}' && inner)
			return s - 1;
		if (c != '\\') {
			put(b, &c, 1);
			continue;
		}
		if (s == e)
			return NULL;
		switch (c = *s++) {
		case 'r': put(b, "\r", 1); break;
		case 'n': put(b, "\n", 1); break;
		case 't': put(b, "\t", 1); break;
		case '0': put(b, "", 1); break;
		case 's': put(b, " ", 1); break;
		case '\\': case '}': put(b, &c, 1); break;
		case 'x': {
			char hex[3] = { 0 }, *end;
			if (e - s < 2)
				return NULL;
			memcpy(hex, s, 2);
			c = (char)strtol(hex, &end, 16);
			if (*end)
				return NULL;
			put(b, &c, 1);
			s += 2;
			break;
		}
		case '{': {
			char *end;
			long n = strtol(s, &end, 10);
			struct buf one = { 0 };
			if (*end != ':' || n < 0)
				return NULL;
			s = unescape(end + 1, e, &one, 1);
			if (!s || s == e)
				return NULL;
			s++;
			for (long i = 0; i < n; i++)
				put(b, one.p, one.n);
			free(one.p);
			break;
		}
		default:
			return NULL;
		}
	}
	return inner ? NULL : s;
}

struct kase {
	char kind[16], expect[16], body[32], keepalive[8], flags[128], limits[128];
	int messages, status, has_data;
	struct buf data, msg;
};

static int load(const char *path, struct kase *k)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	struct buf text = { 0 };
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		put(&text, chunk, n);
	fclose(f);
	put(&text, "", 1);

	memset(k, 0, sizeof *k);
	k->messages = 1;
	char *line = text.p, *nl;
	int r = -1;
	for (; (nl = strchr(line, '\n')); line = nl + 1) {
		*nl = 0;
		if (!strcmp(line, "--")) {
			const char *e = text.p + text.n - 1;
			r = unescape(nl + 1, e, &k->msg, 0) ? 0 : -1;
			break;
		}
		if (line[0] == '#' || !line[0])
			continue;
		char *v = strchr(line, ':');
		if (!v)
			break;
		*v++ = 0;
		while (*v == ' ')
			v++;
		if (!strcmp(line, "kind")) snprintf(k->kind, sizeof k->kind, "%s", v);
		else if (!strcmp(line, "expect")) snprintf(k->expect, sizeof k->expect, "%s", v);
		else if (!strcmp(line, "body")) snprintf(k->body, sizeof k->body, "%s", v);
		else if (!strcmp(line, "keep-alive")) snprintf(k->keepalive, sizeof k->keepalive, "%s", v);
		else if (!strcmp(line, "flags")) snprintf(k->flags, sizeof k->flags, "%s", v);
		else if (!strcmp(line, "limits")) snprintf(k->limits, sizeof k->limits, "%s", v);
		else if (!strcmp(line, "messages")) k->messages = atoi(v);
		else if (!strcmp(line, "status")) k->status = atoi(v);
		else if (!strcmp(line, "data")) {
			k->has_data = 1;
			if (!unescape(v, v + strlen(v), &k->data, 0))
				break;
		} else
			break;
	}
	free(text.p);
	return r;
}

static void limits_of(const char *s, struct http_limits *lim)
{
	*lim = http_limits_default;
	for (;;) {
		char key[16];
		unsigned v;
		int n;
		if (sscanf(s, " %15[a-z-]=%u%n", key, &v, &n) != 2)
			return;
		s += n;
		if (!strcmp(key, "head")) lim->max_head = v;
		else if (!strcmp(key, "fields")) lim->max_fields = v < MAXF ? v : MAXF;
		else if (!strcmp(key, "target")) lim->max_target = v;
		else if (!strcmp(key, "chunk-line")) lim->max_chunk_line = v;
	}
}

static const char *body_name(enum http_body b)
{
	static const char *names[] = { "none", "length", "chunked", "close" };
	return names[b];
}

static const struct { const char *name; unsigned flag; } flag_names[] = {
	{ "conn-close", HTTP_CONN_CLOSE }, { "conn-keep-alive", HTTP_CONN_KEEP_ALIVE },
	{ "conn-upgrade", HTTP_CONN_UPGRADE }, { "upgrade", HTTP_UPGRADE },
	{ "expect-continue", HTTP_EXPECT_CONTINUE }, { "keep-alive", HTTP_KEEP_ALIVE },
};

/* Reads the messages of a request or response case back to back; the outcome as the
 * corpus writes it, the first head in first. */
static void run_heads(struct kase *k, const struct http_limits *lim, char *out, size_t outsz,
                      struct http_head *first, int *nmsg, int *first_len)
{
	int response = !strcmp(k->kind, "response");
	char *b = k->msg.p;
	size_t len = k->msg.n, off = 0;
	int r = 0;
	*nmsg = 0;
	while (off < len) {
		struct http_head h;
		h.fields = fields;
		r = response ? http_parse_response(b + off, len - off, &h, lim)
		             : http_parse_request(b + off, len - off, &h, lim);
		if (r <= 0)
			break;
		if (!(*nmsg)++) {
			*first = h;
			*first_len = r;
		}
		off += r;
		if (h.body == HTTP_BODY_LENGTH) {
			if (len - off < h.content_length) {
				r = 0;
				break;
			}
			off += h.content_length;
		} else if (h.body == HTTP_BODY_CHUNKED) {
			struct http_chunked st;
			size_t used, dec;
			http_chunked_init(&st, lim);
			r = http_chunked_decode(&st, b + off, len - off, &used, &dec);
			if (r <= 0)
				break;
			off += used;
		} else if (h.body == HTTP_BODY_CLOSE) {
			off = len;
		}
	}
	if (r < 0)
		snprintf(out, outsz, "%d", http_status_of(r));
	else
		snprintf(out, outsz, "%s", r > 0 && off == len ? "complete" : "incomplete");
}

static void run_case(const char *dir, const char *name)
{
	char path[4096], got[32];
	struct kase k;
	struct http_limits lim;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (load(path, &k)) {
		ok(0, "corpus %s: readable", name);
		return;
	}
	limits_of(k.limits, &lim);

	if (!strcmp(k.kind, "chunked")) {
		char *out = malloc(k.msg.n + 1);
		size_t n, used;
		int r = chunked(k.msg.p, k.msg.n, &lim, out, &n, &used);
		snprintf(got, sizeof got, "%s", r == 1 && used == k.msg.n ? "complete"
		         : r == 1 ? "trailing data" : r == 0 ? "incomplete" : r == -1000 ? "inconsistent" : "");
		if (r < 0 && r != -1000)
			snprintf(got, sizeof got, "%d", http_status_of(r));
		int pass = !strcmp(got, k.expect);
		if (pass && k.has_data)
			pass = n == k.data.n && !memcmp(out, k.data.p, n);
		if (!ok(pass, "corpus %s: %s", name, k.expect))
			printf("#   got %s (%s), %zu bytes decoded\n", got, r < 0 ? http_strerror(r) : "", n);
		free(out);
	} else if (!strcmp(k.kind, "request") || !strcmp(k.kind, "response")) {
		struct http_head h = { 0 };
		int nmsg, first_len = 0, pass;
		run_heads(&k, &lim, got, sizeof got, &h, &nmsg, &first_len);
		pass = !strcmp(got, k.expect);
		if (pass && !strcmp(got, "complete")) {
			char body[32];
			if (h.body == HTTP_BODY_LENGTH)
				snprintf(body, sizeof body, "length %llu", (unsigned long long)h.content_length);
			else
				snprintf(body, sizeof body, "%s", body_name(h.body));
			if (nmsg != k.messages)
				pass = 0, printf("#   %d messages\n", nmsg);
			if (k.body[0] && strcmp(body, k.body))
				pass = 0, printf("#   body: %s\n", body);
			if (k.status && h.status != k.status)
				pass = 0, printf("#   status %d\n", h.status);
			if (k.keepalive[0] && !!(h.flags & HTTP_KEEP_ALIVE) != !strcmp(k.keepalive, "yes"))
				pass = 0, printf("#   keep-alive: %s\n", h.flags & HTTP_KEEP_ALIVE ? "yes" : "no");
			for (size_t i = 0; i < sizeof flag_names / sizeof *flag_names; i++)
				if (strstr(k.flags, flag_names[i].name) && !(h.flags & flag_names[i].flag))
					pass = 0, printf("#   flag %s not set\n", flag_names[i].name);
			if (first_len < 4096
			    && !prefixes_wait(k.msg.p, first_len, !strcmp(k.kind, "response"), &lim))
				pass = 0;
		}
		if (!ok(pass, "corpus %s: %s", name, k.expect))
			printf("#   got %s\n", got);
	} else {
		ok(0, "corpus %s: kind '%s'", name, k.kind);
	}
	free(k.msg.p);
	free(k.data.p);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The corpus' file names, sorted; NULL-terminated. */
static char **listdir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	if (!d)
		return NULL;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		names = realloc(names, (n + 2) * sizeof *names);
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	if (!names)
		return calloc(1, sizeof *names);
	names[n] = NULL;
	qsort(names, n, sizeof *names, by_name);
	return names;
}

static void write_seed(const char *dir, const char *sub, const char *name, int mode,
                       const char *p, size_t n)
{
	char path[4096];
	if (n > 16384)   /* the fuzzers' max_len */
		return;
	snprintf(path, sizeof path, "%s/%s", dir, sub);
	mkdir(path, 0777);
	snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		exit(1);
	}
	fputc(mode, f);
	fwrite(p, 1, n, f);
	fclose(f);
}

/* The corpus as the fuzzers' seeds: fuzz/head.c reads a mode octet (bit 0: response) and a
 * head; fuzz/chunked.c a mode octet and a chunked body. */
static int seeds(const char *out, const char *dir)
{
	char **names = listdir(dir);
	if (!names || (mkdir(out, 0777) && errno != EEXIST)) {
		perror(out);
		return 1;
	}
	for (char **np = names; *np; np++) {
		char path[4096];
		struct kase k;
		snprintf(path, sizeof path, "%s/%s", dir, *np);
		if (load(path, &k))
			continue;
		if (!strcmp(k.kind, "chunked")) {
			write_seed(out, "chunked", *np, 0, k.msg.p, k.msg.n);
		} else {
			int response = !strcmp(k.kind, "response");
			struct http_head h;
			h.fields = fields;
			write_seed(out, "head", *np, response, k.msg.p, k.msg.n);
			int r = response ? http_parse_response(k.msg.p, k.msg.n, &h, NULL)
			                 : http_parse_request(k.msg.p, k.msg.n, &h, NULL);
			if (r > 0 && h.body == HTTP_BODY_CHUNKED)
				write_seed(out, "chunked", *np, 0, k.msg.p + r, k.msg.n - r);
		}
		free(k.msg.p);
		free(k.data.p);
		free(*np);
	}
	free(names);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--seeds"))
		return seeds(argv[2], argv[3]);
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR | --seeds OUT CORPUS_DIR\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_request();
	test_response();
	test_bad();
	test_forms();
	test_limits();
	test_pipeline();
	test_errors();
	test_chunked();

	char **names = listdir(argv[1]);
	ok(names && names[0], "the corpus %s has cases", argv[1]);
	for (char **np = names; np && *np; np++) {
		run_case(argv[1], *np);
		free(*np);
	}
	free(names);

	bench();
	printf("1..%d\n", count);
	return failed != 0;
}
