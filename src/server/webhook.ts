import type { FastifyPluginAsync, FastifyReply } from "fastify";
import type { AiFlowAction } from "../aiflow/actions.js";
import type { CallAnswerer } from "../engine/callPipeline.js";
import type { TransportObserver } from "./transportObserver.js";
import { handleSafely, takeIn, type Arrival } from "./intake.js";

/**
 * POST /webhook: one event per request. The body is kept as the text sipgate sent and read by
 * the shared intake; this plugin only maps the outcome to HTTP: a rejection is 400 with its
 * message, an unknown type 204, an event the pipeline's answer (or 204 when handling failed).
 */
export const webhookPlugin: FastifyPluginAsync<{ pipeline: CallAnswerer; observer?: Pick<TransportObserver, "arrived"> }> = async (app, { pipeline, observer }) => {
  // Events are JSON only; anything else is a sender error, reported as such (see the error handler).
  app.removeContentTypeParser("text/plain");
  // The raw text, parsed by the intake: the redelivery key is a hash of exactly what was sent.
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, body, done) => done(null, body));

  app.post("/webhook", async (req, reply) => {
    const at: Arrival = { transport: "http", log: req.log };
    // No body and no content type reaches the handler without a parser: that is no JSON either.
    const intake = takeIn(typeof req.body === "string" ? req.body : "", at);
    if (intake.kind === "rejected") return reply.code(400).send({ error: intake.message });
    if (intake.kind === "unknown") return reply.code(204).send();
    const { event, key } = intake;
    observer?.arrived(event, "http");
    // Within server.answerWithinMs: the turn's actions, or a holding line while it finishes in the background.
    const answer = await handleSafely(at, event, () => pipeline.answerHttp(event, key));
    if (!answer) return reply.code(204).send();
    req.log.debug({ sessionId: event.session.id, event: event.type, answer: answer.kind, actions: answer.actions.length }, "answered");
    if (answer.actions.length && (answer.lost || answer.written)) {
      const res = reply.raw;
      // sipgate hung up the request before the answer was ready: nothing can be written.
      if (res.destroyed || req.raw.socket?.destroyed === true) {
        await answer.lost?.();
        return respond(reply, answer.actions);
      }
      // Written in full ("finish"): handed over. The connection closed before that: not delivered.
      let finished = false;
      res.once("finish", () => {
        finished = true;
        void answer.written?.();
      });
      res.once("close", () => {
        if (!finished) void answer.lost?.();
      });
    }
    return respond(reply, answer.actions);
  });
};

/** One action as an object, several as an ordered array, none as 204. */
function respond(reply: FastifyReply, actions: AiFlowAction[]) {
  if (actions.length === 0) return reply.code(204).send();
  return reply.code(200).send(actions.length === 1 ? actions[0] : actions);
}
