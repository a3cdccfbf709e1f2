/* @activepieces/piece-approval: links that resume the run, and a step that pauses until one of
 * them is called. The links of create_approval_links carry the waitpoint id that the next
 * wait_for_approval of the run pauses with (the walker hands it over), so that a link sent out
 * before the pause resumes it. */
#include "core/alloc.h"
#include "core/err.h"
#include "engine/pieces/pieces.h"

#include <string.h>

int pc_approval_create_links(struct pc_ctx *ctx, const json_t *input, json_t **output,
			     struct fl_err *err)
{
	char *base = fl_asprintf("%s/v1/flow-runs/%s/waitpoints/%s", ctx->frontend_url,
				 ctx->run_id, ctx->waitpoint_id);
	char *yes = fl_asprintf("%s?action=approve", base);
	char *no = fl_asprintf("%s?action=disapprove", base);
	*output = json_pack("{s:s, s:s}", "approvalLink", yes, "disapprovalLink", no);
	ctx->made_approval_links = 1;
	fl_free(base);
	fl_free(yes);
	fl_free(no);
	return 0;
}

int pc_approval_wait(struct pc_ctx *ctx, const json_t *input, json_t **output,
		     struct fl_err *err)
{
	if (ctx->resume) {
		const json_t *q = json_object_get(ctx->resume, "queryParams");
		const char *action = json_string_value(json_object_get(q, "action"));
		*output = json_pack("{s:b}", "approved", action && !strcmp(action, "approve"));
		return 0;
	}
	ctx->pause = json_pack("{s:s}", "type", "WEBHOOK");
	*output = json_object();
	return 0;
}
