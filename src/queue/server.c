/* The embedded redis-server: see server.h. */
#include "queue/server.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "core/time.h"

#include <errno.h>
#include <hiredis.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int answers_ping(const char *sock)
{
	struct timeval tv = { 0, 200000 };
	redisContext *c = redisConnectUnixWithTimeout(sock, tv);
	int ok = 0;
	if (c && !c->err) {
		redisReply *r = redisCommand(c, "PING");
		ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
		if (r)
			freeReplyObject(r);
	}
	if (c)
		redisFree(c);
	return ok;
}

int bq_server_start(struct bq_server *s, const char *given_dir, struct fl_err *err)
{
	memset(s, 0, sizeof *s);
	if (mkdir(given_dir, 0700) && errno != EEXIST)
		return fl_err_set(err, -errno, "cannot create '%s': %s", given_dir, strerror(errno));
	/* redis-server changes into --dir before it opens its log file and socket, so a relative
	 * AP_CONFIG_PATH (the default ./var) must become absolute first. */
	char abs_dir[PATH_MAX];
	if (!realpath(given_dir, abs_dir))
		return fl_err_set(err, -errno, "cannot resolve '%s': %s", given_dir, strerror(errno));
	const char *dir = abs_dir;
	char *sock = fl_asprintf("%s/redis.sock", dir);
	if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		int rc = fl_err_set(err, FL_ECONFIG,
				    "redis socket path '%s' is too long for a unix socket: use a shorter "
				    "AP_CONFIG_PATH",
				    sock);
		fl_free(sock);
		return rc;
	}
	unlink(sock);
	char *logfile = fl_asprintf("%s/redis.log", dir);
	char *argv[] = { "redis-server",   "--port",         "0",        "--unixsocket",
			 sock,             "--unixsocketperm", "700",    "--dir",
			 (char *)dir,      "--appendonly",   "yes",      "--appendfsync",
			 "everysec",       "--maxmemory-policy", "noeviction", "--save",
			 "",               "--daemonize",    "no",       "--loglevel",
			 "warning",        "--logfile", logfile, NULL };
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid > 0 || pid < 0)
		fl_free(logfile);
	if (pid < 0) {
		int e = errno;
		fl_free(sock);
		return fl_err_set(err, -e, "cannot fork redis-server: %s", strerror(e));
	}
	if (pid == 0) {
		/* The mask survives exec: a caller that blocks SIGTERM for sigwait would leave
		 * redis-server deaf to our SIGTERM (and to its parent-death signal). */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		/* Only async-signal-safe calls between fork and exec (another thread may hold the
		 * stdio or allocator lock), and nothing of ours left open in the server. */
		closefrom(STDERR_FILENO + 1);
		execvp("redis-server", argv);
		static const char msg[] = "cannot run 'redis-server': not found or not executable\n";
		if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
			_exit(127);
		_exit(127);
	}
	s->pid = pid;
	s->dir = fl_strdup(dir);
	s->url = fl_asprintf("unix://%s", sock);
	int64_t deadline = fl_mono_ms() + 10000;
	while (fl_mono_ms() < deadline) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			s->pid = 0;
			bq_server_stop(s);
			fl_free(sock);
			return fl_err_set(err, FL_EIO,
					  "embedded redis-server exited at start (status %d); see '%s/redis.log'",
					  WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), dir);
		}
		if (answers_ping(sock)) {
			fl_info("redis", "embedded redis-server %d listening on '%s'", (int)pid, sock);
			fl_free(sock);
			return 0;
		}
		fl_sleep_ms(20);
	}
	bq_server_stop(s);
	fl_free(sock);
	return fl_err_set(err, FL_ETIMEOUT, "embedded redis-server did not answer within 10 s");
}

void bq_server_stop(struct bq_server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		int64_t deadline = fl_mono_ms() + 5000;
		int status;
		while (waitpid(s->pid, &status, WNOHANG) == 0) {
			if (fl_mono_ms() > deadline) {
				kill(s->pid, SIGKILL);
				waitpid(s->pid, &status, 0);
				break;
			}
			fl_sleep_ms(10);
		}
	}
	fl_free(s->dir);
	fl_free(s->url);
	memset(s, 0, sizeof *s);
}
