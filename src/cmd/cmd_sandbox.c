/* `flowd sandbox check`: what this host lets the sandbox modes use, and which modes it refuses
 * and why, as an operator would want to know before setting AP_EXECUTION_MODE. The probe is
 * the one the worker runs at start (src/sandbox/host.c). */
#include "cmd/cmd.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"
#include "sandbox/host.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_sandbox(int argc, char **argv)
{
	int json = 0;
	if (argc < 2 || strcmp(argv[1], "check")) {
		fprintf(stderr, "flowd sandbox: unknown or missing action; see 'flowd help sandbox'\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else {
			fprintf(stderr, "flowd sandbox: unknown option '%s'; see 'flowd help sandbox'\n", argv[i]);
			return 2;
		}
	}
	struct fl_err err;
	fl_err_clear(&err);
	struct sb_host host;
	if (sb_host_probe(&host, 0, &err)) {
		fprintf(stderr, "flowd sandbox: %s\n", err.msg);
		return 1;
	}
	/* The configured mode decides the exit status; the others are shown for information. */
	const char *want = getenv("AP_EXECUTION_MODE");
	const char *want_net = getenv("AP_NETWORK_MODE");
	int status = 0;
	json_t *modes = json_object();
	for (int m = FL_EXEC_UNSANDBOXED; m <= FL_EXEC_SANDBOX_CODE_AND_PROCESS; m++) {
		for (int n = FL_NET_UNRESTRICTED; n <= FL_NET_STRICT; n++) {
			int rc = sb_host_check(&host, m, n, &err);
			char key[96];
			snprintf(key, sizeof key, "%s/%s", fl_execution_mode_name(m), fl_network_mode_name(n));
			json_object_set_new(modes, key, json_string(rc ? err.msg : "ok"));
			if (!json)
				printf("%-42s %s\n", key, rc ? err.msg : "ok");
			if (rc && want && !strcmp(want, fl_execution_mode_name(m)) &&
			    !strcmp(want_net ? want_net : "UNRESTRICTED", fl_network_mode_name(n)))
				status = 1;
		}
	}
	json_t *host_json = sb_host_json(&host);
	if (json) {
		json_object_set_new(host_json, "modes", modes);
		struct fl_buf b = FL_BUF_INIT;
		fl_json_write(&b, host_json, FL_JSON_INDENT);
		printf("%s\n", b.data);
		fl_buf_release(&b);
	} else {
		json_decref(modes);
		printf("\ncgroup: %s%s\n", host.cgroup ? (host.cgroup == 2 ? "v2 " : "v1 ") : "none: ",
		       host.cgroup ? host.cgroup_dir : host.cgroup_why);
	}
	json_decref(host_json);
	return status;
}
