/* head.c: libFuzzer target for the HTTP head parser (src/modules/http/parser.c).
 * Input: a mode octet, then the bytes to parse. Mode bit 0 picks the response parser,
 * bits 1-2 a set of limits (small ones reach the limit paths with short inputs), bits 3-7
 * where to cut a prefix. Besides memory errors (ASan) and undefined behaviour (UBSan), it
 * checks what the API promises:
 *   - a head's length is within the input, every span within the head;
 *   - an accepted head holds CRLF line ends only, token names, and values of visible,
 *     obs-text, SP and HTAB octets: checked octet by octet here, against the parser's
 *     word-at-a-time scanning;
 *   - every proper prefix of a complete head asks for more (0), never fails;
 *   - bytes appended after a complete head or an error change nothing: the parser decides
 *     on what it has read, never on what follows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parser.h"

static const struct http_limits limits[4] = {
	{ 16384, 100, 8192, 1024 },
	{ 64, 4, 16, 8 },
	{ 512, 16, 64, 32 },
	{ 16384, 2, 8192, 1024 },
};

static struct http_field fields[2][100];

static int parse(int response, const char *p, size_t n, struct http_head *h,
                 const struct http_limits *lim, int which)
{
	h->fields = fields[which];
	return response ? http_parse_response(p, n, h, lim) : http_parse_request(p, n, h, lim);
}

static void within(uint32_t off, uint32_t len, int n)
{
	if ((uint64_t)off + len > (uint64_t)n)
		abort();
}

static int tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
	       || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int vchar(unsigned char c)
{
	return c == '\t' || (c >= ' ' && c != 0x7f);
}

static void check_octets(const unsigned char *p, int n, const struct http_head *h, int response)
{
	for (int i = 0; i < n; i++)
		if ((p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n'))
		    || (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')))
			abort();
	if (n < 4 || memcmp(p + n - 4, "\r\n\r\n", 4))
		abort();
	for (uint32_t i = 0; i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];
		for (uint32_t k = 0; k < f->name_len; k++)
			if (!tchar(p[f->name + k]))
				abort();
		if (p[f->name + f->name_len] != ':')
			abort();
		for (uint32_t k = 0; k < f->value_len; k++)
			if (!vchar(p[f->value + k]))
				abort();
		if (f->value_len && (p[f->value] == ' ' || p[f->value] == '\t'
		                     || p[f->value + f->value_len - 1] == ' '
		                     || p[f->value + f->value_len - 1] == '\t'))
			abort();
		if (p[f->value + f->value_len] != '\r' && p[f->value + f->value_len] != ' '
		    && p[f->value + f->value_len] != '\t')
			abort();
	}
	if (!response) {
		for (uint32_t k = 0; k < h->method_len; k++)
			if (!tchar(p[h->method + k]))
				abort();
		for (uint32_t k = 0; k < h->target_len; k++)
			if (p[h->target + k] <= ' ' || p[h->target + k] >= 0x7f)
				abort();
	} else {
		for (uint32_t k = 0; k < h->reason_len; k++)
			if (!vchar(p[h->reason + k]))
				abort();
	}
}

static int same(const struct http_head *a, const struct http_head *b)
{
	if (a->nfields != b->nfields || a->method != b->method || a->method_len != b->method_len
	    || a->target != b->target || a->target_len != b->target_len || a->status != b->status
	    || a->reason != b->reason || a->reason_len != b->reason_len || a->minor != b->minor
	    || a->body != b->body || a->content_length != b->content_length || a->flags != b->flags)
		return 0;
	return !memcmp(a->fields, b->fields, a->nfields * sizeof *a->fields);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned mode = data[0];
	int response = mode & 1;
	const struct http_limits *lim = &limits[(mode >> 1) & 3];
	size_t n = size - 1;
	/* copies of exactly the input's size, so that ASan sees any read past it */
	char *buf = malloc(n ? n : 1), *more = malloc(n + 4);
	struct http_head h, h2;
	memcpy(buf, data + 1, n);
	memcpy(more, data + 1, n);
	memcpy(more + n, "\r\n\r\n", 4);

	int r = parse(response, buf, n, &h, lim, 0);
	if (r > (int)n || (r > 0 && (size_t)r > lim->max_head))
		abort();
	if (r < 0 && (!http_strerror(r)[0] || http_status_of(r) == 500))
		abort();
	if (r > 0) {
		if (h.nfields > lim->max_fields || h.minor < 0 || h.minor > 1)
			abort();
		for (uint32_t i = 0; i < h.nfields; i++) {
			within(h.fields[i].name, h.fields[i].name_len, r);
			within(h.fields[i].value, h.fields[i].value_len, r);
			if (!h.fields[i].name_len)
				abort();
		}
		if (response) {
			within(h.reason, h.reason_len, r);
			if (h.status < 100 || h.status > 599)
				abort();
		} else {
			within(h.method, h.method_len, r);
			within(h.target, h.target_len, r);
			if (!h.method_len || !h.target_len || h.target_len > lim->max_target)
				abort();
		}
		check_octets((const unsigned char *)buf, r, &h, response);
		if (h.body == HTTP_BODY_LENGTH && !h.content_length)
			abort();
		if (h.body == HTTP_BODY_CLOSE && (!response || (h.flags & HTTP_KEEP_ALIVE)))
			abort();
		if (parse(response, buf, r - 1, &h2, lim, 1) != 0)
			abort();
		size_t cut = (size_t)(mode >> 3) * r / 32;
		if (parse(response, buf, cut, &h2, lim, 1) != 0)
			abort();
		if (parse(response, buf, r, &h2, lim, 1) != r || !same(&h, &h2))
			abort();
	}
	if (r != 0) {
		int r2 = parse(response, more, n + 4, &h2, lim, 1);
		if (r2 != r || (r > 0 && !same(&h, &h2)))
			abort();
	}
	free(buf);
	free(more);
	return 0;
}
