/* Unit tests for src/sandbox that need no namespaces: root validation, library discovery, the
 * root plan, the mode checks and their messages, the seccomp filters, and SANDBOX_CODE_ONLY in a
 * forked child. Spawning real sandboxes is tests/sandbox/run.py's job (the escape suite). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "sandbox/host.h"
#include "sandbox/root.h"
#include "sandbox/sandbox.h"
#include "sandbox/sb_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_root_validation(void **state)
{
	struct fl_err err;
	struct sb_root *root = sb_root_new();
	assert_int_equal(sb_root_add(root, "/bin/true", "relative/path", 0, &err), FL_EINVAL);
	assert_int_equal(sb_root_add(root, "/bin/true", "/a/../b", 0, &err), FL_EINVAL);
	assert_int_equal(sb_root_add(root, "/bin/true", "/a//b", 0, &err), FL_EINVAL);
	assert_int_equal(sb_root_add(root, "/bin/true", "/a/", 0, &err), FL_EINVAL);
	assert_int_equal(sb_root_add(root, "/bin/true", "/", 0, &err), FL_EINVAL);
	assert_int_equal(sb_root_add(root, "/bin/true", "/tmp", 0, &err), FL_EINVAL);
	assert_non_null(strstr(err.msg, "reserved"));
	assert_int_equal(sb_root_add(root, "/bin/true", "/proc", 0, &err), FL_EINVAL);
	assert_int_equal(sb_root_add(root, "/bin/true", "/dev/true", 0, &err), FL_EINVAL);
	assert_int_equal(sb_root_add(root, "/no/such/file", NULL, 0, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "'/no/such/file'"));
	assert_int_equal(sb_root_add(root, "/no/such/file", NULL, SB_PATH_OPTIONAL, &err), 0);
	assert_int_equal(sb_root_count(root), 0);
	assert_int_equal(sb_root_add(root, "/dev/null", "/x/null", 0, &err), FL_EINVAL);

	assert_int_equal(sb_root_add(root, "/etc/hostname", "/etc/hostname", 0, &err), 0);
	assert_int_equal(sb_root_add(root, "/etc/hostname", NULL, 0, &err), 0); /* same twice: fine */
	assert_int_equal(sb_root_count(root), 1);
	assert_int_equal(sb_root_add(root, "/etc/hosts", "/etc/hostname", 0, &err), FL_EINVAL);
	/* A mount point inside a bound directory would be created on the host. */
	assert_int_equal(sb_root_add(root, "/usr/share", "/data", 0, &err), 0);
	assert_int_equal(sb_root_add(root, "/etc/hosts", "/data/hosts", 0, &err), FL_EINVAL);
	assert_non_null(strstr(err.msg, "overlap"));
	assert_int_equal(sb_root_add(root, "/usr", "/etc", 0, &err), FL_EINVAL);
	/* Nothing can be added once a spawn has used the root. */
	const struct sb_plan *plan;
	assert_int_equal(sb__root_plan(root, &plan, &err), 0);
	assert_int_equal(sb_root_add(root, "/etc/hosts", "/etc/hosts", 0, &err), FL_EINVAL);
	sb_root_free(root);
}

static int root_has(const struct sb_root *root, const char *dst)
{
	for (int i = 0; i < sb_root_count(root); i++) {
		const char *s, *d;
		sb_root_get(root, i, &s, &d);
		if (!strcmp(d, dst))
			return 1;
	}
	return 0;
}

static void test_root_exec(void **state)
{
	struct fl_err err;
	struct sb_root *root = sb_root_new();
	assert_int_equal(sb_root_add_exec(root, "/bin/true", &err), 0);
	assert_true(root_has(root, "/bin/true"));
	assert_true(root_has(root, "/lib64/ld-linux-x86-64.so.2"));
	int libc = 0;
	for (int i = 0; i < sb_root_count(root); i++) {
		const char *s, *d;
		sb_root_get(root, i, &s, &d);
		libc |= strstr(d, "/libc.so.6") != NULL;
		assert_int_equal(s[0], '/');
	}
	assert_true(libc);
	assert_int_equal(sb_root_add_exec(root, "/etc/hostname", &err), FL_EINVAL);
	assert_non_null(strstr(err.msg, "ELF"));
	assert_int_equal(sb_root_add_net_files(root, &err), 0);
	assert_true(root_has(root, "/etc/resolv.conf") || access("/etc/resolv.conf", F_OK));
	sb_root_free(root);
}

static void test_plan(void **state)
{
	struct fl_err err;
	struct sb_root *root = sb_root_new();
	assert_int_equal(sb_root_add_exec(root, "/bin/true", &err), 0);
	const struct sb_plan *plan;
	assert_int_equal(sb__root_plan(root, &plan, &err), 0);
	assert_string_equal(plan->scratch, "/tmp");
	/* Directories first, each before what is below it; then links, binds, devices. */
	int seen_bind = 0, devs = 0;
	for (size_t i = 0; i < plan->n_ops; i++) {
		const struct sb_op *op = &plan->ops[i];
		assert_int_equal(strncmp(op->dst, "/tmp/", 5), 0);
		assert_string_equal(op->dst + 4, op->show);
		if (op->kind == SB_OP_MKDIR) {
			assert_false(seen_bind);
			for (size_t j = 0; j < i; j++)
				assert_true(strncmp(plan->ops[j].show, op->show, strlen(op->show)) ||
					    strlen(plan->ops[j].show) <= strlen(op->show));
		} else if (op->kind == SB_OP_BIND) {
			seen_bind = 1;
		} else if (op->kind == SB_OP_BIND_DEV) {
			devs++;
		}
	}
	assert_true(devs >= 3);
	sb_root_free(root);

	/* A source under /tmp: the root must be built elsewhere, or it would hide the source. */
	char dir[] = "/tmp/sb-plan-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char file[64];
	snprintf(file, sizeof file, "%s/f", dir);
	close(open(file, O_CREAT | O_WRONLY, 0644));
	root = sb_root_new();
	assert_int_equal(sb_root_add(root, file, "/data/f", 0, &err), 0);
	assert_int_equal(sb__root_plan(root, &plan, &err), 0);
	assert_string_not_equal(plan->scratch, "/tmp");
	sb_root_free(root);
	unlink(file);
	rmdir(dir);
}

static void full_host(struct sb_host *h)
{
	memset(h, 0, sizeof *h);
	h->root = h->userns = h->netns = h->sandbox = h->seccomp = 1;
	h->cgroup = 2;
}

static void test_host_check(void **state)
{
	struct fl_err err;
	struct sb_host h;
	full_host(&h);
	assert_int_equal(sb_host_check(&h, FL_EXEC_SANDBOX_PROCESS, FL_NET_STRICT, &err), 0);
	assert_int_equal(sb_host_check(&h, FL_EXEC_SANDBOX_CODE_AND_PROCESS, FL_NET_UNRESTRICTED, &err), 0);

	full_host(&h);
	h.userns = 0;
	snprintf(h.userns_why, sizeof h.userns_why, "user namespaces are disabled (sysctl user.max_user_namespaces = 0)");
	assert_int_equal(sb_host_check(&h, FL_EXEC_SANDBOX_PROCESS, FL_NET_UNRESTRICTED, &err), FL_EUNSUPPORTED);
	assert_non_null(strstr(err.msg, "AP_EXECUTION_MODE=SANDBOX_PROCESS"));
	assert_non_null(strstr(err.msg, "max_user_namespaces"));
	/* UNSANDBOXED never needs anything; CODE_ONLY needs seccomp only. */
	assert_int_equal(sb_host_check(&h, FL_EXEC_UNSANDBOXED, FL_NET_STRICT, &err), 0);
	assert_int_equal(sb_host_check(&h, FL_EXEC_SANDBOX_CODE_ONLY, FL_NET_STRICT, &err), 0);

	full_host(&h);
	h.cgroup = 0;
	snprintf(h.cgroup_why, sizeof h.cgroup_why, "cgroup v2: the memory controller is not delegated to '/x'");
	assert_int_equal(sb_host_check(&h, FL_EXEC_SANDBOX_CODE_AND_PROCESS, FL_NET_UNRESTRICTED, &err), FL_EUNSUPPORTED);
	assert_non_null(strstr(err.msg, "delegat"));

	full_host(&h);
	h.netns = 0;
	snprintf(h.netns_why, sizeof h.netns_why, "cannot create a network namespace: Operation not permitted");
	assert_int_equal(sb_host_check(&h, FL_EXEC_SANDBOX_PROCESS, FL_NET_UNRESTRICTED, &err), 0);
	assert_int_equal(sb_host_check(&h, FL_EXEC_SANDBOX_PROCESS, FL_NET_STRICT, &err), FL_EUNSUPPORTED);
	assert_non_null(strstr(err.msg, "STRICT"));

	full_host(&h);
	h.seccomp = 0;
	snprintf(h.seccomp_why, sizeof h.seccomp_why, "the kernel has no seccomp filters");
	assert_int_equal(sb_host_check(&h, FL_EXEC_SANDBOX_CODE_ONLY, FL_NET_UNRESTRICTED, &err), FL_EUNSUPPORTED);
	assert_non_null(strstr(err.msg, "seccomp"));

	full_host(&h);
	h.sandbox = 0;
	snprintf(h.sandbox_why, sizeof h.sandbox_why, "sandbox step 'mounts' failed: cannot mount '/proc': Operation not permitted");
	assert_int_equal(sb_host_check(&h, FL_EXEC_SANDBOX_PROCESS, FL_NET_UNRESTRICTED, &err), FL_EUNSUPPORTED);
	assert_non_null(strstr(err.msg, "'mounts'"));

	/* A spawn on such a host is refused too, never run unsandboxed. */
	struct sb_root *root = sb_root_new();
	struct sb_opts opts;
	sb_opts_init(&opts, &h, root);
	char *argv[] = { "/bin/true", NULL };
	struct sb_child child;
	assert_int_equal(sb_spawn(&opts, argv, NULL, 0, &child, &err), FL_EUNSUPPORTED);
	sb_root_free(root);

	json_t *j = sb_host_json(&h);
	assert_true(json_is_false(json_object_get(j, "sandbox")));
	assert_non_null(json_object_get(json_object_get(j, "missing"), "sandbox"));
	json_decref(j);

	/* A memory limit the set-up itself could hit is refused, before anything is started. */
	full_host(&h);
	snprintf(h.cgroup_dir, sizeof h.cgroup_dir, "/nonexistent");
	sb_opts_init(&opts, &h, root = sb_root_new());
	opts.limits.memory_bytes = 1 << 20;
	assert_int_equal(sb_spawn(&opts, argv, NULL, 0, &child, &err), FL_EINVAL);
	assert_non_null(strstr(err.msg, "minimum"));
	sb_root_free(root);
}

static void test_filters(void **state)
{
	struct fl_err err;
	for (unsigned kind = 0; kind < 4; kind++) {
		const struct sock_fprog *prog, *again;
		assert_int_equal(sb__filter_get(kind, &prog, &err), 0);
		assert_true(prog->len > 20);
		assert_int_equal(sb__filter_get(kind, &again, &err), 0);
		assert_ptr_equal(prog, again);
	}
}

/* In a child: enter SANDBOX_CODE_ONLY, then report what still works as exit-code bits. */
static int code_only_child(void)
{
	struct sb_code_only_opts opts;
	sb_code_only_opts_init(&opts);
	opts.flags = SB_DENY_INET;
	struct fl_err err;
	if (sb_code_only_enter(&opts, &err))
		return 100;
	int bits = 0;
	char *argv[] = { "/bin/true", NULL };
	if (execve("/bin/true", argv, NULL) == 0 || errno != EPERM)
		bits |= 1;
	if (unshare(CLONE_NEWUSER) == 0 || errno != EPERM)
		bits |= 2;
	if (fork() >= 0 || errno != EPERM)
		bits |= 4;
	if (socket(AF_INET, SOCK_STREAM, 0) >= 0 || errno != EPERM)
		bits |= 8;
	int fds[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds))
		bits |= 16; /* unix sockets stay: the egress broker's way out */
	if (geteuid() == 0)
		bits |= 32;
	return bits;
}

static void test_code_only(void **state)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(code_only_child());
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	fl_alloc_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_root_validation),
		cmocka_unit_test(test_root_exec),
		cmocka_unit_test(test_plan),
		cmocka_unit_test(test_host_check),
		cmocka_unit_test(test_filters),
		cmocka_unit_test(test_code_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
