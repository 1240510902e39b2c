/* common.h: what the C reference programs share with bench/common.lua: name=value
 * arguments, clocks, peak RSS, and the "phase" and "result" lines bench/run reads. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Monotonic wall clock, seconds. */
static inline double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Process CPU time, seconds: what os.clock() returns in the Lua programs. */
static inline double cpu(void)
{
	return (double)clock() / CLOCKS_PER_SEC;
}

/* Peak resident set size so far, bytes (VmHWM, as bench/common.lua reads it). */
static inline double rss(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	double kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			kb = atof(line + 6);
	fclose(f);
	return kb * 1024;
}

/* The value of name=value among argv[2..], or def. */
static inline double argf(int argc, char **argv, const char *name, double def)
{
	size_t len = strlen(name);

	for (int i = 2; i < argc; i++)
		if (strncmp(argv[i], name, len) == 0 && argv[i][len] == '=')
			return atof(argv[i] + len + 1);
	return def;
}

static inline long arg(int argc, char **argv, const char *name, long def)
{
	return (long)argf(argc, argv, name, (double)def);
}

/* A negative time is not printed. */
static inline void phase(const char *name, double wall, double cpu_s)
{
	printf("phase %s", name);
	if (wall >= 0)
		printf(" wall %.6f s", wall);
	if (cpu_s >= 0)
		printf(" cpu %.6f s", cpu_s);
	printf("\n");
	fflush(stdout);
}

static inline void result(const char *unit, double value)
{
	printf("result %s %.6g\n", unit, value);
	fflush(stdout);
}

#endif
