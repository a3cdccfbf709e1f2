/* The engine's pipe protocol (shared/DESIGN.md §5.1): how a worker drives `flowd engine`.
 *
 * Framing. Both directions carry newline-delimited JSON: one compact JSON object per line,
 * UTF-8, no newline inside an object. The worker writes to the engine's stdin and reads the
 * engine's stdout; the engine's stderr carries its logs (JSON lines) and nothing else.
 *
 * Start. The engine first writes {"type":"ready","protocol":1,"version":"0.1.0"}.
 *
 * Operation (worker → engine), one per run:
 *   {"type":"run",
 *    "runId":"…",                      21 characters; Idempotency-Keys, waitpoint ids
 *    "flowId":"…",                     store scopes FLOW and RUN
 *    "flowVersion":{…},                a flow version, an export or a template (FLOWS.md §1)
 *    "flowVersionId":"…",              optional: the version's id. An engine keeps what it made
 *                                      of the last ENG_PROTO_FLOWS_KEPT versions that came with
 *                                      an id (the flow, or the error it gave), and an operation
 *                                      with the id of one of them may leave "flowVersion" out.
 *                                      A version that comes with an id the engine keeps replaces
 *                                      it in place; a new one goes in as the oldest goes out, so
 *                                      a worker that counts what it sent knows what the engine
 *                                      keeps. Versions never change under an id.
 *    "triggerOutput":{…},              the trigger step's output; absent: {} (or the schedule's)
 *    "steps":{…},                      the run's persisted steps (the "steps" of §5.4) to replay;
 *                                      absent or {} on a first delivery
 *    "resume":{"body","headers","queryParams"},  present on a RESUME job: re-enters the step
 *                                      that "steps" holds as PAUSED ({} for a delay)
 *    "frontendUrl":"https://…",        base of resume URLs (AP_FRONTEND_URL)
 *    "limits":{"logSizeBytes":n,       AP_MAX_FLOW_RUN_LOG_SIZE_MB in bytes (default 10 MiB)
 *              "jsTimeMs":n,           per template evaluation and code step (default 10000)
 *              "timeoutMs":n},         no step starts after this many ms (TIMEOUT); 0: none
 *    "network":{"mode":"STRICT"|"UNRESTRICTED","allowList":"10.0.0.5,192.168.1.0/24"},
 *                                      the policy of the http piece and fetch (DESIGN.md §7);
 *                                      absent: AP_NETWORK_MODE and AP_SSRF_ALLOW_LIST from the
 *                                      engine's environment, else UNRESTRICTED
 *    "flags":{"ackAll":bool,           ackAll: wait for an ack after every step, not only after
 *                                      steps with effects
 *             "noCheckpoint":bool,     noCheckpoint: wait for no ack at all, so that nothing is
 *                                      durable before the run ends; it exists only to measure
 *                                      what the checkpoint barrier costs (bench/durability.sh)
 *             "last":bool}}            last: no operation follows (a process-mode engine), so
 *                                      nothing is prepared for one while the engine waits
 *
 * Events (engine → worker), in this order for one run:
 *   {"type":"step_replayed","runId","name","path"}
 *       the step was not run: its finished record in "steps" was reused as it is (a loop
 *       replayed whole is one event; a loop replayed per iteration sends one per reused body
 *       step); no ack. The worker reports these with its next checkpoint, so that the run's
 *       record says which steps each attempt replayed and which it executed.
 *   {"type":"step_started","runId","name","path"}
 *   {"type":"step_finished","runId","name","path","pathJson":[…],"record":StepOutput,
 *    "effects":bool,"ack":bool,"console"?:"…"}
 *       path is "<name>" at the top level, "<loop>[<i>].<name>" inside loops (1-based i);
 *       pathJson is the same as ["loop",i,"name"], ready for eng_steps_merge() (engine.h),
 *       which merges the record into the run's steps object. "console" is what a code step
 *       printed (console.log and friends), for the worker's logs; it is not part of the record. A loop's own record (with all its
 *       iterations) comes when the loop ends, after those of its body steps.
 *       When "ack" is true the engine reads nothing else and goes on only after the worker
 *       answers {"type":"ack"} once the record is persisted. {"type":"ack","ok":false,
 *       "error":"…"} ends the run INTERNAL_ERROR (a lost lock, an app that refuses).
 *       Records with "ack":false (compute-only steps: router, loop bookkeeping, data mapper,
 *       the trigger) may be batched by the worker with the next acknowledged one.
 *   {"type":"respond","runId","response":{"status","headers","body"}}
 *       a return_response step answered (the sync webhook reply); no ack.
 *   {"type":"paused","runId","waitpoint":{"id","type":"DELAY"|"WEBHOOK","resumeAt"?,
 *    "resumeAtIso"?,"stepName","stepPath","resumeUrl"},"ack":true}
 *       resumeAt is ms since the epoch (DELAY only). The worker persists the waitpoint, then
 *       acks; the run's "finished" event follows with status PAUSED.
 *   {"type":"store","runId","op":"get"|"put"|"delete","key":"…","value"?:…}
 *       the store piece; the worker answers {"type":"store_result","found":bool,"value":…}
 *       for get, {"type":"store_result"} for put/delete, or {"type":"store_result",
 *       "error":"…"} (the step fails with that message).
 *   {"type":"finished","runId","status":"SUCCEEDED"|…,"result":{…},"cpuNs"}
 *       the run result of §5.4 (status, steps, failedStep?, response?, duration, waitpoint?);
 *       cpuNs is the CPU time the whole engine process spent since the previous operation
 *       ended (or since ready): the operation's, with what was prepared for it while idle.
 *       An operation that cannot be run at all (an invalid flow) finishes with status
 *       INTERNAL_ERROR and an "error" message, and no other event.
 *
 * After "finished" the engine reads the next operation: a slot may reuse its engine
 * (UNSANDBOXED mode). EOF on stdin, or {"type":"exit"}, ends the engine with exit code 0. A
 * line that is not JSON, or an unexpected type, ends it with exit code 3 after a message on
 * stderr. Exit codes and signals otherwise follow DESIGN.md §5.1 (killed at timeout: TIMEOUT;
 * memory limit: MEMORY_LIMIT_EXCEEDED; anything else: INTERNAL_ERROR). */
#ifndef ENG_PROTO_H
#define ENG_PROTO_H

#include <stdio.h>

#define ENG_PROTO_VERSION 1

/* How many flow versions sent with a "flowVersionId" an engine keeps, oldest out first. */
#define ENG_PROTO_FLOWS_KEPT 4

/* Exit code of `flowd engine` when its input breaks the protocol. */
#define ENG_PROTO_EXIT_BAD_INPUT 3

/* Serves operations read from in, writing events to out, until EOF or an exit message. The
 * engine (and its JavaScript VM) is created at the first operation. Returns 0, or
 * ENG_PROTO_EXIT_BAD_INPUT when the peer broke the protocol, or 1 when out cannot be written
 * or in closed in the middle of a run (the worker went away). */
int eng_proto_serve(FILE *in, FILE *out);

#endif
