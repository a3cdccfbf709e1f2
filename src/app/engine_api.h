/* The worker-facing HTTP API of the app: /v1/engine/... This header is the contract between the
 * app (which implements it in engine_api.c) and the worker (which is its only client). The
 * worker never touches the database; everything a job needs and everything it produces goes
 * through these endpoints.
 *
 * AUTHENTICATION
 *   Every request carries `Authorization: Bearer <token>`, where the token is minted by the
 *   worker with core/token.h: fl_token_sign(AP_JWT_SECRET, runId, now_s, exp_s). The app answers
 *   401 {"error"} for a missing, forged or expired token, and 403 {"error"} when the token names
 *   another run than the URL. Give the token an expiry past the job's whole life: now +
 *   AP_FLOW_TIMEOUT_SECONDS + a few minutes of retry margin. The /store endpoints accept the
 *   token of any run.
 *
 * ERRORS
 *   Every answer is JSON. Errors are {"error": "<message>"} with:
 *     400  the body is not what this header describes (the message says which field)
 *     401  bad token (see above)
 *     404  unknown run: the job is useless; fail it without retry
 *     409  the run moved on (final, canceled, paused, or this attempt was superseded by a later
 *          delivery of the job): stop working on the job, do not post anything more for this
 *          attempt. The body also has "status" (the run's status now).
 *     413  body too large (limit: 2 * AP_MAX_FLOW_RUN_LOG_SIZE_MB + 1 MiB)
 *     5xx  the app or its database failed: retry with backoff (see DURABILITY)
 *
 * THE LIFE OF ONE DELIVERY
 *   1. POST /v1/engine/runs/:runId/start   once per delivery of a job, before anything else.
 *      Request: {"jobId": "<BullMQ job id>",
 *                "delivery": "<jobId>:<attemptsStarted>",   unique per delivery; makes a retried
 *                                                            start return the same attempt
 *                "workerId": "<worker name>",                recorded on the run's attempt
 *                "executionType": "BEGIN" | "RESUME"}        from the job data
 *      200: {"runId", "flowId", "flowVersionId",
 *            "attempt": n,              this delivery's attempt number: send it back on every
 *                                       later request of this delivery
 *            "executionType", "synchronous",
 *            "flowVersion": {...},      the flow version JSON, for eng_flow_parse
 *            "triggerOutput": {...},    eng_run_opts.trigger_output
 *            "steps": {...},            eng_run_opts.replay: the run's persisted steps as a
 *                                       §5.4 steps object (records merged by path)
 *            "resume": null | {"waitpointId", "stepPath",
 *                              "payload": {...}},  eng_run_opts.resume ({} for a delay)
 *            "frontendUrl": "...",      eng_run_opts.frontend_url
 *            "logSizeLimitBytes": n}    eng_run_opts.log_size_limit
 *      The run is RUNNING from here. 409 means the job must not run: complete it (the run is
 *      final, canceled, or paused and this is not its resume job, or a newer job replaced it).
 *
 *   2. POST /v1/engine/runs/:runId/steps   for every finished step the engine reports
 *      (eng_host.step_finished). A step with effects must be answered 2xx before the engine
 *      goes on; pure steps may be batched into the next request. The app commits the records
 *      before it answers. Posting the same records again is harmless (insert or replace by
 *      path), so a request that timed out may simply be retried.
 *      Request: {"attempt": n,
 *                "steps": [{"path": "loop_1[2].step_3",   eng_step_event.path
 *                           "record": {StepOutput}}, ...], eng_step_event.record, as it is
 *                "replayed": ["step_1", ...]?}  paths of the steps this attempt reused instead
 *                                     of running (eng_host.step_replayed) since its last post
 *      200: {"ok": true}.  409: this attempt was superseded: kill the engine, drop the job.
 *
 *   3. POST /v1/engine/runs/:runId/response   when a return_response step answers
 *      (eng_host.respond), as soon as it does: a sync webhook caller is waiting for it.
 *      Request: {"attempt": n, "response": {"status", "headers", "body"}}
 *      200: {"stored": true|false} (only the run's first response counts).
 *      When the run finishes right after it responds (respond: stop), the response may travel
 *      in the result instead, saving a request: the app answers the sync caller from either.
 *
 *   4. POST /v1/engine/runs/:runId/result   once, when the engine finishes (eng_run's result),
 *      BEFORE the BullMQ job is completed or failed (the reaper treats a RUNNING run whose job
 *      is gone as lost).
 *      Request: {"attempt": n,
 *                "status": "SUCCEEDED" | "FAILED" | "PAUSED" | "TIMEOUT" | "INTERNAL_ERROR" |
 *                          "MEMORY_LIMIT_EXCEEDED" | "LOG_SIZE_EXCEEDED",
 *                "steps": {...}?,           the result's §5.4 steps (shown by GET flow-runs/:id)
 *                "failedStep": {...}?, "response": {...}?, "duration": ms?,
 *                "waitpoint": {"id", "type": "WEBHOOK"|"DELAY", "stepPath",
 *                              "resumeAt": ms | ISO string}?     required with PAUSED
 *                "records": [{"path","record"}]?   steps not yet posted (committed first)
 *                "replayed": [path, ...]?   replayed steps not yet posted, as for /steps
 *                "final": true|false?}       default true. false: this attempt failed but the
 *                                            BullMQ job will be retried (attempts left), so the
 *                                            run stays open: it goes back to QUEUED and the
 *                                            attempt is recorded with this status.
 *      200: {"status": "<run status now>"}. Posting the same result again returns 200.
 *      PAUSED: the app opens the waitpoint; a WEBHOOK waitpoint whose call arrived first
 *      resumes at once, a DELAY waitpoint becomes a delayed RESUME job. Either way the worker
 *      then completes the job.
 *
 *   POST /v1/engine/runs/:runId/pause   the same as a result with status PAUSED:
 *      {"attempt", "waitpoint": {...}, "steps"?, "records"?}. Posting the PAUSED result after
 *      it returns 200 and changes nothing, even if the resume has already started the next
 *      attempt.
 *
 * PIECE STORE (the store piece; keys as the engine scopes them, 1..128 characters; values are
 * any JSON up to 512 KiB)
 *   GET    /v1/engine/store?key=<urlencoded key>   200 {"key","value"} or 404 {"error"}
 *   PUT    /v1/engine/store?key=...  body {"value": ...}   200 {"key","value"}
 *   DELETE /v1/engine/store?key=...                        200 {"deleted": true|false}
 *
 * JOBS THE APP ENQUEUES (shared/DESIGN.md §3)
 *   name EXECUTE_FLOW on AP_QUEUE_NAME, data
 *   {"schemaVersion":1,"runId","flowId","flowVersionId","executionType","synchronous"};
 *   job id: the run id (first delivery), "<runId>_<waitpointId>" (a resume), "<runId>_retry<n>"
 *   (a FROM_FAILED_STEP retry). Options: attempts 3 with exponential backoff from 1 s (the
 *   worker retries an attempt that ended INTERNAL_ERROR by failing the job, after posting the
 *   result with "final": false), removeOnComplete true, removeOnFail {age: 7 days}.
 *
 * DURABILITY
 *   While the app is unreachable or answers 5xx, the worker keeps every request and retries it
 *   in order with backoff, holding its job (lock renewed) until the result is accepted. Every
 *   endpoint above is safe to retry. */
#ifndef APP_ENGINE_API_H
#define APP_ENGINE_API_H

#include <stddef.h>

/* Bytes of body the /v1/engine endpoints accept, given AP_MAX_FLOW_RUN_LOG_SIZE_MB. */
size_t app_engine_body_limit(int max_log_size_mb);

/* The store piece's limits (shared/FLOWS.md §4). */
#define APP_STORE_KEY_MAX 128
#define APP_STORE_VALUE_MAX (512 * 1024)

/* Job options the app gives EXECUTE_FLOW jobs. */
#define APP_JOB_NAME "EXECUTE_FLOW"
#define APP_JOB_ATTEMPTS 3
#define APP_JOB_BACKOFF_MS 1000
#define APP_JOB_FAILED_AGE_S (7 * 24 * 3600)

#endif
