/* Lookup in generated embed tables: see embed.h. */
#include "core/embed.h"

#include <string.h>

const struct fl_embed *fl_embed_find(const struct fl_embed *table, const char *name)
{
	for (; table->name; table++)
		if (!strcmp(table->name, name))
			return table;
	return NULL;
}
