/* sb_escape: tries to get out of a sandbox with direct system calls and reports every attempt
 * as one JSON line on stdout: {"attempt","escaped","errno","errname","detail"}. "escaped" true
 * means the attempt worked, which in a sandbox is a failure of the sandbox. It depends on
 * nothing but libc, so it runs in any root that has its libraries, and it is also linked into
 * the zygote test helper to run in-process. Bomb modes (fork, thread, memory, disk, CPU) report
 * how far they got before a limit stopped them; the ones a kill ends report progress as they go.
 *
 * usage: sb_escape probe [--secret NAME] [--forbidden PATH]... [--tcp ADDR:PORT]...
 *                        [--worker-pid PID] [--cpus N]
 *        sb_escape forkbomb|threadbomb|membomb|diskbomb|inodebomb|cpuspin|true
 *        sb_escape sleep SECONDS | leave-file PATH | hold-file PATH SECONDS | exit CODE */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

int sb_escape_main(int argc, char **argv);

extern char **environ;

static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static const char *errname(int e)
{
	switch (e) {
	case 0: return "";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case EROFS: return "EROFS";
	case ENOSYS: return "ENOSYS";
	case EAGAIN: return "EAGAIN";
	case ENOSPC: return "ENOSPC";
	case EFBIG: return "EFBIG";
	case ESRCH: return "ESRCH";
	case EINVAL: return "EINVAL";
	case EBADF: return "EBADF";
	case ENETUNREACH: return "ENETUNREACH";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EMFILE: return "EMFILE";
	case ENOMEM: return "ENOMEM";
	case ETXTBSY: return "ETXTBSY";
	case ENOTTY: return "ENOTTY";
	case EEXIST: return "EEXIST";
	case EFAULT: return "EFAULT";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	}
	return "other";
}

static void report(const char *attempt, int escaped, int err, const char *detail)
{
	printf("{\"attempt\":");
	json_str(attempt);
	printf(",\"escaped\":%s,\"errno\":%d,\"errname\":\"%s\",\"detail\":", escaped ? "true" : "false",
	       err, errname(err));
	json_str(detail ? detail : "");
	printf("}\n");
	fflush(stdout);
}

static void report_count(const char *attempt, long count, int err, const char *unit)
{
	printf("{\"attempt\":");
	json_str(attempt);
	printf(",\"escaped\":false,\"count\":%ld,\"unit\":\"%s\",\"errno\":%d,\"errname\":\"%s\"}\n",
	       count, unit, err, errname(err));
	fflush(stdout);
}

/* A system call that must fail: escaped when it returns >= 0. */
static void must_fail(const char *attempt, long rc)
{
	int e = rc < 0 ? errno : 0;
	report(attempt, rc >= 0, e, NULL);
}

static void try_open(const char *attempt, const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC, 0644);
	int e = fd < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	report(attempt, fd >= 0, e, path);
}

/* Runs fn in a forked child; escaped when the child exits normally (the call went through). */
static void in_child(const char *attempt, void (*fn)(void))
{
	pid_t pid = fork();
	if (pid < 0) {
		report(attempt, 0, errno, "skipped: cannot fork");
		return;
	}
	if (pid == 0) {
		fn();
		_exit(0);
	}
	int status;
	waitpid(pid, &status, 0);
	char detail[64];
	if (WIFSIGNALED(status))
		snprintf(detail, sizeof detail, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(detail, sizeof detail, "exited %d", WEXITSTATUS(status));
	report(attempt, WIFEXITED(status) && WEXITSTATUS(status) == 0, 0, detail);
}

static void i386_getpid(void)
{
	/* int 0x80 enters the kernel's i386 ABI; 20 is getpid there. */
	long ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
	_exit(ret > 0 ? 0 : 1);
}

static void x32_getpid(void)
{
	long ret = syscall(0x40000000L | 39);
	_exit(ret > 0 ? 0 : 1);
}

static void clone_newuser(void)
{
	long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid((pid_t)pid, NULL, 0);
	_exit(pid > 0 ? 0 : 1);
}

static void clone3_plain(void)
{
	uint64_t args[11] = { 0 };
	args[4] = SIGCHLD;
	long pid = syscall(SYS_clone3, args, sizeof args);
	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid((pid_t)pid, NULL, 0);
	_exit(pid > 0 ? 0 : 1);
}

/* Looks for name in a NUL-separated buffer read from path. */
static int file_mentions(const char *path, const char *name)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	static char buf[1 << 16];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	for (ssize_t i = 0; i < n; i++)
		if (!buf[i])
			buf[i] = '\n';
	buf[n] = '\0';
	return strstr(buf, name) != NULL;
}

static void probe_secret(const char *name)
{
	int found = 0;
	for (char **e = environ; e && *e; e++)
		found |= strstr(*e, name) != NULL;
	report("environment holds the secret", found, 0, name);
	found = 0;
	char detail[256] = "";
	DIR *d = opendir("/proc");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		/* Our own argv names the secret we look for. */
		if (de->d_name[0] < '0' || de->d_name[0] > '9' || atol(de->d_name) == getpid())
			continue;
		char path[300];
		snprintf(path, sizeof path, "/proc/%s/environ", de->d_name);
		if (file_mentions(path, name)) {
			found = 1;
			snprintf(detail, sizeof detail, "%s", path);
		}
		snprintf(path, sizeof path, "/proc/%s/cmdline", de->d_name);
		if (file_mentions(path, name)) {
			found = 1;
			snprintf(detail, sizeof detail, "%s", path);
		}
	}
	if (d)
		closedir(d);
	report("another process's environment holds the secret", found, 0, detail);
}

static void probe_processes(long worker_pid)
{
	int others = 0;
	char detail[256] = "";
	DIR *d = opendir("/proc");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		long pid = strtol(de->d_name, NULL, 10);
		if (pid > 0 && pid != getpid()) {
			others++;
			snprintf(detail, sizeof detail, "pid %ld visible", pid);
		}
	}
	if (d)
		closedir(d);
	report("see other processes in /proc", others > 0, 0, detail);
	snprintf(detail, sizeof detail, "getppid() = %d", (int)getppid());
	report("see the parent", getppid() != 0, 0, detail);
	must_fail("signal every other process (kill -1)", kill(-1, 0));
	if (worker_pid > 1 && worker_pid != getpid())
		must_fail("signal the worker by its host pid", kill((pid_t)worker_pid, 0));
}

static void probe_caps(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	int bad = 0, nnp = 0, seccomp = 0;
	char detail[512] = "";
	while (f && fgets(line, sizeof line, f)) {
		unsigned long long v;
		char key[32];
		if (sscanf(line, "%31[^:]: %llx", key, &v) != 2)
			continue;
		if (!strncmp(key, "Cap", 3) && v) {
			bad = 1;
			line[strcspn(line, "\n")] = '\0';
			snprintf(detail + strlen(detail), sizeof detail - strlen(detail), "%s; ", line);
		}
		if (!strcmp(key, "NoNewPrivs"))
			nnp = (int)v;
		if (!strcmp(key, "Seccomp"))
			seccomp = (int)v;
	}
	if (f)
		fclose(f);
	report("hold a capability", bad, 0, detail);
	report("run without no_new_privs", !nnp, 0, NULL);
	report("run without a seccomp filter", seccomp != 2, 0, NULL);
	char uid[32];
	snprintf(uid, sizeof uid, "uid %d", (int)getuid());
	report("run as uid 0", getuid() == 0 || geteuid() == 0, 0, uid);
	must_fail("setuid(0)", setuid(0));
}

/* Not a way out, but the set-up may place the sandbox on one CPU: the payload must not keep
 * that, it gets the CPUs its worker may use (cpus of them). */
static void probe_cpus(int cpus)
{
	cpu_set_t mask;
	char detail[64];
	int n = sched_getaffinity(0, sizeof mask, &mask) ? -1 : CPU_COUNT(&mask);
	snprintf(detail, sizeof detail, "%d of %d CPUs", n, cpus);
	report("run on fewer CPUs than the worker", n < cpus, n < 0 ? errno : 0, detail);
}

static void probe_writes(void)
{
	static const char *const dirs[] = { "/", "/etc", "/usr", "/lib", "/bin", "/dev", "/proc",
					    "/lib64", "/var" };
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		char path[64];
		snprintf(path, sizeof path, "%s/sb-escape-test", strcmp(dirs[i], "/") ? dirs[i] : "");
		try_open("write outside /tmp", path, O_CREAT | O_WRONLY);
	}
	must_fail("mkdir outside /tmp", mkdir("/sb-escape-dir", 0755));
	char self[512];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = '\0';
		try_open("open own executable for writing", self, O_WRONLY);
	}
	try_open("open a bound library for writing", "/lib/x86_64-linux-gnu/libc.so.6", O_WRONLY);
	try_open("write /proc/sysrq-trigger", "/proc/sysrq-trigger", O_WRONLY);
	try_open("write /proc/sys/kernel/hostname", "/proc/sys/kernel/hostname", O_WRONLY);
	try_open("write /proc/sys/vm/drop_caches", "/proc/sys/vm/drop_caches", O_WRONLY);
	int fd = open("/tmp/sb-escape-ok", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	report("write inside /tmp (expected to work)", 0, fd < 0 ? errno : 0, fd < 0 ? "failed" : "ok");
	if (fd >= 0) {
		close(fd);
		unlink("/tmp/sb-escape-ok");
	}
	must_fail("create a device node", mknod("/tmp/sb-null", S_IFCHR | 0666, makedev(1, 3)));
	must_fail("execute from /tmp", ({
		int f = open("/tmp/sb-exec", O_CREAT | O_WRONLY | O_CLOEXEC, 0755);
		if (f >= 0) {
			(void)!write(f, "#!/bin/sh\n", 10);
			close(f);
		}
		char *av[] = { "/tmp/sb-exec", NULL };
		long r = execve("/tmp/sb-exec", av, environ);
		unlink("/tmp/sb-exec");
		r;
	}));
}

static void probe_devices(void)
{
	static const char *const devs[] = { "/dev/mem", "/dev/kmem", "/dev/port", "/dev/vda",
					    "/dev/sda", "/dev/kmsg", "/dev/tty", "/sys/fs/cgroup",
					    "/sys/kernel" };
	for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++)
		try_open("open a host device or /sys", devs[i], O_RDONLY);
}

static void probe_syscalls(void)
{
	must_fail("ptrace(PTRACE_TRACEME)", syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0));
	must_fail("mount tmpfs", syscall(SYS_mount, "tmpfs", "/tmp", "tmpfs", 0, NULL));
	must_fail("mount --bind / on /tmp", syscall(SYS_mount, "/", "/tmp", NULL, MS_BIND, NULL));
	must_fail("remount / read-write", syscall(SYS_mount, NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL));
	must_fail("umount /proc", syscall(SYS_umount2, "/proc", MNT_DETACH));
	must_fail("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
	must_fail("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */));
	must_fail("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
	must_fail("chroot", syscall(SYS_chroot, "/tmp"));
	must_fail("unshare(CLONE_NEWUSER)", syscall(SYS_unshare, CLONE_NEWUSER));
	must_fail("unshare(CLONE_NEWNS)", syscall(SYS_unshare, CLONE_NEWNS));
	must_fail("unshare(CLONE_NEWNET)", syscall(SYS_unshare, CLONE_NEWNET));
	int nsfd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	must_fail("setns", syscall(SYS_setns, nsfd, 0));
	if (nsfd >= 0)
		close(nsfd);
	in_child("clone(CLONE_NEWUSER)", clone_newuser);
	in_child("clone3", clone3_plain);
	union bpf_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	must_fail("bpf(BPF_MAP_CREATE)", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
	struct io_uring_params up;
	memset(&up, 0, sizeof up);
	must_fail("io_uring_setup", syscall(SYS_io_uring_setup, 4, &up));
	must_fail("io_uring_enter", syscall(SYS_io_uring_enter, 0, 0, 0, 0, NULL, 0));
	must_fail("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
	must_fail("add_key", syscall(SYS_add_key, "user", "sb", "x", 1, KEY_SPEC_PROCESS_KEYRING));
	must_fail("request_key", syscall(SYS_request_key, "user", "sb", NULL, 0));
	struct perf_event_attr pe;
	memset(&pe, 0, sizeof pe);
	pe.type = PERF_TYPE_SOFTWARE;
	pe.size = sizeof pe;
	pe.config = PERF_COUNT_SW_CPU_CLOCK;
	pe.exclude_kernel = 1;
	must_fail("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
	must_fail("userfaultfd", syscall(SYS_userfaultfd, 0));
	must_fail("init_module", syscall(SYS_init_module, NULL, 0, ""));
	must_fail("finit_module", syscall(SYS_finit_module, 0, "", 0));
	must_fail("delete_module", syscall(SYS_delete_module, "sb_none", 0));
	must_fail("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
	must_fail("swapon", syscall(SYS_swapon, "/tmp/none", 0));
	must_fail("reboot", syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
				    LINUX_REBOOT_CMD_CAD_ON, NULL));
	struct {
		unsigned int bytes;
		int type;
		unsigned char h[128];
	} fh = { .bytes = 128 };
	int mount_id;
	must_fail("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &fh, &mount_id, 0));
	fh.bytes = 8;
	must_fail("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, &fh, O_RDONLY));
	char buf[8];
	struct iovec local = { buf, sizeof buf }, remote = { buf, sizeof buf };
	must_fail("process_vm_readv", syscall(SYS_process_vm_readv, getpid(), &local, 1, &remote, 1, 0));
	char c = 'x';
	must_fail("ioctl(TIOCSTI)", syscall(SYS_ioctl, 0, TIOCSTI, &c));
	must_fail("ioctl(TIOCSTI) with high bits", syscall(SYS_ioctl, 0, 0x100000000UL | TIOCSTI, &c));
	must_fail("personality(ADDR_NO_RANDOMIZE)", syscall(SYS_personality, 0x0040000));
	in_child("i386 system call (int 0x80)", i386_getpid);
	in_child("x32 system call", x32_getpid);
}

static void probe_tcp(const char *target)
{
	char host[64];
	int port;
	if (sscanf(target, "%63[^:]:%d", host, &port) != 2)
		return;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char detail[128];
	snprintf(detail, sizeof detail, "%s", target);
	if (s < 0) {
		report("connect over TCP", 0, errno, detail);
		return;
	}
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, host, &sa.sin_addr);
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	int rc = connect(s, (struct sockaddr *)&sa, sizeof sa);
	report("connect over TCP", rc == 0, rc ? errno : 0, detail);
	close(s);
}

static void *sleeper(void *arg)
{
	for (;;)
		pause();
	return arg;
}

static int bomb(const char *mode)
{
	if (!strcmp(mode, "forkbomb")) {
		long n = 0;
		for (;;) {
			pid_t pid = fork();
			if (pid == 0) {
				for (;;)
					pause();
			}
			if (pid < 0) {
				report_count("fork bomb", n, errno, "processes");
				return 0;
			}
			if (++n >= 100000) {
				report_count("fork bomb", n, 0, "processes");
				return 0;
			}
		}
	}
	if (!strcmp(mode, "threadbomb")) {
		long n = 0;
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, 65536);
		for (;;) {
			pthread_t t;
			int rc = pthread_create(&t, &a, sleeper, NULL);
			if (rc) {
				report_count("thread bomb", n, rc, "threads");
				_exit(0);
			}
			if (++n >= 100000) {
				report_count("thread bomb", n, 0, "threads");
				_exit(0);
			}
		}
	}
	if (!strcmp(mode, "membomb")) {
		long mb = 0;
		for (;;) {
			char *p = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED) {
				report_count("memory bomb", mb, errno, "MiB");
				return 0;
			}
			memset(p, 0x5a, 8 << 20);
			mb += 8;
			if (mb % 64 == 0)
				report_count("memory bomb progress", mb, 0, "MiB");
		}
	}
	if (!strcmp(mode, "diskbomb")) {
		signal(SIGXFSZ, SIG_IGN);
		static char chunk[1 << 20];
		memset(chunk, 0x5a, sizeof chunk);
		long total = 0;
		int last = 0;
		for (int f = 0; f < 1000; f++) {
			char path[64];
			snprintf(path, sizeof path, "/tmp/bomb-%d", f);
			int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
			if (fd < 0) {
				last = errno;
				break;
			}
			for (;;) {
				ssize_t n = write(fd, chunk, sizeof chunk);
				if (n <= 0) {
					last = n < 0 ? errno : ENOSPC;
					break;
				}
				total += n;
			}
			close(fd);
			if (last == ENOSPC)
				break;
		}
		report_count("disk bomb", total, last, "bytes");
		return 0;
	}
	if (!strcmp(mode, "inodebomb")) {
		long n = 0;
		for (;;) {
			char path[64];
			snprintf(path, sizeof path, "/tmp/i%ld", n);
			int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
			if (fd < 0) {
				report_count("inode bomb", n, errno, "files");
				return 0;
			}
			close(fd);
			if (++n >= 10000000) {
				report_count("inode bomb", n, 0, "files");
				return 0;
			}
		}
	}
	if (!strcmp(mode, "cpuspin")) {
		volatile unsigned long x = 0;
		for (;;)
			x++;
	}
	return -1;
}

int sb_escape_main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: sb_escape probe|MODE [ARGS]\n");
		return 2;
	}
	const char *mode = argv[1];
	if (!strcmp(mode, "true"))
		return 0;
	if (!strcmp(mode, "exit") && argc > 2)
		return atoi(argv[2]);
	if (!strcmp(mode, "sleep") && argc > 2) {
		sleep((unsigned)atoi(argv[2]));
		return 0;
	}
	if ((!strcmp(mode, "leave-file") || !strcmp(mode, "hold-file")) && argc > 2) {
		int fd = open(argv[2], O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		report("leave a file behind", 0, fd < 0 ? errno : 0, fd < 0 ? "failed" : argv[2]);
		if (fd >= 0) {
			(void)!write(fd, "left\n", 5);
			close(fd);
		}
		if (!strcmp(mode, "hold-file") && argc > 3)
			sleep((unsigned)atoi(argv[3]));
		return 0;
	}
	if (strcmp(mode, "probe")) {
		int rc = bomb(mode);
		if (rc < 0)
			fprintf(stderr, "sb_escape: unknown mode '%s'\n", mode);
		return rc < 0 ? 2 : 0;
	}
	const char *secret = "AP_JWT_SECRET";
	long worker_pid = 0;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--secret"))
			secret = argv[i + 1];
		else if (!strcmp(argv[i], "--forbidden"))
			try_open("read a path outside the sandbox", argv[i + 1], O_RDONLY);
		else if (!strcmp(argv[i], "--tcp"))
			probe_tcp(argv[i + 1]);
		else if (!strcmp(argv[i], "--worker-pid"))
			worker_pid = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--cpus"))
			probe_cpus(atoi(argv[i + 1]));
	}
	try_open("read /etc/shadow", "/etc/shadow", O_RDONLY);
	try_open("read /etc/passwd", "/etc/passwd", O_RDONLY);
	try_open("read the host root via /proc/1/root", "/proc/1/root/etc/shadow", O_RDONLY);
	probe_secret(secret);
	probe_processes(worker_pid);
	probe_caps();
	probe_writes();
	probe_devices();
	probe_syscalls();
	char host[64] = "";
	gethostname(host, sizeof host);
	report("hostname (information)", 0, 0, host);
	return 0;
}
