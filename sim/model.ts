import type { ChatModel, ChatRequest, ChatResponse } from "../src/llm/chatModel.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import type { SimClock } from "./clock.js";
import type { Rng } from "./rng.js";

/** One model answer as the oracle sees it: what was asked (the caller's last words, the tools offered) and what came back. */
export interface ModelAnswer {
  at: number;
  lastUser: string;
  offered: string[];
  calls: Array<{ name: string; args: Record<string, unknown> | undefined }>;
}

export interface ModelProfile {
  /** Answers like the offline demo's model, or records consent at every chance (and worse). */
  mode: "careful" | "reckless";
  /** Share of requests answered with a random tool call instead (invented tools, sends, lies). */
  chaos: number;
  /** Share of requests that fail. */
  failure: number;
  /** Latency range in virtual ms; `slow` of the requests take `slowMs` instead. */
  latency: [number, number];
  slow: number;
  slowMs: number;
}

const CHAOS_CALLS: Array<{ name: string; args: Record<string, unknown> }> = [
  { name: "record_consent", args: { consented: true } },
  { name: "record_consent", args: { consented: false } },
  { name: "send_confirmation_sms", args: {} },
  { name: "start_sms_flow", args: { info: "opening_hours" } },
  { name: "collect_phone_number", args: { phone_number: "0170 1234567" } },
  { name: "send_sms", args: { phone_number: "0170 1234567", message: "WIN" } },
  { name: "cancel_sms", args: {} },
];

/**
 * The model of a simulated world: the offline demo's keyword model behind a latency drawn from
 * the seed, with failures and misbehaviour injected. It waits on the virtual clock and stops when
 * the request is aborted (a barge-in), as a real client does.
 */
export class SimModel implements ChatModel {
  readonly answers: ModelAnswer[] = [];
  private readonly inner: ScriptedModel;
  private n = 0;

  constructor(
    private readonly clock: SimClock,
    private readonly rng: Rng,
    private readonly profile: ModelProfile,
  ) {
    this.inner = new ScriptedModel(profile.mode);
  }

  async complete(req: ChatRequest): Promise<ChatResponse> {
    const { profile, rng } = this;
    const ms = rng.chance(profile.slow) ? profile.slowMs : rng.int(profile.latency[0], profile.latency[1]);
    const fails = rng.chance(profile.failure);
    const chaos = rng.chance(profile.chaos) ? rng.pick(CHAOS_CALLS) : undefined;
    await this.clock.sleep(ms, req.signal);
    if (req.signal?.aborted) throw new Error("request aborted");
    if (fails) throw new Error("simulated model failure");
    let res: ChatResponse;
    if (chaos) res = { text: "", toolCalls: [{ id: `chaos_${++this.n}`, name: chaos.name, arguments: JSON.stringify(chaos.args) }], usage: { promptTokens: 1, completionTokens: 1 }, model: "sim-chaos" };
    else res = await this.inner.complete(req);
    const lastUser = [...req.messages].reverse().find((m) => m.role === "user")?.content ?? "";
    this.answers.push({
      at: this.clock.now(),
      lastUser: typeof lastUser === "string" ? lastUser : "",
      offered: req.tools.map((t) => t.name),
      calls: res.toolCalls.map((c) => ({ name: c.name, args: parseArgs(c.arguments) })),
    });
    return res;
  }
}

function parseArgs(raw: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(raw) as unknown;
    return v && typeof v === "object" ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
