/**
 * Child process for test/ledger.crash.test.ts: the real service (createService, the production
 * ledger from createLedger, the built-in scripted model) takes one call up to the send. The moment
 * the answer carrying send_sms arrives it prints "SENT" and waits to be killed with SIGKILL: no
 * close(), no flush, no exit handler. The parent then checks the ledger for the evidence.
 *
 * Usage: node --import tsx test/support/ledgerCrashChild.ts <ledger-file> [session-id]
 * (not the tsx CLI: that runs the script in a second process, which a SIGKILL to the first would miss)
 * With DATABASE_URL (and LEDGER_TABLE) set, the ledger is PostgreSQL instead of the file.
 */
import { pino } from "pino";
import { loadConfigFile } from "../../src/appConfig.js";
import { createLedger } from "../../src/ledger/createLedger.js";
import { ScriptedModel } from "../../src/llm/scriptedModel.js";
import { createService } from "../../src/service.js";
import { ev } from "./events.js";
import { ManualClock } from "../../src/engine/clock.js";

const [ledgerPath, sessionId = "crash-call"] = process.argv.slice(2);
if (!ledgerPath) {
  console.error("usage: ledgerCrashChild.ts <ledger-file> [session-id]");
  process.exit(2);
}

const base = loadConfigFile("config/agent.yaml");
const config = { ...base, ledger: { ...base.ledger, path: ledgerPath } };
const ledger = createLedger(config, process.env);
await ledger.ready();
const service = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(), config, model: new ScriptedModel(), ledger, logger: pino({ level: "silent" }) });

async function post(event: Record<string, unknown>): Promise<unknown> {
  const res = await service.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(event) });
  if (res.statusCode >= 400) throw new Error(`webhook answered ${res.statusCode}: ${res.body}`);
  return res.body ? JSON.parse(res.body) : undefined;
}

const hasSend = (body: unknown) => (Array.isArray(body) ? body : [body]).some((a) => (a as { type?: string } | undefined)?.type === "send_sms");

const answers: unknown[] = [];
for (const event of [
  ev.start(sessionId),
  ev.speechEnded(sessionId),
  ev.speak(sessionId, "Können Sie mir die Öffnungszeiten per SMS schicken?"),
  ev.speechEnded(sessionId),
  ev.speak(sessionId, "Ja, gerne."),
]) {
  const body = await post(event);
  answers.push(body);
  if (hasSend(body)) {
    process.stdout.write("SENT\n");
    // Stay alive until the parent kills us; never outlive a parent that died first.
    setTimeout(() => process.exit(4), 60_000);
    await new Promise(() => undefined);
  }
}
console.error(`no send_sms in the answers: ${JSON.stringify(answers)}`);
process.exit(3);
