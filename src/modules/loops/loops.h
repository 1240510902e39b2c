/* loops.h: lem.loops's files: the module (loops.c), the message encoding (message.c). */
#ifndef LEM_LOOPS_H
#define LEM_LOOPS_H

#include <stddef.h>
#include "lem.h"

/* Lua values encoded into one block, to cross from one loop to another. */
struct msg {
	lem_msg link;               /* first: lem frees a message it drops with free() */
	struct msg *prev, *next;    /* among the handed ones (loops.c) */
	int from;                   /* sender's loop id */
	int nvalues;                /* top-level values */
	size_t len, cap;            /* bytes of data used, allocated */
	unsigned char data[];       /* encoded values (message.c) */
};

/* The message whose link is l: the link is its first member. */
static inline struct msg *msg_of(lem_msg *l)
{
	return (struct msg *)l;
}

/* [-0, +(0|1), m] Encodes values [first, last] of L; NULL and a message on L's stack for
 * errors that name argument *badarg (the caller raises). */
struct msg *msg_encode(lua_State *L, int first, int last, int *badarg);
/* [-0, +nvalues, m] Pushes the values of m; raises when it fails (out of memory): call
 * it protected. */
void msg_decode(lua_State *L, const struct msg *m);
/* [-0, +0, -] A copy of m, or NULL. */
struct msg *msg_copy(const struct msg *m);

#endif
