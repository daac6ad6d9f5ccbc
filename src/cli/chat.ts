import { parseArgs } from "node:util";
import { pino } from "pino";
import type { AiFlowAction } from "../aiflow/actions.js";
import { isSmsFailureReason, SMS_FAILURE_REASONS, type SmsFailureReason } from "../aiflow/events.js";
import { ConfigError, applyEnv, configPathFrom, loadConfigFile } from "../appConfig.js";
import type { TurnRecord } from "../core/turnRecord.js";
import { MemoryLedger } from "../ledger/memoryLedger.js";
import type { ChatModel } from "../llm/chatModel.js";
import { createModel } from "../llm/createModel.js";
import { PersonModel } from "../llm/personModel.js";
import { ScriptedModel } from "../llm/scriptedModel.js";
import { parseCallerNumber } from "../phone/number.js";
import { createService, numberHasher } from "../service.js";
import { npmTookOffline } from "./npmOffline.js";
import { ManualClock } from "../engine/clock.js";
import { TerminalLines } from "./terminalLines.js";
import { describeDestination, reportDestination, shownUrl, type ReportDestination } from "../agents/callback/reportDestination.js";
import type { AppConfig } from "../appConfig.js";
import type { Outbox } from "../outbox/outbox.js";
import { OutboxPoster } from "../outbox/webhookPoster.js";

/** The agents whose tools the offline scripted model knows how to call. */
const SCRIPTED_AGENTS: readonly string[] = ["reception", "callback"];

/**
 * `npm run chat`: be the caller. Each line you type is a user_speak event; the agent's
 * actions are printed as a caller would experience them. Commands start with "/".
 * With --as-model you are the model too: each model request asks you (PersonModel).
 */

const HELP = `commands:
  /dtmf 0170…#        press keys (one dtmf_received event each)
  /silence            the caller says nothing (user_input_timeout)
  /barge <text>       interrupt the agent's last line
  /sms_failed [reason] [number]
                      sipgate reports that an SMS failed
                      reason: ${SMS_FAILURE_REASONS.join(", ")} (default unknown)
                      number: whom it was for (default: the last SMS sent in this chat, else --from)
  /state              the call's state (step, number, consent, SMS)
  /ledger             the consent ledger so far
  /hangup, /quit      end the call`;

const USAGE = `usage: npm run chat -- [options]
  Be the caller: each line you type is a user_speak event; lines starting with / are commands.

options:
  --offline           built-in scripted model (no network); otherwise the configured model
                      (OPENAI_API_KEY / OPENAI_BASE_URL, LLM_MODEL)
  --as-model          you play the model as well (no network, no API key): at each model
                      request you see the step, its tools and their arguments, and answer at
                      "model>" with a tool call or words to speak; the caller speaks at "caller>"
  --config path       config file (default CONFIG or config/agent.yaml)
  --from number       the caller's number (default 4915112345678)
  --verbose           show every turn's tool calls, step and timings
  --help              this text

The callback agent (--config config/callback.yaml) prints the report its endpoint would get when
the chat ends. With CALLBACK_URL (and CALLBACK_SIGNING_SECRET) set it also posts it there, signed,
once; the config file's callback.endpoint.url is never posted to from a chat.

${HELP}`;

/** Exit code for bad usage (unknown flag, stray argument), the same as `npm run eval` uses. */
const EXIT_USAGE = 2;

const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);

async function main(): Promise<void> {
  const tookOffline = npmTookOffline(process.env, process.argv.slice(2), "run chat");
  if (tookOffline) {
    console.error(`chat: ${tookOffline}`);
    process.exit(2);
  }
  let args;
  try {
    args = parseArgs({
      options: {
        offline: { type: "boolean", default: false },
        "as-model": { type: "boolean", default: false },
        config: { type: "string" },
        from: { type: "string", default: "4915112345678" },
        verbose: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }).values;
  } catch (e) {
    // node:util's message names the flag ("Unknown option '--x'"); the stack would only hide it.
    console.error(`chat: ${(e as Error).message}; npm run chat -- --help for usage`);
    process.exit(EXIT_USAGE);
  }
  if (args.help) {
    console.log(USAGE);
    return;
  }
  if (args.offline && args["as-model"]) {
    console.error("chat: --offline and --as-model each pick the model (the scripted one, or you): use one of them");
    process.exit(EXIT_USAGE);
  }
  const config = applyEnv(loadConfigFile(args.config ?? configPathFrom([], process.env)), process.env);
  // One queue for the terminal: the caller's lines and, mid-turn, the model's answers.
  const lines = new TerminalLines(process.stdin, process.stdout);
  const asModel = args["as-model"];
  let model: ChatModel;
  if (asModel) model = new PersonModel({ ask: (p) => lines.ask(p), show: (text) => console.log(text) });
  else if (args.offline) {
    model = new ScriptedModel();
    // The scripted model knows the built-in agents' tools; an agent of your own it can only greet.
    if (!SCRIPTED_AGENTS.includes(config.agent)) console.log(`(--offline: the scripted model plays only the built-in agents (${SCRIPTED_AGENTS.join(", ")}); to try the ${config.agent} agent without an API key, play the model yourself: npm run chat -- --as-model${args.config ? ` --config ${args.config}` : ""})`);
  } else {
    if (!process.env.OPENAI_API_KEY && !process.env.OPENAI_BASE_URL) throw new ConfigError("set OPENAI_API_KEY or OPENAI_BASE_URL, or use --offline");
    model = createModel(config, process.env);
  }
  // A chat's calls are test calls: their report reaches only a receiver named in CALLBACK_URL.
  const reports = config.agent === "callback" ? reportDestination(config.agents.callback!, process.env, { testCalls: true }) : undefined;
  const ledger = new MemoryLedger();
  const seen: { turn?: TurnRecord } = {};
  const service = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(), config, model, ledger, logger: pino({ level: "silent" }), onTurn: (t) => (seen.turn = t),
    // ledger.numbers: hashed takes its key from the environment, as `npm start` does.
    hasher: numberHasher(config, process.env),
    // The callback agent's report is shown (and posted when CALLBACK_URL names a receiver, see showReport) when the chat ends.
    callbackSecret: reports?.kind === "post" ? reports.secret : "chat-not-posted", startPoster: false });
  const session = { id: `chat-${Date.now()}`, account_id: "chat", phone_number: "4921112345678", direction: "inbound", from_phone_number: args.from, to_phone_number: "4921112345678" };
  let ended = false;
  let sessionEnded = false;
  // sms_failed names the recipient of the SMS that failed; a chat fakes it for the last one sent.
  let lastSmsRecipient: string | undefined;

  const send = async (event: Record<string, unknown>, quiet = false): Promise<void> => {
    seen.turn = undefined;
    const res = await service.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify({ ...event, session }) });
    if (res.statusCode >= 400) {
      console.log(dim(`  (webhook answered ${res.statusCode}: ${res.body})`));
      return;
    }
    const actions: AiFlowAction[] = res.statusCode === 204 ? [] : ([] as AiFlowAction[]).concat(res.json());
    // Set by onTurn during the inject above (TypeScript cannot see that).
    const last = seen.turn as TurnRecord | undefined;
    if (last && (args.verbose || last.toolCalls.length || last.guardDecisions.some((d) => !d.allowed))) {
      for (const c of last.toolCalls) console.log(dim(`  🛠 ${c.name}(${JSON.stringify(c.arguments)})${c.ok ? "" : " ✗"}`));
      for (const d of last.guardDecisions.filter((x) => !x.allowed)) console.log(dim(`  ⛔ ${d.subject}: ${d.reason}${d.detail ? ` (${d.detail})` : ""}`));
    }
    for (const a of actions) {
      if (a.type === "speak") console.log(`agent: ${a.text ?? a.ssml}`);
      else if (a.type === "send_sms") {
        lastSmsRecipient = a.phone_number;
        console.log(`  ✉ SMS sent to +${a.phone_number}: "${a.message}"`);
      }
      else if (a.type === "hangup") {
        console.log("  ☎ the agent hung up");
        ended = true;
      } else console.log(`  ${a.type}`);
    }
    if (last && (!quiet || args.verbose)) console.log(dim(`  [${stepLabel(last)}, ${last.llmRequests.length} model request(s), ${Math.round(last.timings.modelMs)} ms model, ${last.timings.engineMs.toFixed(1)} ms engine]`));
  };
  // sipgate reports the end of each played line; that is when a goodbye turns into a hangup.
  const played = () => send({ type: "assistant_speech_ended" }, true);

  const modelName = asModel ? "you play the model" : args.offline ? "scripted model" : config.llm.model;
  console.log(dim(`caller ${args.from} → ${config.business.name} (${modelName}). /help for commands.`));
  if (asModel) console.log(dim(`You are the caller at "caller>" and the model at "model>": each model request shows its step and tools.`));
  await send({ type: "session_start" });
  // Two speakers on one terminal: name each prompt for the role it asks for.
  const callerPrompt = asModel ? "caller> " : "you: ";
  for (;;) {
    const raw = await lines.ask(callerPrompt);
    if (raw === undefined) break;
    const line = raw.trim();
    if (!line) continue;
    const [cmd, ...rest] = line.split(/\s+/);
    const arg = rest.join(" ");
    if (cmd === "/quit" || cmd === "/hangup") {
      await send({ type: "session_end" });
      sessionEnded = true;
      break;
    } else if (cmd === "/help") console.log(HELP);
    else if (cmd === "/dtmf") for (const digit of arg.replace(/\s/g, "")) await send({ type: "dtmf_received", digit });
    else if (cmd === "/silence") await send({ type: "user_input_timeout" });
    else if (cmd === "/barge") await send({ type: "user_speak", text: arg, barged_in: true });
    else if (cmd === "/sms_failed") {
      const failure = smsFailure(rest, lastSmsRecipient ?? args.from!, config.homeCountry);
      if ("error" in failure) console.log(failure.error);
      else await send({ type: "sms_failed", ...failure, message: "from npm run chat" });
    }
    else if (cmd === "/state") {
      const s = await service.store.get(session.id);
      console.log(s ? JSON.stringify({ step: s.step, turn: s.turn, number: s.sms.number, consent: s.sms.consent, declined: s.sms.declined, sent: s.sms.sent }, null, 2) : "(no call state)");
    } else if (cmd === "/ledger") for (const r of ledger.records) console.log(JSON.stringify(r));
    else if (cmd?.startsWith("/")) console.log(`unknown command ${cmd}\n${HELP}`);
    else {
      await played();
      if (!ended) await send({ type: "user_speak", text: line, barged_in: false });
    }
    if (!ended && !line.startsWith("/barge")) await played();
    if (ended) break;
  }
  lines.close();
  if (service.outbox && reports) {
    // The callback agent: sipgate ends every session with session_end; then the report is due.
    if (!sessionEnded) await send({ type: "session_end" }, true);
    console.log(dim(await showReport(service.outbox, session.id, reports, config)));
  }
  await service.close();
}

/** The chat's report, printed; posted once first when CALLBACK_URL names a receiver (a failure is shown, not retried). */
async function showReport(outbox: Outbox, key: string, reports: ReportDestination, config: AppConfig): Promise<string> {
  const shown = (body: string | undefined) => (body ? `:\n${JSON.stringify(JSON.parse(body), null, 2)}` : "");
  if (reports.kind === "shown") {
    const entry = (await outbox.claimDue(Number.MAX_SAFE_INTEGER, 10, 1000)).find((c) => c.key === key);
    return `  ⇪ report (Idempotency-Key ${key}) ${describeDestination(reports, "shown here")}${shown(entry?.body)}`;
  }
  const e = config.agents.callback!.endpoint;
  let posted: string | undefined;
  const poster = new OutboxPoster({
    outbox,
    url: reports.url,
    secret: reports.secret,
    timeoutMs: e.timeoutMs,
    // One attempt: a failure is dead-lettered at once, so its reason can be shown.
    maxAttempts: 1,
    backoff: e.backoff,
    pollMs: e.pollMs,
    batch: 10,
    leaseMs: Math.max(30_000, e.timeoutMs * 3),
    log: pino({ level: "silent" }),
    // The body as it went out, to print after the post.
    fetch: (url, init) => ((posted = String(init?.body)), fetch(url, init)),
  });
  const cycle = await poster.runOnce();
  const failed = (await outbox.deadLetters()).find((d) => d.key === key);
  const outcome = cycle.delivered > 0 ? describeDestination(reports, "") : `NOT delivered to ${shownUrl(reports.url)} (${failed?.error ?? "nothing was due"}; a running service would retry it)`;
  return `  ⇪ report (Idempotency-Key ${key}) ${outcome}${shown(posted ?? failed?.body)}`;
}

/** Where the call is after a turn; after session_end there is no next step, only the one it ended in. */
function stepLabel(turn: TurnRecord): string {
  if (turn.event === "session_end") return turn.stepBefore ? `call ended in step ${turn.stepBefore}` : "call ended";
  return `step ${turn.stepAfter}`;
}

/** `/sms_failed [reason] [number]`: the event's fields, or a line saying what is wrong. */
function smsFailure(words: string[], defaultRecipient: string, homeCountry: Parameters<typeof parseCallerNumber>[1]): { reason: SmsFailureReason; recipient: string } | { error: string } {
  const [reason = "unknown", ...numberWords] = words;
  if (!isSmsFailureReason(reason)) return { error: `unknown sms_failed reason "${reason}"; one of ${SMS_FAILURE_REASONS.join(", ")}` };
  if (numberWords.length === 0) return { reason, recipient: defaultRecipient };
  const text = numberWords.join(" ");
  // Digits in AI Flow format (4917…) would read as a national number without their "+".
  const number = parseCallerNumber(/^[1-9]\d{6,14}$/.test(text) ? `+${text}` : text, homeCountry);
  if (!number) return { error: `"${text}" is not a phone number` };
  return { reason, recipient: number.aiflow };
}

main().catch((e) => {
  console.error(e instanceof ConfigError ? `chat: ${e.message}` : e);
  process.exit(1);
});
