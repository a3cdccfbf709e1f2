/* A throwaway PostgreSQL server for tests: initdb + pg_ctl -w on a temp dir with fsync off,
 * listening only on a unix socket in that dir, run as the `postgres` user when the test runs as
 * root. A guard process outside the test's process group stops the server and removes the dir
 * when the test exits, however it exits (even SIGKILL). Header-only so that each test executable
 * stays one file. */
#ifndef TEST_PG_HARNESS_H
#define TEST_PG_HARNESS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct pg_harness {
	char dir[128];
	char bin[256];
	char conninfo[256];
	pid_t guard;
	int guard_fd;
	uid_t uid;
	gid_t gid;
};

static int pg_find_bin(char *out, size_t size)
{
	const char *env = getenv("FLOWD_PG_BIN");
	if (env && *env) {
		snprintf(out, size, "%s", env);
		return 0;
	}
	glob_t g;
	if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
		snprintf(out, size, "%s", g.gl_pathv[g.gl_pathc - 1]);
		globfree(&g);
		*strrchr(out, '/') = '\0';
		return 0;
	}
	globfree(&g);
	return -1;
}

/* Runs argv as the harness's user, with stdout/stderr to log; returns the exit status. */
static int pg_run(struct pg_harness *h, char *const argv[], const char *log)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (getuid() == 0 && (setgid(h->gid) || setuid(h->uid)))
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void pg_rmtree(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char p[4096];
			snprintf(p, sizeof p, "%s/%s", path, e->d_name);
			struct stat st;
			if (!lstat(p, &st) && S_ISDIR(st.st_mode))
				pg_rmtree(p);
			else
				unlink(p);
		}
		closedir(d);
	}
	rmdir(path);
}

static void pg_stop_now(struct pg_harness *h)
{
	char ctl[300], data[160], log[160];
	snprintf(ctl, sizeof ctl, "%s/pg_ctl", h->bin);
	snprintf(data, sizeof data, "%s/data", h->dir);
	snprintf(log, sizeof log, "%s/stop.log", h->dir);
	char *argv[] = { ctl, "-D", data, "-m", "immediate", "-w", "stop", NULL };
	/* A server caught starting has no pid file yet: try again for a while. */
	for (int i = 0; i < 10 && pg_run(h, argv, log); i++)
		sleep(1);
	pg_rmtree(h->dir);
}

/* Starts the server; returns 0, or -1 with a message on stderr (the caller skips or fails). */
static int pg_harness_start(struct pg_harness *h)
{
	memset(h, 0, sizeof *h);
	h->guard_fd = -1;
	if (pg_find_bin(h->bin, sizeof h->bin)) {
		fprintf(stderr, "pg_harness: no PostgreSQL binaries (set FLOWD_PG_BIN)\n");
		return -1;
	}
	snprintf(h->dir, sizeof h->dir, "/tmp/flowd-pg-XXXXXX");
	if (!mkdtemp(h->dir)) {
		perror("pg_harness: mkdtemp");
		return -1;
	}
	h->uid = getuid();
	h->gid = getgid();
	if (getuid() == 0) {
		/* initdb refuses to run as root. */
		struct passwd *pw = getpwnam("postgres");
		if (!pw) {
			fprintf(stderr, "pg_harness: running as root and no 'postgres' user\n");
			pg_rmtree(h->dir);
			return -1;
		}
		h->uid = pw->pw_uid;
		h->gid = pw->pw_gid;
		if (chown(h->dir, h->uid, h->gid)) {
			perror("pg_harness: chown");
			pg_rmtree(h->dir);
			return -1;
		}
	}

	/* The guard: it waits for EOF on a pipe, which happens when the test exits for any reason,
	 * then stops the server. setsid keeps it alive when the test's process group is killed. */
	int fds[2];
	if (pipe(fds)) {
		pg_rmtree(h->dir);
		return -1;
	}
	pid_t guard = fork();
	if (guard == 0) {
		close(fds[1]);
		setsid();
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		char c;
		while (read(fds[0], &c, 1) != 0 && errno == EINTR)
			;
		pg_stop_now(h);
		_exit(0);
	}
	close(fds[0]);
	fcntl(fds[1], F_SETFD, FD_CLOEXEC);
	h->guard = guard;
	h->guard_fd = fds[1];

	char initdb[300], ctl[300], data[160], log[160], opts[512];
	snprintf(initdb, sizeof initdb, "%s/initdb", h->bin);
	snprintf(ctl, sizeof ctl, "%s/pg_ctl", h->bin);
	snprintf(data, sizeof data, "%s/data", h->dir);
	snprintf(log, sizeof log, "%s/server.log", h->dir);
	char *init_argv[] = { initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
			      "--no-sync", NULL };
	char init_log[160];
	snprintf(init_log, sizeof init_log, "%s/initdb.log", h->dir);
	if (pg_run(h, init_argv, init_log)) {
		fprintf(stderr, "pg_harness: initdb failed; see %s\n", init_log);
		return -1;
	}
	snprintf(opts, sizeof opts,
		 "-k %s -c listen_addresses= -p 5432 -c fsync=off -c synchronous_commit=off "
		 "-c full_page_writes=off -c max_connections=50",
		 h->dir);
	char *start_argv[] = { ctl, "-D", data, "-o", opts, "-l", log, "-w", "-t", "60", "start",
			       NULL };
	char ctl_log[160];
	snprintf(ctl_log, sizeof ctl_log, "%s/pg_ctl.log", h->dir);
	if (pg_run(h, start_argv, ctl_log)) {
		fprintf(stderr, "pg_harness: pg_ctl start failed; see %s\n", log);
		return -1;
	}
	snprintf(h->conninfo, sizeof h->conninfo, "host=%s port=5432 user=postgres dbname=postgres",
		 h->dir);
	return 0;
}

/* Stops the server and waits until it is gone. */
static void pg_harness_stop(struct pg_harness *h)
{
	if (h->guard_fd >= 0) {
		close(h->guard_fd);
		h->guard_fd = -1;
	}
	if (h->guard > 0) {
		waitpid(h->guard, NULL, 0);
		h->guard = 0;
	}
}

#endif
