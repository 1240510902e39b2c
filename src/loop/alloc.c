/* alloc.c: the allocator of a loop's Lua state.
 *
 * Lua makes and frees small blocks all the time: a table is two (itself and its array
 * or its hash part), a query's result four. Through realloc and free, glibc took 100
 * to 300 instructions a block, most of it because the collector frees in bursts, more
 * than glibc's per-thread caches keep, and large blocks made meanwhile (libpq's results,
 * say) sort what those bursts left each time. So a loop keeps the small blocks its
 * state frees, by size in steps of 16 bytes, for its next ones: a few instructions each.
 * A loop's state runs in one thread at a time, so the lists need no lock.
 * A block taken from a list is asked of the memory ahead of time (a prefetch of the next
 * one when one is taken): a server's requests pass through the kernel in between, which
 * leaves little of the heap in the caches, and the read of a block's link was a tenth of
 * PUC Lua's time in user space.
 * LuaJIT's own allocator took about 50 instructions a block: it uses this one too,
 * where it takes one (GC64 builds; loop.c falls back to LuaJIT's otherwise).
 *
 * The lists keep ALLOC_KEEP bytes in all. A block freed when they are full takes the
 * place of blocks of other classes, in turns: they keep what the loop frees now, not what
 * a burst of another kind left (a pipelined load filled them with blocks that plain
 * requests never asked for, and every block of theirs then went through malloc and free:
 * 6% more instructions a request on LuaJIT).
 *
 * Each block comes from malloc, at least as large as its class (the sizes the class
 * holds, rounded up), so that free() takes any of them; one that did not move when it
 * shrank is larger than its class, which is fine. Under AddressSanitizer it is
 * realloc and free as they are, so that it still sees every block's bounds and every
 * use of a freed one. */
#include <stdlib.h>
#include <string.h>
#include "loop.h"

#if defined(__SANITIZE_ADDRESS__)
#define ALLOC_KEEP 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ALLOC_KEEP 0
#endif
#endif
#ifndef ALLOC_KEEP
#define ALLOC_KEEP (1024 * 1024)    /* bytes of free blocks a loop keeps, at most */
#endif

struct alloc_block {
	struct alloc_block *next;
};

/* The class of n bytes (> 0), or -1 for a large block. */
static inline int alloc_class(size_t n)
{
	return n <= LEM_ALLOC_STEP * LEM_ALLOC_CLASSES ? (int)((n - 1) / LEM_ALLOC_STEP) : -1;
}

static inline void *alloc_get(struct lem_alloc *a, int k, size_t n)
{
	struct alloc_block *b;

	if (k < 0)
		return malloc(n);
	if ((b = a->free[k])) {
		a->free[k] = b->next;
		__builtin_prefetch(b->next, 1);
		a->kept -= (size_t)(k + 1) * LEM_ALLOC_STEP;
		return b;
	}
	return malloc((size_t)(k + 1) * LEM_ALLOC_STEP);
}

/* Frees blocks of classes other than k, a class after the other, until size more bytes
 * fit; returns whether they do. A pass that found too few (the lists hold k's blocks
 * alone: a sweep of many objects of one size) is not tried again for the next
 * LEM_ALLOC_CLASSES blocks, which go to free() at once as before. */
static int alloc_evict(struct lem_alloc *a, int k, size_t size)
{
	if (a->evict_skip > 0) {
		a->evict_skip--;
		return 0;
	}
	for (int i = 0; i < LEM_ALLOC_CLASSES && a->kept + size > ALLOC_KEEP; i++) {
		int c = a->evict = (a->evict + 1) % LEM_ALLOC_CLASSES;
		struct alloc_block *b = a->free[c];

		if (c == k || !b)
			continue;
		a->free[c] = b->next;
		a->kept -= (size_t)(c + 1) * LEM_ALLOC_STEP;
		free(b);
	}
	if (a->kept + size <= ALLOC_KEEP)
		return 1;
	a->evict_skip = LEM_ALLOC_CLASSES;
	return 0;
}

static inline void alloc_put(struct lem_alloc *a, int k, void *p)
{
	size_t size = (size_t)(k + 1) * LEM_ALLOC_STEP;
	struct alloc_block *b = p;

	if (k < 0 || (a->kept + size > ALLOC_KEEP && !alloc_evict(a, k, size))) {
		free(p);
		return;
	}
	b->next = a->free[k];
	a->free[k] = b;
	a->kept += size;
}

/* What the lists do not answer: large blocks, an empty list, a full one, a resize. */
static __attribute__((noinline)) void *alloc_slow(struct lem_alloc *a, void *p, size_t osize,
                                                  size_t nsize)
{
	int ko, kn;
	void *q;

	if (nsize == 0) {
		alloc_put(a, alloc_class(osize), p);
		return NULL;
	}
	kn = alloc_class(nsize);
	if (!p)
		return alloc_get(a, kn, nsize);
	if ((ko = alloc_class(osize)) == kn)
		return kn < 0 ? realloc(p, nsize) : p;
	if (!(q = alloc_get(a, kn, nsize)))
		return nsize < osize ? p : NULL;   /* Lua counts on a block shrinking */
	memcpy(q, p, osize < nsize ? osize : nsize);
	alloc_put(a, ko, p);
	return q;
}

/* The lua_Alloc: a block from its list or back to it here, without a call (a frame
 * that saves registers for the calls cost more than the rest); the rest in alloc_slow. */
void *lem_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
	struct lem_alloc *a = ud;
	struct alloc_block *b;
	size_t k, size;

	if (ALLOC_KEEP == 0) {              /* exact sizes, so that ASan sees an overflow */
		if (nsize)
			return realloc(p, nsize);
		free(p);
		return NULL;
	}
	if (nsize == 0) {
		if (!p)
			return NULL;
		k = (osize - 1) / LEM_ALLOC_STEP;
		size = (k + 1) * LEM_ALLOC_STEP;
		if (k < LEM_ALLOC_CLASSES && a->kept + size <= ALLOC_KEEP) {
			b = p;
			b->next = a->free[k];
			a->free[k] = b;
			a->kept += size;
			return NULL;
		}
	} else if (!p && (k = (nsize - 1) / LEM_ALLOC_STEP) < LEM_ALLOC_CLASSES &&
	           (b = a->free[k])) {
		a->free[k] = b->next;
		__builtin_prefetch(b->next, 1);
		a->kept -= (k + 1) * LEM_ALLOC_STEP;
		return b;
	}
	return alloc_slow(a, p, osize, nsize);
}

void lem_alloc_free(struct lem_alloc *a)
{
	for (int k = 0; k < LEM_ALLOC_CLASSES; k++)
		while (a->free[k]) {
			struct alloc_block *b = a->free[k];
			a->free[k] = b->next;
			free(b);
		}
	a->kept = 0;
}
