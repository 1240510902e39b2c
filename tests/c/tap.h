/* tap.h: TAP for the C test programs: ok() and is() print a test's line, and a program
 * ends with printf("1..%d\n", count) and failed != 0 as its status. */
#include <stdarg.h>
#include <stdio.h>

static int count, failed;

static inline int ok(int pass, const char *fmt, ...)
{
	va_list ap;

	count++;
	if (!pass)
		failed++;
	printf("%s %d - ", pass ? "ok" : "not ok", count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	return pass;
}

static inline int is(long long got, long long want, const char *name)
{
	if (ok(got == want, "%s", name))
		return 1;
	printf("#   got %lld, expected %lld\n", got, want);
	return 0;
}
