/* chunked.c: libFuzzer target for the chunked-body decoder (src/modules/http/parser.c).
 * Input: a mode octet, then a body. Mode bits 0-1 pick a set of limits, bits 2-7 seed the
 * sizes of the pieces the body is then fed in. The decoder must give the same result fed
 * the whole body at once and in pieces: the same status, the same decoded data, the same
 * end; and it never reports more consumed than given or more decoded than consumed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parser.h"

static const struct http_limits limits[4] = {
	{ 16384, 100, 8192, 1024 },
	{ 64, 2, 16, 8 },
	{ 512, 16, 64, 32 },
	{ 32, 100, 8192, 4 },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned mode = data[0];
	const struct http_limits *lim = &limits[mode & 3];
	size_t n = size - 1, used, dec;
	char *whole = malloc(n ? n : 1), *pieces = malloc(n ? n : 1), *out = malloc(n ? n : 1);
	struct http_chunked st;
	memcpy(whole, data + 1, n);
	memcpy(pieces, data + 1, n);

	http_chunked_init(&st, lim);
	int r = http_chunked_decode(&st, whole, n, &used, &dec);
	if (used > n || dec > used || r > 1 || (r == 0 && used != n))
		abort();
	if (r < 0 && (!http_strerror(r)[0] || http_status_of(r) == 500))
		abort();
	size_t end = used, decoded = dec;
	/* after the end or an error, it stays there */
	int again = http_chunked_decode(&st, whole + used, n - used, &used, &dec);
	if (again != r || (r != 0 && (used || dec)))
		abort();

	uint32_t seed = mode >> 2, off = 0, got = 0;
	int r2 = 0;
	http_chunked_init(&st, lim);
	while (off < n && r2 == 0) {
		seed = seed * 1103515245 + 12345;
		size_t k = 1 + (seed >> 16) % 17;
		if (k > n - off)
			k = n - off;
		r2 = http_chunked_decode(&st, pieces + off, k, &used, &dec);
		if (used > k || dec > used || (r2 == 0 && used != k))
			abort();
		memcpy(out + got, pieces + off, dec);
		got += dec;
		off += used;
	}
	if (r2 != r || got != decoded || memcmp(out, whole, got) || (r != 0 && off != end))
		abort();
	free(whole);
	free(pieces);
	free(out);
	return 0;
}
