/* Always-on assertions: they survive release builds, log where they failed, then abort.
 * Security checks are never written as assertions; those are real conditions that refuse. */
#ifndef FL_ASSERT_H
#define FL_ASSERT_H

_Noreturn void fl_assert_fail(const char *expr, const char *file, int line);

#define FL_ASSERT(expr) ((expr) ? (void)0 : fl_assert_fail(#expr, __FILE__, __LINE__))

#endif
