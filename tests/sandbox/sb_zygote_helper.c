/* A zygote for the tests: serves spawn requests on fd 3. With --entry its sandboxes run
 * sb_escape in-process instead of exec'ing a payload, which is how the engine will use it. */
#include "sandbox/zygote.h"

#include <string.h>

int sb_escape_main(int argc, char **argv);

static int escape_entry(int argc, char **argv, void *arg)
{
	return sb_escape_main(argc, argv);
}

int main(int argc, char **argv)
{
	int entry = argc > 1 && !strcmp(argv[1], "--entry");
	return sb_zygote_serve(3, entry ? escape_entry : NULL, NULL) ? 1 : 0;
}
