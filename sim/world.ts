import { smsConfig } from "../src/tasks/sms/config.js";
import { pino } from "pino";
import type { AiFlowAction } from "../src/aiflow/actions.js";
import { parseEvent, type AiFlowEvent } from "../src/aiflow/events.js";
import type { AppConfig } from "../src/appConfig.js";
import { receptionFlow, type ReceptionFlowTypes } from "../tools/reception/agent.js";
import { CallPipeline } from "../src/engine/callPipeline.js";
import { Engine } from "../src/engine/engine.js";
import type { PromptLibrary } from "../src/engine/promptLibrary.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { engineOptions } from "../src/service.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import { MemoryRateLimiter } from "../src/store/rateLimiter.js";
import type { Transport } from "../src/store/callStore.js";
import { SimClock } from "./clock.js";
import { faultyStore, type StoreFaults } from "./faultyStore.js";
import { SimModel, type ModelProfile } from "./model.js";
import { Rng } from "./rng.js";
import { Caller, type CallerProfile } from "./caller.js";
import type { Transcript } from "./transcript.js";

/** Everything a seed decides about one simulated call. */
export interface Scenario {
  seed: number;
  transport: Transport;
  instances: number;
  model: ModelProfile;
  caller: CallerProfile;
  faults: StoreFaults[];
  /** Share of webhook answers that never reach sipgate (the connection breaks); half of those events sipgate sends again. */
  lostAnswers: number;
}

const EPOCH = Date.UTC(2026, 11, 7, 9, 0, 0);
/** Virtual time after which the simulated caller hangs up whatever happens. */
const HORIZON_MS = 6 * 60_000;
/** A run that needs more scheduler steps than this is stuck (a loop that never waits on time). */
const MAX_STEPS = 200_000;
const silent = pino({ level: "silent" });

/** The scenario a seed stands for: instances, model behaviour, caller, faults. */
export function scenarioOf(seed: number, transport: Transport): Scenario {
  const rng = new Rng(seed);
  const instances = rng.int(1, 3);
  const model: ModelProfile = {
    mode: rng.chance(0.25) ? "reckless" : "careful",
    chaos: rng.chance(0.3) ? 0.15 : 0,
    failure: rng.chance(0.2) ? 0.1 : 0,
    latency: [100, rng.pick([600, 1200, 2500])],
    slow: rng.chance(0.3) ? 0.2 : 0.03,
    slowMs: rng.pick([1500, 3000, 6000]),
  };
  const caller: CallerProfile = {
    wantsSms: rng.chance(0.85),
    answer: rng.pick(["yes", "yes", "yes", "no", "unclear", "number"] as const),
    overHolding: rng.pick([0, 0.3, 0.7]),
    bargeIn: rng.pick([0, 0.15, 0.4]),
    silent: rng.pick([0, 0.1, 0.25]),
    changesMind: rng.chance(0.2),
    hangsUpAt: rng.chance(0.15) ? rng.int(2_000, 40_000) : undefined,
  };
  const faults: StoreFaults[] = [];
  const outage: Array<[number, number]> = rng.chance(0.1) ? [[rng.int(1_000, 30_000), 0]] : [];
  for (const o of outage) o[1] = o[0] + rng.int(200, 4_000);
  for (let i = 0; i < instances; i++) {
    faults.push({
      outages: outage,
      renewFailure: rng.chance(0.15) ? 0.2 : 0,
      // Never the only instance: somebody must be left to take the call over.
      crashAtCall: instances > 1 && i > 0 && rng.chance(0.25) ? rng.int(5, 120) : undefined,
      lostReplies: 0,
      resendFails: 0,
    });
  }
  const lostAnswers = transport === "http" && rng.chance(0.15) ? 0.15 : 0;
  // Drawn last, so every other choice of a seed stays as it was before lost replies existed.
  // About 200 store requests a call: a lossy connection loses 2, 6 or 16 replies in one.
  if (rng.chance(0.25)) {
    for (const f of faults) {
      f.lostReplies = rng.pick([0.01, 0.03, 0.08]);
      f.resendFails = rng.pick([0, 0.25, 0.5]);
    }
  }
  return { seed, transport, instances, model, caller, faults, lostAnswers };
}

interface Instance {
  pipeline: CallPipeline<ReceptionFlowTypes>;
  alive: boolean;
  /** Requests in flight to it: a crash fails them (the connection drops). */
  inFlight: Set<(e: Error) => void>;
}

/**
 * One call through the whole service, two or three instances on one shared store, in one process
 * under the virtual clock: sipgate posts (or streams) each event to an instance, plays what comes
 * back at a caller's pace, and the caller reacts to what they heard. Returns the transcript: what
 * the caller said and heard, what the model answered, what the ledger holds.
 */
export async function runScenario(s: Scenario, config: AppConfig, prompts: PromptLibrary): Promise<Transcript> {
  const clock = new SimClock();
  const rng = new Rng(s.seed ^ 0x5bd1e995);
  const now = () => EPOCH + clock.now();
  const ledger = new MemoryLedger();
  const limiter = new MemoryRateLimiter(now);
  const shared = new MemoryCallStore<ReceptionFlowTypes["state"]>(now, config.limits.sessionTtlSeconds * 1000, 3_600_000, () => clock.now());
  const model = new SimModel(clock, rng.fork(), s.model);
  const options = engineOptions(config);
  const instances: Instance[] = [];
  const transcript: Transcript = { scenario: s, said: [], heard: [], answers: [], model: model.answers, ledger: ledger.records, epoch: EPOCH, crashes: [], trace: [], waiting: 0, errors: [] };
  const trace = (line: string) => transcript.trace.push(`${String(clock.now()).padStart(7)} ${line}`);
  const storeRng = rng.fork();
  // Its own stream: a seed without lost replies draws everything else as it did before they existed.
  const replyRng = new Rng(s.seed ^ 0x2545f491);
  for (let i = 0; i < s.instances; i++) {
    const inst: Instance = { alive: true, inFlight: new Set(), pipeline: undefined as never };
    const store = faultyStore(shared, clock, storeRng.fork(), replyRng.fork(), s.faults[i]!, {
      name: `i${i}`,
      onCrash: () => {
        inst.alive = false;
        transcript.crashes.push(clock.now());
        trace(`instance ${i} crashed`);
        for (const fail of inst.inFlight) fail(new Error(`instance ${i} crashed`));
        inst.inFlight.clear();
      },
      trace: (line) => trace(`i${i} ${line}`),
    });
    const engine = new Engine<ReceptionFlowTypes>({ flow: receptionFlow, services: { config: smsConfig(config.tasks.sms, config), ledger, limiter, hasher: NumberHasher.full(), transfer: config.agents.reception!.transfer }, options, prompts, model, log: silent, now });
    // A dead process's timers die with it: nothing of a crashed instance runs again.
    const timers = { now: () => clock.now(), sleep: (ms: number, signal?: AbortSignal) => (inst.alive ? clock.sleep(ms, signal) : new Promise<void>(() => undefined)) };
    inst.pipeline = new CallPipeline<ReceptionFlowTypes>({ engine, store, options, prompts, log: silent, clock: timers, timers });
    instances.push(inst);
  }

  const callId = `sim-${s.seed}-${s.transport}`;
  const sipgateRng = rng.fork();
  const lostRng = rng.fork();
  let current = 0;
  /** The instance sipgate sends the next event to: mostly the last one, sometimes another (a load balancer). */
  const route = (): number | undefined => {
    const live = instances.map((x, i) => (x.alive ? i : -1)).filter((i) => i >= 0);
    if (live.length === 0) return undefined;
    if (!instances[current]!.alive || (s.transport === "http" && sipgateRng.chance(0.3))) current = sipgateRng.pick(live);
    return current;
  };

  const caller = new Caller(s.caller, rng.fork(), clock, {
    send: (event) => send(event),
    trace,
  });

  /** Deliver an answer's actions to the call: the caller hears them in order (sipgate plays them). */
  const deliver = (actions: AiFlowAction[], via: string) => {
    for (const a of actions) {
      trace(`${via} → ${a.type}${a.type === "speak" ? ` "${a.text ?? ""}"` : a.type === "send_sms" ? ` ${a.phone_number}` : ""}`);
      caller.deliver(a);
    }
  };

  /** The socket's turns in flight: the caller's voice cancels their generation (as the WebSocket transport does). */
  const wsRunning = new Set<AbortController>();
  const send = (raw: Record<string, unknown>, redelivery = false) => {
    const parsed = parseEvent(raw);
    if (parsed.kind !== "event") throw new Error(`the simulated sipgate built an invalid event: ${JSON.stringify(raw)}`);
    const event: AiFlowEvent = parsed.event;
    const key = JSON.stringify(raw);
    const i = route();
    if (i === undefined) return;
    const inst = instances[i]!;
    const sentAt = clock.now();
    trace(`caller → i${i} ${event.type}${event.type === "user_speak" ? ` "${event.text}"${event.barged_in ? " (barge-in)" : ""}` : ""}${redelivery ? " (sent again)" : ""}`);
    if (s.transport === "ws" && event.type === "user_speak" && event.barged_in) for (const c of wsRunning) c.abort();
    const controller = new AbortController();
    transcript.waiting++;
    let settled = false;
    const settle = () => {
      if (settled) return false;
      settled = true;
      transcript.waiting--;
      return true;
    };
    const fail = (e: Error) => {
      if (!settle()) return;
      trace(`i${i} ✗ ${event.type}: ${e.message}`);
      // The connection was reset: sipgate sends the event once more, to another instance.
      if (!redelivery) clock.at(clock.now() + 100, () => send(raw, true));
    };
    inst.inFlight.add(fail);
    const work =
      s.transport === "http"
        ? inst.pipeline.answerHttp(event, key).then(async (answer) => {
            if (!inst.alive || !settle()) return;
            transcript.answers.push({ event: event.type, sentAt, answeredAt: clock.now() });
            if (answer.actions.length && lostRng.chance(s.lostAnswers)) {
              // The connection broke: sipgate never got this answer (and may send the event again).
              trace(`i${i} ✗ answer to ${event.type} lost (${answer.actions.length} action(s))`);
              await answer.lost?.();
              if (!redelivery && lostRng.chance(0.5)) clock.at(clock.now() + 200, () => send(raw, true));
              return;
            }
            deliver(answer.actions, `i${i}`);
            // The answer was written to the connection in full (as the webhook's "finish").
            await answer.written?.();
          })
        : (wsRunning.add(controller),
          inst.pipeline
            .handleWs(
              event,
              key,
              (a) => {
                if (!inst.alive) return false;
                deliver([a], `i${i} ws`);
                return true;
              },
              controller.signal,
            )
            .then(() => void settle())
            .finally(() => wsRunning.delete(controller)));
    work
      .catch((e: Error) => {
        transcript.errors.push(`${event.type}: ${e.stack ?? e.message}`);
        settle();
      })
      .finally(() => inst.inFlight.delete(fail));
  };

  transcript.said = caller.said;
  transcript.heard = caller.heard;
  caller.begin(callId, s.caller.hangsUpAt ?? HORIZON_MS);

  // The scheduler: drain the microtasks (every await that does not wait on time), then move the
  // clock to the next timer. Nothing here waits on real time or real I/O.
  let steps = 0;
  for (;;) {
    await drain();
    const next = clock.nextAt();
    if (next === undefined) break;
    if (++steps > MAX_STEPS) {
      transcript.errors.push(`stuck: more than ${MAX_STEPS} scheduler steps (virtual time ${clock.now()} ms)`);
      break;
    }
    clock.advanceTo(next);
  }
  transcript.endedAt = clock.now();
  await shared.close();
  return transcript;
}

/** Every microtask and nextTick queued so far has run once a macrotask comes round. */
function drain(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
