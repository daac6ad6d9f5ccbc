import Fastify from "fastify";
import { pino } from "pino";
import { loadConfigFile, parseConfig } from "../src/config/load.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { createService } from "../src/service.js";
import { ManualClock } from "../src/engine/clock.js";

/**
 * The two servers of bench (a), each run as its own process: `bare` is a Fastify route that
 * answers a fixed action (the ceiling on this machine); `agent` is the real service with an
 * in-process model that answers instantly, so what is measured is webhook + engine overhead.
 */
const kind = process.argv[2];
const port = Number(process.argv[3] ?? 0);

if (kind === "bare") {
  const app = Fastify({ logger: false });
  const action = { type: "speak", session_id: "x", text: "Guten Tag, wie kann ich helfen?" };
  app.post("/webhook", async () => action);
  await app.listen({ port, host: "127.0.0.1" });
} else if (kind === "agent") {
  const base = loadConfigFile("config/agent.yaml");
  // Every bench call texts another number; the shared abuse windows would otherwise refuse most sends.
  const open = { max: 1e9, windowSeconds: 60 };
  const config = parseConfig({ ...base, logLevel: "silent", recipients: { ...base.recipients, perRecipient: open }, abuse: { perCaller: open, perPrefix: { ...open, prefixDigits: 3 }, perCountry: open, global: open } });
  const engineMs: number[] = [];
  const service = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(),
    config,
    model: new ScriptedModel(),
    ledger: new MemoryLedger(),
    logger: pino({ level: "silent" }),
    onTurn: (t) => void engineMs.push(t.timings.engineMs),
  });
  service.app.get("/bench/engine", async () => {
    const sorted = [...engineMs].sort((a, b) => a - b);
    const p = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0;
    const out = { n: sorted.length, p50: p(0.5), p99: p(0.99) };
    engineMs.length = 0;
    return out;
  });
  await service.app.listen({ port, host: "127.0.0.1" });
} else {
  console.error("usage: servers.ts bare|agent PORT");
  process.exit(2);
}
console.log("ready");
process.on("SIGINT", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
