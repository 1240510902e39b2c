/* alloc_test.c: the loop's allocator (src/loop/alloc.c), whose lists only C sees: blocks
 * kept by size class and given again, the bound on what they keep, and a block freed when
 * they are full taking the place of another class's. Prints TAP; tests/alloc.lua runs it.
 * Built with alloc.c included, for its ALLOC_KEEP and its lists. */
#include "../../src/loop/alloc.c"
#include "tap.h"

static void *get(struct lem_alloc *a, size_t n) { return lem_alloc(a, NULL, 0, n); }
static void put(struct lem_alloc *a, void *p, size_t n) { lem_alloc(a, p, n, 0); }
static int class_len(struct lem_alloc *a, size_t n)
{
	int len = 0;

	for (struct alloc_block *b = a->free[alloc_class(n)]; b; b = b->next)
		len++;
	return len;
}

/* Frees count blocks of n bytes, made for it. */
static void fill(struct lem_alloc *a, size_t n, int count)
{
	void **p = malloc(count * sizeof *p);

	for (int i = 0; i < count; i++)
		p[i] = get(a, n);
	for (int i = 0; i < count; i++)
		put(a, p[i], n);
	free(p);
}

int main(void)
{
	struct lem_alloc a;
	char *p, *q;

	memset(&a, 0, sizeof a);
	setvbuf(stdout, NULL, _IOLBF, 0);
	p = get(&a, 40);
	strcpy(p, "kept");
	q = lem_alloc(&a, p, 40, 600);                      /* to another class: moved */
	ok(q && !strcmp(q, "kept"), "a block grown to another class keeps its bytes");
	p = lem_alloc(&a, q, 600, 20);                      /* and back down */
	ok(p && !strcmp(p, "kept"), "and shrunk again too");
	put(&a, p, 20);
#if ALLOC_KEEP == 0
	ok(a.kept == 0, "sanitized build: no lists, every block through realloc and free");
#else
	ok(a.kept == 48 + 608 + 32, "the lists keep the freed blocks by class (%zu bytes)", a.kept);
	ok(get(&a, 30) == p, "a freed block is given again for a size of its class");
	ok(a.kept == 48 + 608, "and leaves the list");
	put(&a, p, 30);
	p = get(&a, 4096);
	put(&a, p, 4096);
	ok(a.kept == 48 + 608 + 32, "a block past 1 KiB is not kept");

	lem_alloc_free(&a);
	fill(&a, 64, 2 * ALLOC_KEEP / 64);
	ok(a.kept == ALLOC_KEEP, "the lists keep ALLOC_KEEP bytes at most (%zu)", a.kept);
	ok(class_len(&a, 64) == ALLOC_KEEP / 64, "all of one class when it alone was freed");
	p = get(&a, 64);
	q = get(&a, 64);
	put(&a, p, 64);
	put(&a, q, 64);
	ok(a.kept == ALLOC_KEEP && a.free[alloc_class(64)] == q,
	   "full of that class, it still takes blocks of it back");

	ok(a.evict_skip > 0 && a.evict_skip <= LEM_ALLOC_CLASSES,
	   "a pass that found no other class to free is not tried for the next blocks");
	for (int n = a.evict_skip; n > 0; n--)                 /* as a sweep of one size would */
		put(&a, malloc(64), 64);
	ok(a.kept == ALLOC_KEEP && a.evict_skip == 0, "those go to free() (%zu bytes kept)",
	   a.kept);
	put(&a, malloc(64), 64);
	ok(a.kept == ALLOC_KEEP && a.evict_skip == LEM_ALLOC_CLASSES,
	   "and the next block tries again");

	a.evict_skip = 0;
	fill(&a, 32, 1000);                                 /* another kind of load */
	ok(class_len(&a, 32) == 1000, "a class of a new load is kept when the lists are full "
	   "(%d of 1000)", class_len(&a, 32));
	ok(a.kept <= ALLOC_KEEP && class_len(&a, 64) == (ALLOC_KEEP - 32000) / 64,
	   "in place of blocks of the class that filled them (%d left)", class_len(&a, 64));
	q = a.free[alloc_class(32)];
	p = get(&a, 32);
	ok(p == q && class_len(&a, 32) == 999, "and given again from its list");
	put(&a, p, 32);

	fill(&a, 16, 100);
	ok(a.kept <= ALLOC_KEEP && class_len(&a, 16) == 100 && class_len(&a, 32) < 1000,
	   "and the next, from the others in turns (%zu bytes kept)", a.kept);
#endif
	lem_alloc_free(&a);
	ok(a.kept == 0 && !a.free[alloc_class(64)], "lem_alloc_free empties the lists");
	printf("1..%d\n", count);
	return failed != 0;
}
