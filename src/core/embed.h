/* Files embedded into the binary at build time by scripts/embed.py (Lua scripts, SQL
 * migrations). Each generated table ends with an entry whose name is NULL. */
#ifndef FL_EMBED_H
#define FL_EMBED_H

#include <stddef.h>

struct fl_embed {
	const char *name; /* file name without directory and extension */
	const char *data; /* NUL-terminated contents */
	size_t len;
};

/* Looks name up in a NULL-terminated table; NULL when absent. */
const struct fl_embed *fl_embed_find(const struct fl_embed *table, const char *name);

#endif
