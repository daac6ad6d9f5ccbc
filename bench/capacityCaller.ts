import http from "node:http";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { ConsentQuestion, consentViolations, transcriptLine, type CallerEntry } from "./consentOracle.js";

/**
 * The callers of the capacity bench, a load-generator process of its own (the parent starts
 * several): calls arrive at a steady rate and each plays at a caller's pace, as sipgate reports it.
 * Every agent line "plays" MS_PER_CHAR per character (assistant_speak, then assistant_speech_ended
 * after the play time); the caller answers 1–3 s after the line ended. Callers are of four kinds:
 *   yes     asks for the opening hours by SMS, says "Ja, gerne." to the consent question, goodbye
 *   no      the same, but "Nein, danke."
 *   silent  asks, then says nothing to the consent question (user_input_timeout after the line's
 *           input timeout, as sipgate sends it), twice, and hangs up
 *   barge   asks, then talks over the consent question ("Ja, gerne." while it plays), then answers
 *           what it hears next as a yes caller would
 * Each call's transcript (what the caller said and heard, the SMS it got) is checked by the consent
 * oracle (consentOracle.ts).
 * Protocol (IPC): the parent sends { type: "run", ... } and gets { type: "done", ... } back.
 */

export const MS_PER_CHAR = 70;
export type CallerKind = "yes" | "no" | "silent" | "barge";
const REQUEST = "Können Sie mir die Öffnungszeiten per SMS schicken?";
const YES = "Ja, gerne.";
const NO = "Nein, danke.";
const BYE = "Danke, das war's. Tschüss!";
/** Turns after which a caller hangs up whatever it hears (a runaway call is a problem, not a hang). */
const MAX_TURNS = 8;

/** Deterministic random numbers in [0, 1) (mulberry32), so a run's callers and model times repeat. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The share of each kind of caller (the rest say yes). */
export function callerKind(r: number): CallerKind {
  return r < 0.15 ? "no" : r < 0.25 ? "silent" : r < 0.4 ? "barge" : "yes";
}

export interface RunRequest {
  type: "run";
  port: number;
  /** Calls this process starts, evenly spaced from startAt (ms since epoch) over arrivalMs. */
  calls: number;
  startAt: number;
  arrivalMs: number;
  /** Call ids and caller numbers are unique per (level, worker, index). */
  level: number;
  worker: number;
  seed: number;
  holding: string;
  gaveUp: string;
  overloaded: string;
  /** consent.question and business.name of the service's config. */
  consentQuestion: string;
  businessName: string;
}

export interface CallSummary {
  kind: CallerKind;
  startedAt: number;
  endedAt: number;
  sends: number;
  refused: boolean;
  holdingLines: number;
  apologies: number;
  violations: string[];
  problems: string[];
}

export interface RunResult {
  type: "done";
  /** Each webhook request: [ms since epoch when answered, latency ms, event type]. */
  requests: Array<[number, number, string]>;
  calls: CallSummary[];
  cpuUs: number;
  eventLoopP99Ms: number;
}

type Action = { type: string; text?: string; phone_number?: string; user_input_timeout_seconds?: number };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** One paced call; see the file comment. */
async function playCall(req: RunRequest, agent: http.Agent, index: number, out: RunResult): Promise<CallSummary> {
  const random = seededRandom(req.seed * 1_000_003 + req.level * 10_007 + req.worker * 101 + index);
  const kind = callerKind(random());
  const caller = `49151${String((req.level * 16 + req.worker) * 100_000 + index).padStart(8, "0")}`;
  const session = { id: `cap-${req.seed}-${req.level}-${req.worker}-${index}`, account_id: "bench", phone_number: "4921112345678", direction: "inbound", from_phone_number: caller, to_phone_number: "4921112345678" };
  const entries: CallerEntry[] = [];
  const consent = new ConsentQuestion(req.consentQuestion, req.businessName);
  const summary: CallSummary = { kind, startedAt: Date.now(), endedAt: 0, sends: 0, refused: false, holdingLines: 0, apologies: 0, violations: [], problems: [] };
  let hungUp = false;

  const post = (event: Record<string, unknown>): Promise<Action[]> =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ ...event, session });
      const t0 = performance.now();
      const r = http.request({ host: "127.0.0.1", port: req.port, path: "/webhook", method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => {
          out.requests.push([Date.now(), Math.round((performance.now() - t0) * 10) / 10, String(event.type)]);
          if (res.statusCode !== 200 && res.statusCode !== 204) return reject(new Error(`${String(event.type)} answered HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
          const parsed = res.statusCode === 200 && text ? (JSON.parse(text) as Action | Action[]) : [];
          const actions = Array.isArray(parsed) ? parsed : [parsed];
          for (const a of actions) {
            if (a.type === "send_sms") {
              entries.push({ kind: "sms", to: a.phone_number ?? "" });
              summary.sends++;
            }
            if (a.type === "hangup" || a.type === "transfer") hungUp = true;
          }
          resolve(actions);
        });
        res.on("error", reject);
      });
      r.on("error", reject);
      r.end(body);
    });

  /** The caller's turns: what it says next, by the last line it heard to the end. */
  let consentQuestions = 0;
  let silences = 0;
  /** Plays the lines of an answer as sipgate does; returns the last line heard to its end. */
  const play = async (actions: Action[]): Promise<string | undefined> => {
    let last: string | undefined;
    for (const a of actions) {
      if (a.type !== "speak") continue;
      const text = a.text ?? "";
      if (text === req.holding) summary.holdingLines++;
      if (text === req.gaveUp) summary.apologies++;
      if (text === req.overloaded) summary.refused = true;
      const playMs = text.length * MS_PER_CHAR;
      const question = consent.isFor(text, caller);
      if (question) consentQuestions++;
      const started = post({ type: "assistant_speak", text, duration_ms: playMs, speech_started_at: Date.now() });
      if (question && kind === "barge" && consentQuestions === 1) {
        // Talks over the question: the line is cut, no speech_ended follows for it.
        await sleep(playMs * (0.3 + 0.4 * random()));
        entries.push({ kind: "heard", text, complete: false }, { kind: "said", text: YES });
        const answer = await post({ type: "user_speak", text: YES, barged_in: true });
        await play(await started);
        return play(answer);
      }
      await sleep(playMs);
      const speechEnded = performance.now();
      entries.push({ kind: "heard", text, complete: true });
      last = text;
      const late = [...(await post({ type: "assistant_speech_ended" })), ...(await started)];
      if (late.some((x) => x.type === "speak")) return play(late);
      if (text === req.holding && a.user_input_timeout_seconds !== undefined && !hungUp) {
        // Nothing came with the holding line's end: sipgate reports the silence after its input timeout.
        await sleep(speechEnded + a.user_input_timeout_seconds * 1000 - performance.now());
        entries.push({ kind: "silence" });
        return play(await post({ type: "user_input_timeout" }));
      }
    }
    return last;
  };

  try {
    let last = await play(await post({ type: "session_start" }));
    for (let turn = 0; !hungUp && turn < MAX_TURNS; turn++) {
      const lastText = last ?? "";
      const isQuestion = consent.isFor(lastText, caller);
      let say: string | undefined;
      if (turn === 0) say = REQUEST;
      else if (isQuestion && kind === "no") say = NO;
      else if (isQuestion && kind !== "silent") say = YES;
      else if (isQuestion || (kind === "silent" && silences > 0)) say = undefined;
      else say = BYE;
      if (say === undefined) {
        if (++silences > 2) break;
        // Silent: sipgate reports it after the line's input timeout.
        await sleep(8000);
        entries.push({ kind: "silence" });
        last = await play(await post({ type: "user_input_timeout" }));
        continue;
      }
      await sleep(1000 + 2000 * random());
      entries.push({ kind: "said", text: say });
      last = await play(await post({ type: "user_speak", text: say, barged_in: false }));
      if (say === BYE && !hungUp) summary.problems.push("no hangup after the goodbye");
      if (say === BYE) break;
    }
  } catch (e) {
    summary.problems.push((e as Error).message);
  } finally {
    await post({ type: "session_end" }).catch((e: Error) => summary.problems.push(`session_end: ${e.message}`));
  }
  summary.endedAt = Date.now();
  summary.violations = consentViolations(entries, consent).map((v) => `${v} in: ${transcriptLine(entries)}`);
  const mine = entries.filter((e): e is Extract<CallerEntry, { kind: "sms" }> => e.kind === "sms");
  if (mine.some((e) => e.to !== caller)) summary.problems.push("an SMS to another number than the caller's");
  if (!summary.refused) {
    if (kind === "yes" && summary.sends !== 1) summary.problems.push(`yes caller got ${summary.sends} SMS`);
    if ((kind === "no" || kind === "silent") && summary.sends !== 0) summary.problems.push(`${kind} caller got ${summary.sends} SMS`);
    if (summary.apologies > 0) summary.problems.push(`${summary.apologies} apologies (answer too late)`);
  }
  return summary;
}

async function run(req: RunRequest): Promise<RunResult> {
  const out: RunResult = { type: "done", requests: [], calls: [], cpuUs: 0, eventLoopP99Ms: 0 };
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: req.calls }, async (_, i) => {
      await sleep(req.startAt + (i * req.arrivalMs) / req.calls - Date.now());
      out.calls.push(await playCall(req, agent, i, out));
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  loop.disable();
  agent.destroy();
  out.cpuUs = cpu.user + cpu.system;
  out.eventLoopP99Ms = Math.max(0, Math.round(loop.percentile(99) / 1e6 - 10));
  return out;
}

if (process.argv[1]?.endsWith("capacityCaller.ts") && process.send) {
  process.on("message", (m: RunRequest) => {
    if (m.type === "run") void run(m).then((r) => process.send!(r));
  });
  process.send({ type: "ready" });
}
