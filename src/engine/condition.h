/* Router conditions (shared/FLOWS.md §3): one operator applied to already-resolved values. Kept
 * apart from the walker so that every operator can be tested on its own. */
#ifndef ENG_CONDITION_H
#define ENG_CONDITION_H

#include <jansson.h>

/* Evaluates one resolved condition {"operator","firstValue","secondValue"?,"caseSensitive"?}.
 * A missing value is undefined. Returns 1 or 0; an unknown operator is false. */
int eng_condition_eval(const json_t *condition);

/* Evaluates a branch's conditions, an OR of AND-groups. An empty list is false. */
int eng_conditions_eval(const json_t *groups);

#endif
