/* parser.h: a strict HTTP/1.1 message-head parser and chunked-body decoder (RFC 9112).
 *
 * Pull style: the caller owns the buffer and calls again with more bytes; nothing is copied
 * and nothing is called back. Needs libc only (no Lua, no lem.h), so that the tests and the
 * fuzzers link it alone.
 *
 * Strict by design: whatever two HTTP implementations could read differently (the root of
 * request smuggling, RFC 9112 11.2) is an error, and after any error the caller answers
 * http_status_of(err) if it is a server, and closes the connection in any case: the parser
 * cannot tell where the next message would start.
 *
 * Rules, with the RFC 9112 section that allows or requires each:
 *   - Lines end in CRLF only. A bare LF (allowed to recipients by 2.2, and accepted by many
 *     parsers) and a bare CR (2.2: invalid or SP) are both errors.
 *   - Empty lines (CRLF) before a request-line are skipped (2.2); not before a status-line.
 *   - request-line = method SP request-target SP HTTP-version, single spaces (3). The
 *     method is a token; the target is visible ASCII without '#' and of its method's form
 *     (3.2): origin-form, absolute-form, authority-form for CONNECT only, "*" for OPTIONS
 *     only. A target longer than max_target is 414.
 *   - HTTP/1.0 and HTTP/1.1 only: any other well-formed version is 505, a malformed one 400.
 *   - status-line = HTTP-version SP 3DIGIT SP [reason] (4), the status in 100..599; the SP
 *     before an empty reason may be missing (no framing depends on it).
 *   - field-line = field-name ":" OWS field-value OWS (5): no whitespace before the colon
 *     (5.1), no obs-fold and no whitespace before the first field (5.2, 2.2), no control
 *     character but HTAB in a value (5.5; obs-text is allowed). Values are trimmed of OWS.
 *   - Content-Length: 1*DIGIT fitting in 64 bits; a list of identical values ("5, 5") and
 *     identical repeated fields count as one, differing ones are 400 (6.3 item 5).
 *   - Transfer-Encoding: in HTTP/1.0 400 (6.1); with Content-Length 400, in responses too
 *     (6.1, 6.3 item 3, 11.2); chunked twice 400 (7); in a request whose final coding is
 *     not chunked 400 (6.3 item 4); any coding but chunked is 501, as only chunked is
 *     implemented (6.1), so a response never has an undecodable body.
 *   - Requests: HTTP/1.1 needs exactly one Host, HTTP/1.0 at most one, and its value must be
 *     uri-host [":" port] or empty (3.2): else 400.
 *   - Body (6.3): a response to a request method the parser cannot see (HEAD; 2xx to
 *     CONNECT) has no body whatever its head says: the caller knows and overrides body.
 *
 * The limits are the caller's; http_limits_default holds sizes fit for a server. */
#ifndef LEM_HTTP_PARSER_H
#define LEM_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>

/* Errors: negative, each with a status (http_status_of) and a reason (http_strerror). */
enum {
	HTTP_E_LINE = -1,              /* 400 malformed request-line */
	HTTP_E_METHOD = -2,            /* 400 invalid method */
	HTTP_E_TARGET = -3,            /* 400 invalid request-target */
	HTTP_E_VERSION = -4,           /* 400 malformed HTTP version */
	HTTP_E_STATUS = -5,            /* 400 malformed status-line */
	HTTP_E_CRLF = -6,              /* 400 bare CR or bare LF */
	HTTP_E_FIELD_NAME = -7,        /* 400 invalid field name */
	HTTP_E_FIELD_SPACE = -8,       /* 400 whitespace between field name and colon */
	HTTP_E_FIELD_VALUE = -9,       /* 400 invalid character in a field value */
	HTTP_E_OBS_FOLD = -10,         /* 400 obsolete line folding or leading whitespace */
	HTTP_E_CONTENT_LENGTH = -11,   /* 400 invalid or conflicting Content-Length */
	HTTP_E_CL_AND_TE = -12,        /* 400 both Content-Length and Transfer-Encoding */
	HTTP_E_TE_FRAMING = -13,       /* 400 Transfer-Encoding without a final chunked */
	HTTP_E_HOST = -14,             /* 400 missing, repeated or invalid Host */
	HTTP_E_CHUNK_SIZE = -15,       /* 400 invalid chunk size */
	HTTP_E_CHUNK_EXT = -16,        /* 400 invalid chunk extension */
	HTTP_E_CHUNK_LINE = -17,       /* 400 chunk line too long */
	HTTP_E_CHUNK_DATA = -18,       /* 400 no CRLF after chunk data */
	HTTP_E_TARGET_TOO_LONG = -19,  /* 414 */
	HTTP_E_HEAD_TOO_LARGE = -20,   /* 431 header section too large */
	HTTP_E_TOO_MANY_FIELDS = -21,  /* 431 too many fields (header or trailer) */
	HTTP_E_TRAILER_TOO_LARGE = -22,/* 431 trailer section too large */
	HTTP_E_TE_UNKNOWN = -23,       /* 501 transfer coding not implemented */
	HTTP_E_VERSION_UNSUPPORTED = -24 /* 505 */
};

struct http_limits {
	uint32_t max_head;       /* bytes of a head, leading empty lines included; of a trailer section */
	uint32_t max_fields;     /* field lines of a head (the size of h->fields) or of a trailer section */
	uint32_t max_target;     /* bytes of a request-target */
	uint32_t max_chunk_line; /* bytes of a chunk-size line, extensions included, CRLF not */
};
extern const struct http_limits http_limits_default;   /* 16384, 100, 8192, 1024 */

/* A field line: offsets into the parsed buffer, which may move between calls. */
struct http_field {
	uint32_t name, name_len;
	uint32_t value, value_len;   /* without leading or trailing OWS */
};

enum http_body {
	HTTP_BODY_NONE,      /* none, or Content-Length: 0 */
	HTTP_BODY_LENGTH,    /* content_length bytes */
	HTTP_BODY_CHUNKED,   /* decode with http_chunked_decode */
	HTTP_BODY_CLOSE      /* responses only: the body runs until the connection closes */
};

/* flags */
#define HTTP_CONN_CLOSE       0x01u  /* Connection lists close */
#define HTTP_CONN_KEEP_ALIVE  0x02u  /* Connection lists keep-alive */
#define HTTP_CONN_UPGRADE     0x04u  /* Connection lists upgrade */
#define HTTP_UPGRADE          0x08u  /* HTTP/1.1, an Upgrade field and Connection: upgrade */
#define HTTP_EXPECT_CONTINUE  0x10u  /* an HTTP/1.1 request expects 100-continue */
#define HTTP_KEEP_ALIVE       0x20u  /* the connection may carry another message (RFC 9112 9.3) */

struct http_head {
	struct http_field *fields;   /* set by the caller: room for lim->max_fields */
	uint32_t nfields;
	uint32_t method, method_len; /* requests */
	uint32_t target, target_len;
	int status;                  /* responses */
	uint32_t reason, reason_len;
	int minor;                   /* HTTP/1.minor, 0 or 1 */
	enum http_body body;
	uint64_t content_length;     /* the Content-Length, 0 when there is none */
	unsigned flags;
};

/* Parse the head at buf[0..len). Return its length (> 0) with h filled, 0 when it is not
 * complete yet and no limit is exceeded, or an error; an error is found as soon as its
 * octets are there, and a limit as soon as it is exceeded. lim may be NULL for
 * http_limits_default.
 * Each call parses from the start again: a head is short and is read at about two bytes
 * a nanosecond, but a peer sending one byte at a time would make that quadratic; a head
 * can only be complete after an LF, so a caller parses again only once new bytes hold one. */
int http_parse_request(const char *buf, size_t len, struct http_head *h,
                       const struct http_limits *lim);
int http_parse_response(const char *buf, size_t len, struct http_head *h,
                        const struct http_limits *lim);

int http_status_of(int err);          /* 400, 414, 431, 501 or 505 (500 for a non-error) */
const char *http_strerror(int err);

/* Chunked body (RFC 9112 7.1), decoded in place and incrementally. Chunk extensions are
 * parsed to their grammar (7.1.1: BWS ";" BWS name [BWS "=" BWS token / quoted-string])
 * and ignored; a size line longer than max_chunk_line is an error. Trailer fields follow
 * the head's field rules, bounded by max_head and max_fields, and are dropped (7.1.2).
 * Every chunk but the last carries data, yet up to max_chunk_line + 4 octets of framing
 * each: bound a body by the octets read, not only by the ones decoded. */
struct http_chunked {
	uint64_t left;        /* data bytes left in this chunk, or the size being read */
	uint32_t line;        /* bytes of the current size line */
	uint32_t trailer;     /* bytes of the trailer section */
	uint32_t nfields;     /* trailer fields */
	uint32_t max_line, max_trailer, max_fields;
	int state;
	int err;
};

void http_chunked_init(struct http_chunked *st, const struct http_limits *lim);

/* Decode buf[0..len): the data is moved to buf[0..*decoded), *consumed bytes of buf were
 * read. Return 1 when the body ended (buf[*consumed..] is the next message), 0 when all of
 * buf was read and more is needed, or an error (then and after, on every call). */
int http_chunked_decode(struct http_chunked *st, char *buf, size_t len,
                        size_t *consumed, size_t *decoded);

#endif
