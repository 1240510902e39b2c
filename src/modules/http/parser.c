/* parser.c: a strict HTTP/1.1 message-head parser and chunked-body decoder (RFC 9112).
 * The rules and their sections are listed in parser.h. */
#include <limits.h>
#include <string.h>

#include "parser.h"

typedef unsigned char u8;

const struct http_limits http_limits_default = { 16384, 100, 8192, 1024 };

/* ---- character classes ---- */

enum {
	T = 1,   /* tchar (RFC 9110 5.6.2) */
	V = 2,   /* a field value's octet: field-vchar, SP, HTAB (RFC 9110 5.5) */
	U = 4,   /* a request-target's octet: visible ASCII */
	R = 8,   /* reg-name: unreserved / sub-delims (RFC 3986) */
	X = 16   /* HEXDIG */
};
#define TK (T | V | U)
#define VS (V | U)

static const u8 cls[256] = {
	['\t'] = V, [' '] = V,
	['!'] = TK | R, ['"'] = VS, ['#'] = TK, ['$'] = TK | R, ['%'] = TK, ['&'] = TK | R,
	['\''] = TK | R, ['('] = VS | R, [')'] = VS | R, ['*'] = TK | R, ['+'] = TK | R,
	[','] = VS | R, ['-'] = TK | R, ['.'] = TK | R, ['/'] = VS,
	['0' ... '9'] = TK | R | X,
	[':'] = VS, [';'] = VS | R, ['<'] = VS, ['='] = VS | R, ['>'] = VS, ['?'] = VS, ['@'] = VS,
	['A' ... 'F'] = TK | R | X, ['G' ... 'Z'] = TK | R,
	['['] = VS, ['\\'] = VS, [']'] = VS, ['^'] = TK, ['_'] = TK | R, ['`'] = TK,
	['a' ... 'f'] = TK | R | X, ['g' ... 'z'] = TK | R,
	['{'] = VS, ['|'] = TK, ['}'] = VS, ['~'] = TK | R,
	[0x80 ... 0xff] = V,
};

static int is_ws(u8 c) { return c == ' ' || c == '\t'; }
static int is_digit(u8 c) { return c >= '0' && c <= '9'; }
static int is_alpha(u8 c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int hexval(u8 c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

/* Case-insensitive compare with a lowercase literal of letters and '-'. On token octets
 * c | 0x20 is a lowercase letter only for that letter in either case, and '-' stays '-'. */
static int ieq(const u8 *s, const char *lit, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((s[i] | 0x20) != (u8)lit[i])
			return 0;
	return 1;
}

/* ---- scanning eight octets at a time ---- */

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Nonzero when some octet of x is below n (n <= 128): exact as a whole, though which octet
 * it flags may be wrong after the first; only the whole is used. */
static uint64_t has_below(uint64_t x, u8 n) { return (x - ONES * n) & ~x & HIGHS; }
static uint64_t has_byte(uint64_t x, u8 c) { return has_below(x ^ (ONES * c), 1); }

/* The first octet in [p, end) that cannot be in a field value (or a reason-phrase): a CR
 * most of the time. Whole words of visible text or obs-text are skipped at once; a word
 * with a control character, HTAB included, is looked at octet by octet. */
static const u8 *scan_value(const u8 *p, const u8 *end)
{
	for (;;) {
		while (end - p >= 8) {
			uint64_t x;
			memcpy(&x, p, 8);
			if (has_below(x, 0x20) | has_byte(x, 0x7f))
				break;
			p += 8;
		}
		const u8 *stop = end - p >= 8 ? p + 8 : end;
		for (; p < stop; p++)
			if (!(cls[*p] & V))
				return p;
		if (p == end)
			return end;
	}
}

/* The first octet in [p, end) that cannot be in a request-target. */
static const u8 *scan_target(const u8 *p, const u8 *end)
{
	while (end - p >= 8) {
		uint64_t x;
		memcpy(&x, p, 8);
		if (has_below(x, 0x21) | (x & HIGHS) | has_byte(x, 0x7f))
			break;
		p += 8;
	}
	while (p < end && (cls[*p] & U))
		p++;
	return p;
}

/* ---- values of the fields that frame the message ---- */

struct framing {
	uint64_t length;
	unsigned hosts, length_seen, te, te_chunked, te_last_chunked, te_other, upgrade, expect;
	unsigned flags;
};

/* Content-Length = 1*DIGIT, or a list of the same value (RFC 9110 8.6). */
static int content_length(const u8 *p, const u8 *e, struct framing *f)
{
	for (;;) {
		const u8 *s = p;
		uint64_t v = 0;
		for (; p < e && is_digit(*p); p++) {
			unsigned d = *p - '0';
			if (v > (UINT64_MAX - d) / 10)
				return HTTP_E_CONTENT_LENGTH;
			v = v * 10 + d;
		}
		if (p == s || (f->length_seen && v != f->length))
			return HTTP_E_CONTENT_LENGTH;
		f->length = v;
		f->length_seen = 1;
		while (p < e && is_ws(*p))
			p++;
		if (p == e)
			return 0;
		if (*p++ != ',')
			return HTTP_E_CONTENT_LENGTH;
		while (p < e && is_ws(*p))
			p++;
	}
}

static const u8 *skip_token(const u8 *p, const u8 *e)
{
	while (p < e && (cls[*p] & T))
		p++;
	return p;
}

static const u8 *skip_ws(const u8 *p, const u8 *e)
{
	while (p < e && is_ws(*p))
		p++;
	return p;
}

/* quoted-string (RFC 9110 5.6.4) at p, which is '"'; NULL if unterminated. The field value
 * holds no control character but HTAB, so qdtext is anything but '"' and '\'. */
static const u8 *skip_quoted(const u8 *p, const u8 *e)
{
	for (p++; p < e; p++) {
		if (*p == '"')
			return p + 1;
		if (*p == '\\' && ++p == e)
			return NULL;
	}
	return NULL;
}

/* Transfer-Encoding = #transfer-coding; transfer-coding = token *( OWS ";" OWS
 * token BWS "=" BWS ( token / quoted-string ) ) (RFC 9110 10.1.4, RFC 9112 7). Empty list
 * elements are ignored (RFC 9110 5.6.1); a coding with parameters is not plain chunked. */
static int transfer_encoding(const u8 *p, const u8 *e, struct framing *f)
{
	f->te = 1;
	for (;;) {
		while (p < e && (*p == ',' || is_ws(*p)))
			p++;
		if (p == e)
			return 0;
		const u8 *s = p;
		p = skip_token(p, e);
		if (p == s)
			return HTTP_E_TE_FRAMING;
		int chunked = p - s == 7 && ieq(s, "chunked", 7);
		p = skip_ws(p, e);
		while (p < e && *p == ';') {
			chunked = 0;
			p = skip_ws(p + 1, e);
			s = p;
			p = skip_token(p, e);
			if (p == s)
				return HTTP_E_TE_FRAMING;
			p = skip_ws(p, e);
			if (p == e || *p != '=')
				return HTTP_E_TE_FRAMING;
			p = skip_ws(p + 1, e);
			if (p < e && *p == '"') {
				if (!(p = skip_quoted(p, e)))
					return HTTP_E_TE_FRAMING;
			} else {
				s = p;
				if ((p = skip_token(p, e)) == s)
					return HTTP_E_TE_FRAMING;
			}
			p = skip_ws(p, e);
		}
		if (p < e && *p != ',')
			return HTTP_E_TE_FRAMING;
		if (chunked)
			f->te_chunked++;
		else
			f->te_other = 1;
		f->te_last_chunked = chunked;
	}
}

/* The next element of a comma-separated list, OWS trimmed; 0 at the end. */
static int next_element(const u8 **pp, const u8 *e, const u8 **s, size_t *n)
{
	const u8 *p = *pp;
	while (p < e && (*p == ',' || is_ws(*p)))
		p++;
	if (p == e)
		return 0;
	*s = p;
	while (p < e && *p != ',')
		p++;
	*pp = p;
	while (is_ws(p[-1]))
		p--;
	*n = p - *s;
	return 1;
}

static unsigned connection(const u8 *p, const u8 *e)
{
	const u8 *s;
	size_t n;
	unsigned flags = 0;
	while (next_element(&p, e, &s, &n)) {
		if (n == 5 && ieq(s, "close", 5))
			flags |= HTTP_CONN_CLOSE;
		else if (n == 10 && ieq(s, "keep-alive", 10))
			flags |= HTTP_CONN_KEEP_ALIVE;
		else if (n == 7 && ieq(s, "upgrade", 7))
			flags |= HTTP_CONN_UPGRADE;
	}
	return flags;
}

static int expects_continue(const u8 *p, const u8 *e)
{
	const u8 *s;
	size_t n;
	while (next_element(&p, e, &s, &n))
		if (n == 12 && ieq(s, "100-continue", 12))
			return 1;
	return 0;
}

/* uri-host [ ":" port ] (RFC 3986 3.2.2, 3.2.3), the port required for authority-form. */
static int host_ok(const u8 *p, const u8 *e, int need_port)
{
	if (p < e && *p == '[') {   /* IP-literal: its inside is left to the resolver */
		for (p++; p < e && *p != ']'; p++)
			if (!(cls[*p] & R) && *p != ':')
				return 0;
		if (p++ == e)
			return 0;
	} else {
		for (; p < e && *p != ':'; p++) {
			if (*p == '%') {
				if (e - p < 3 || !(cls[p[1]] & X) || !(cls[p[2]] & X))
					return 0;
				p += 2;
			} else if (!(cls[*p] & R)) {
				return 0;
			}
		}
	}
	if (p == e)
		return !need_port;
	if (*p++ != ':' || (need_port && p == e))
		return 0;
	for (; p < e; p++)
		if (!is_digit(*p))
			return 0;
	return 1;
}

/* What the parser learns from one field line. */
static int field(const u8 *name, size_t n, const u8 *v, const u8 *ve, struct framing *f)
{
	switch (n) {
	case 4:
		if (ieq(name, "host", 4)) {
			f->hosts++;
			if (!host_ok(v, ve, 0))
				return HTTP_E_HOST;
		}
		break;
	case 6:
		if (ieq(name, "expect", 6) && expects_continue(v, ve))
			f->expect = 1;
		break;
	case 7:
		if (ieq(name, "upgrade", 7) && v < ve)
			f->upgrade = 1;
		break;
	case 10:
		if (ieq(name, "connection", 10))
			f->flags |= connection(v, ve);
		break;
	case 14:
		if (ieq(name, "content-length", 14))
			return content_length(v, ve, f);
		break;
	case 17:
		if (ieq(name, "transfer-encoding", 17))
			return transfer_encoding(v, ve, f);
		break;
	}
	return 0;
}

/* ---- the head ---- */

#define MORE 1   /* internal: the buffer ends before the head does */

static int version(const u8 **pp, const u8 *end, int *minor)
{
	const u8 *p = *pp;
	size_t n = end - p;
	if (memcmp(p, "HTTP/", n < 5 ? n : 5))
		return HTTP_E_VERSION;
	if (n < 8)
		return MORE;
	if (!is_digit(p[5]) || p[6] != '.' || !is_digit(p[7]))
		return HTTP_E_VERSION;
	if (p[5] != '1' || p[7] > '1')
		return HTTP_E_VERSION_UNSUPPORTED;
	*minor = p[7] - '0';
	*pp = p + 8;
	return 0;
}

/* CRLF at p, which ends an element that was found well formed up to there. */
static int crlf(const u8 **pp, const u8 *end, int err)
{
	const u8 *p = *pp;
	if (p == end)
		return MORE;
	if (*p != '\r')
		return *p == '\n' ? HTTP_E_CRLF : err;
	if (end - p < 2)
		return MORE;
	if (p[1] != '\n')
		return HTTP_E_CRLF;
	*pp = p + 2;
	return 0;
}

/* The target's form for its method (RFC 9112 3.2). */
static int target_ok(const u8 *m, size_t mn, const u8 *s, size_t n)
{
	if (memchr(s, '#', n))
		return 0;
	if (mn == 7 && !memcmp(m, "CONNECT", 7))
		return host_ok(s, s + n, 1);
	if (*s == '/')
		return 1;
	if (n == 1 && *s == '*')
		return mn == 7 && !memcmp(m, "OPTIONS", 7);
	/* absolute-form: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ":" */
	size_t i = 0;
	if (!is_alpha(*s))
		return 0;
	while (++i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-'
	                   || s[i] == '.'))
		;
	return i < n && s[i] == ':';
}

static int request_line(const u8 *b, const u8 **pp, const u8 *end, struct http_head *h,
                        const struct http_limits *lim)
{
	const u8 *p = *pp, *s;
	int r;
	/* RFC 9112 2.2: empty lines before the request-line are ignored */
	for (;;) {
		if (p == end)
			return MORE;
		if (*p == '\n')
			return HTTP_E_CRLF;
		if (*p != '\r')
			break;
		if ((r = crlf(&p, end, HTTP_E_LINE)))
			return r;
	}
	s = p;
	p = skip_token(p, end);
	if (p == end)
		return MORE;
	if (p == s || *p != ' ')
		return HTTP_E_METHOD;
	h->method = s - b;
	h->method_len = p - s;
	s = ++p;
	p = scan_target(p, (size_t)(end - p) > lim->max_target ? p + lim->max_target + 1 : end);
	if ((size_t)(p - s) > lim->max_target)
		return HTTP_E_TARGET_TOO_LONG;
	if (p == end)
		return MORE;
	if (*p != ' ')
		return *p == '\r' || *p == '\n' ? HTTP_E_LINE : HTTP_E_TARGET;
	if (p == s || !target_ok(b + h->method, h->method_len, s, p - s))
		return HTTP_E_TARGET;
	h->target = s - b;
	h->target_len = p - s;
	p++;
	if ((r = version(&p, end, &h->minor)) || (r = crlf(&p, end, HTTP_E_VERSION)))
		return r;
	*pp = p;
	return 0;
}

static int status_line(const u8 *b, const u8 **pp, const u8 *end, struct http_head *h)
{
	const u8 *p = *pp;
	int r;
	if (p == end)
		return MORE;
	if ((r = version(&p, end, &h->minor)))
		return r == HTTP_E_VERSION ? HTTP_E_STATUS : r;
	if (end - p < 4)
		return MORE;
	if (p[0] != ' ' || !is_digit(p[1]) || !is_digit(p[2]) || !is_digit(p[3]))
		return HTTP_E_STATUS;
	h->status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
	if (h->status < 100 || h->status > 599)
		return HTTP_E_STATUS;
	p += 4;
	if (p == end)
		return MORE;
	if (*p == ' ')
		p++;
	else if (*p != '\r')
		return *p == '\n' ? HTTP_E_CRLF : HTTP_E_STATUS;
	const u8 *s = p;
	p = scan_value(p, end);
	if ((r = crlf(&p, end, HTTP_E_STATUS)))
		return r;
	h->reason = s - b;
	h->reason_len = p - 2 - s;
	*pp = p;
	return 0;
}

/* The field lines and the empty line after them (RFC 9112 5). */
static int fields(const u8 *b, const u8 **pp, const u8 *end, struct http_head *h,
                  const struct http_limits *lim, struct framing *f)
{
	const u8 *p = *pp;
	int r;
	for (;;) {
		if (p == end)
			return MORE;
		if (*p == '\r')
			break;
		if (is_ws(*p))
			return HTTP_E_OBS_FOLD;
		const u8 *name = p, *colon = skip_token(p, end);
		if (colon == end)
			return MORE;
		if (*colon != ':')
			return is_ws(*colon) ? HTTP_E_FIELD_SPACE
			       : *colon == '\n' ? HTTP_E_CRLF : HTTP_E_FIELD_NAME;
		if (colon == name)
			return HTTP_E_FIELD_NAME;
		const u8 *v = skip_ws(colon + 1, end);
		const u8 *ve = scan_value(v, end);
		p = ve;
		if ((r = crlf(&p, end, HTTP_E_FIELD_VALUE)))
			return r;
		while (ve > v && is_ws(ve[-1]))
			ve--;
		if (h->nfields == lim->max_fields)
			return HTTP_E_TOO_MANY_FIELDS;
		struct http_field *fl = &h->fields[h->nfields++];
		fl->name = name - b;
		fl->name_len = colon - name;
		fl->value = v - b;
		fl->value_len = ve - v;
		if ((r = field(name, fl->name_len, v, ve, f)))
			return r;
	}
	if ((r = crlf(&p, end, HTTP_E_CRLF)))
		return r;
	*pp = p;
	return 0;
}

/* The message's framing and connection (RFC 9112 6.1, 6.3, 9.3). */
static int decide(struct http_head *h, const struct framing *f, int response)
{
	if (f->te) {
		if (f->length_seen)
			return HTTP_E_CL_AND_TE;
		if (h->minor == 0 || f->te_chunked > 1 || (!response && !f->te_last_chunked))
			return HTTP_E_TE_FRAMING;
		if (f->te_other)
			return HTTP_E_TE_UNKNOWN;
		if (!f->te_last_chunked)   /* an empty list */
			return HTTP_E_TE_FRAMING;
	}
	if (!response && (f->hosts > 1 || (h->minor == 1 && f->hosts == 0)))
		return HTTP_E_HOST;

	h->content_length = f->length;
	if (response && (h->status < 200 || h->status == 204 || h->status == 304))
		h->body = HTTP_BODY_NONE;
	else if (f->te)
		h->body = HTTP_BODY_CHUNKED;
	else if (f->length_seen)
		h->body = f->length ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	else
		h->body = response ? HTTP_BODY_CLOSE : HTTP_BODY_NONE;

	unsigned fl = f->flags;
	if (h->minor == 1 && f->upgrade && (fl & HTTP_CONN_UPGRADE))
		fl |= HTTP_UPGRADE;
	if (h->minor == 1 && !response && f->expect)
		fl |= HTTP_EXPECT_CONTINUE;
	if (!(fl & HTTP_CONN_CLOSE) && (h->minor == 1 || (fl & HTTP_CONN_KEEP_ALIVE))
	    && h->body != HTTP_BODY_CLOSE)
		fl |= HTTP_KEEP_ALIVE;
	h->flags = fl;
	return 0;
}

static int parse_head(const char *buf, size_t len, struct http_head *h,
                      const struct http_limits *lim, int response)
{
	if (!lim)
		lim = &http_limits_default;
	size_t max = lim->max_head < INT_MAX ? lim->max_head : INT_MAX;
	const u8 *b = (const u8 *)buf, *p = b, *end = b + (len < max ? len : max);
	struct framing f = { 0 };
	struct http_field *fl = h->fields;
	int r;

	memset(h, 0, sizeof *h);
	h->fields = fl;
	if (response)
		r = status_line(b, &p, end, h);
	else
		r = request_line(b, &p, end, h, lim);
	if (!r)
		r = fields(b, &p, end, h, lim, &f);
	if (!r)
		r = decide(h, &f, response);
	if (r == MORE)
		return len >= max ? HTTP_E_HEAD_TOO_LARGE : 0;
	return r ? r : (int)(p - b);
}

int http_parse_request(const char *buf, size_t len, struct http_head *h,
                       const struct http_limits *lim)
{
	return parse_head(buf, len, h, lim, 0);
}

int http_parse_response(const char *buf, size_t len, struct http_head *h,
                        const struct http_limits *lim)
{
	return parse_head(buf, len, h, lim, 1);
}

static const struct {
	short status;
	const char *reason;
} errors[] = {
	[-HTTP_E_LINE] = { 400, "malformed request-line" },
	[-HTTP_E_METHOD] = { 400, "invalid method" },
	[-HTTP_E_TARGET] = { 400, "invalid request-target" },
	[-HTTP_E_VERSION] = { 400, "malformed HTTP version" },
	[-HTTP_E_STATUS] = { 400, "malformed status-line" },
	[-HTTP_E_CRLF] = { 400, "bare CR or LF" },
	[-HTTP_E_FIELD_NAME] = { 400, "invalid field name" },
	[-HTTP_E_FIELD_SPACE] = { 400, "whitespace before a field's colon" },
	[-HTTP_E_FIELD_VALUE] = { 400, "invalid character in a field value" },
	[-HTTP_E_OBS_FOLD] = { 400, "line folding or leading whitespace" },
	[-HTTP_E_CONTENT_LENGTH] = { 400, "invalid Content-Length" },
	[-HTTP_E_CL_AND_TE] = { 400, "both Content-Length and Transfer-Encoding" },
	[-HTTP_E_TE_FRAMING] = { 400, "Transfer-Encoding does not end in chunked" },
	[-HTTP_E_HOST] = { 400, "missing, repeated or invalid Host" },
	[-HTTP_E_CHUNK_SIZE] = { 400, "invalid chunk size" },
	[-HTTP_E_CHUNK_EXT] = { 400, "invalid chunk extension" },
	[-HTTP_E_CHUNK_LINE] = { 400, "chunk line too long" },
	[-HTTP_E_CHUNK_DATA] = { 400, "no CRLF after chunk data" },
	[-HTTP_E_TARGET_TOO_LONG] = { 414, "request-target too long" },
	[-HTTP_E_HEAD_TOO_LARGE] = { 431, "header section too large" },
	[-HTTP_E_TOO_MANY_FIELDS] = { 431, "too many fields" },
	[-HTTP_E_TRAILER_TOO_LARGE] = { 431, "trailer section too large" },
	[-HTTP_E_TE_UNKNOWN] = { 501, "transfer coding not implemented" },
	[-HTTP_E_VERSION_UNSUPPORTED] = { 505, "HTTP version not supported" },
};

int http_status_of(int err)
{
	if (err >= 0 || (size_t)-err >= sizeof errors / sizeof *errors)
		return 500;
	return errors[-err].status;
}

const char *http_strerror(int err)
{
	if (err >= 0 || (size_t)-err >= sizeof errors / sizeof *errors)
		return "no error";
	return errors[-err].reason;
}

/* ---- chunked bodies ---- */

enum {
	C_SIZE0,       /* a size's first digit */
	C_SIZE,        /* more digits, an extension or CR */
	C_EXT_WS,      /* BWS after the size or a value: ';' must follow */
	C_EXT_NAME0,   /* after ';' */
	C_EXT_NAME,
	C_EXT_NAME_WS, /* BWS after a name: '=' or ';' must follow */
	C_EXT_EQ,      /* after '=' */
	C_EXT_TOKEN,
	C_EXT_QUOTED,
	C_EXT_QPAIR,
	C_EXT_QEND,    /* after a quoted-string's closing quote */
	C_LINE_LF,
	C_DATA,
	C_DATA_CR,
	C_DATA_LF,
	C_TRAILER,     /* a trailer line's start */
	C_TNAME,
	C_TVALUE,
	C_TLF,
	C_END_LF,
	C_DONE,
	C_ERROR
};

void http_chunked_init(struct http_chunked *st, const struct http_limits *lim)
{
	if (!lim)
		lim = &http_limits_default;
	memset(st, 0, sizeof *st);
	st->max_line = lim->max_chunk_line;
	st->max_trailer = lim->max_head;
	st->max_fields = lim->max_fields;
	st->state = C_SIZE0;
}

/* The state after octet c of a size line, or an error. */
static int size_line(struct http_chunked *st, int s, u8 c)
{
	if (s == C_LINE_LF) {
		if (c != '\n')
			return HTTP_E_CRLF;
		st->line = 0;
		return st->left ? C_DATA : C_TRAILER;
	}
	if (c == '\n')
		return HTTP_E_CRLF;
	if (++st->line > st->max_line)
		return HTTP_E_CHUNK_LINE;
	switch (s) {
	case C_SIZE0:
		if (!(cls[c] & X))
			return HTTP_E_CHUNK_SIZE;
		st->left = hexval(c);
		return C_SIZE;
	case C_SIZE:
		if (cls[c] & X) {
			if (st->left >> 60)   /* RFC 9112 7.1: anticipate overflows */
				return HTTP_E_CHUNK_SIZE;
			st->left = st->left << 4 | hexval(c);
			return C_SIZE;
		}
		if (c == '\r')
			return C_LINE_LF;
		if (c == ';')
			return C_EXT_NAME0;
		return is_ws(c) ? C_EXT_WS : HTTP_E_CHUNK_SIZE;
	case C_EXT_WS:
		return is_ws(c) ? C_EXT_WS : c == ';' ? C_EXT_NAME0 : HTTP_E_CHUNK_EXT;
	case C_EXT_NAME0:
		return is_ws(c) ? C_EXT_NAME0 : (cls[c] & T) ? C_EXT_NAME : HTTP_E_CHUNK_EXT;
	case C_EXT_NAME:
		if (cls[c] & T)
			return C_EXT_NAME;
		/* fall through */
	case C_EXT_NAME_WS:
		if (is_ws(c))
			return C_EXT_NAME_WS;
		if (c == '=')
			return C_EXT_EQ;
		if (c == ';')
			return C_EXT_NAME0;
		return c == '\r' && s == C_EXT_NAME ? C_LINE_LF : HTTP_E_CHUNK_EXT;
	case C_EXT_EQ:
		if (is_ws(c))
			return C_EXT_EQ;
		return c == '"' ? C_EXT_QUOTED : (cls[c] & T) ? C_EXT_TOKEN : HTTP_E_CHUNK_EXT;
	case C_EXT_QUOTED:
		if (c == '"')
			return C_EXT_QEND;
		if (c == '\\')
			return C_EXT_QPAIR;
		return cls[c] & V ? C_EXT_QUOTED : HTTP_E_CHUNK_EXT;
	case C_EXT_QPAIR:
		return cls[c] & V ? C_EXT_QUOTED : HTTP_E_CHUNK_EXT;
	case C_EXT_TOKEN:
		if (cls[c] & T)
			return C_EXT_TOKEN;
		/* fall through */
	default: /* C_EXT_QEND */
		if (is_ws(c))
			return C_EXT_WS;
		if (c == ';')
			return C_EXT_NAME0;
		return c == '\r' ? C_LINE_LF : HTTP_E_CHUNK_EXT;
	}
}

/* The state after octet c of the trailer section, or an error. */
static int trailer(struct http_chunked *st, int s, u8 c)
{
	if (++st->trailer > st->max_trailer)
		return HTTP_E_TRAILER_TOO_LARGE;
	switch (s) {
	case C_TRAILER:
		if (c == '\r')
			return C_END_LF;
		if (is_ws(c))
			return HTTP_E_OBS_FOLD;
		if (!(cls[c] & T))
			return c == '\n' ? HTTP_E_CRLF : HTTP_E_FIELD_NAME;
		if (st->nfields++ == st->max_fields)
			return HTTP_E_TOO_MANY_FIELDS;
		return C_TNAME;
	case C_TNAME:
		if (cls[c] & T)
			return C_TNAME;
		if (c == ':')
			return C_TVALUE;
		return is_ws(c) ? HTTP_E_FIELD_SPACE : c == '\n' ? HTTP_E_CRLF : HTTP_E_FIELD_NAME;
	case C_TVALUE:
		if (cls[c] & V)
			return C_TVALUE;
		if (c == '\r')
			return C_TLF;
		return c == '\n' ? HTTP_E_CRLF : HTTP_E_FIELD_VALUE;
	case C_TLF:
		return c == '\n' ? C_TRAILER : HTTP_E_CRLF;
	default: /* C_END_LF */
		return c == '\n' ? C_DONE : HTTP_E_CRLF;
	}
}

int http_chunked_decode(struct http_chunked *st, char *buf, size_t len,
                        size_t *consumed, size_t *decoded)
{
	size_t i = 0, w = 0;
	int s = st->state;

	while (i < len && s != C_DONE && s != C_ERROR) {
		u8 c = buf[i];
		switch (s) {
		case C_DATA: {
			size_t n = len - i < st->left ? len - i : (size_t)st->left;
			if (w != i)
				memmove(buf + w, buf + i, n);
			w += n;
			i += n;
			if (!(st->left -= n))
				s = C_DATA_CR;
			continue;
		}
		case C_DATA_CR:
			s = c == '\r' ? C_DATA_LF : HTTP_E_CHUNK_DATA;
			break;
		case C_DATA_LF:
			s = c == '\n' ? C_SIZE0 : HTTP_E_CHUNK_DATA;
			break;
		case C_TRAILER: case C_TNAME: case C_TVALUE: case C_TLF: case C_END_LF:
			s = trailer(st, s, c);
			break;
		default:
			s = size_line(st, s, c);
			break;
		}
		if (s < 0) {
			st->err = s;
			s = C_ERROR;
			break;
		}
		i++;
	}
	st->state = s;
	*consumed = i;
	*decoded = w;
	if (s == C_ERROR)
		return st->err;
	return s == C_DONE;
}
