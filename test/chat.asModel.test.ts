import { smsConfigOf } from "./support/harness.js";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { loadConfigFile } from "../src/appConfig.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { toolSpec } from "../src/llm/toolSchema.js";
import { toolSignature } from "../src/llm/toolSpecText.js";
import { PROMPTS_DIR } from "../src/service.js";
import type { ToolDef } from "../src/engine/define.js";
import type { SmsFlowTypes } from "../src/tasks/sms/types.js";
import { collectPhoneNumber } from "../tools/sms/collect_phone_number.js";
import { recordConsent } from "../tools/sms/record_consent.js";
import { startSmsFlow } from "../tools/sms/start_sms_flow.js";

/**
 * `npm run chat -- --as-model` (issue 22, point 4): the person at the keyboard is the caller and
 * the model. Driven here as a child process over piped stdin/stdout (no TTY), through the real
 * webhook, engine, tool validation, guards and SMS gate, with the chat's in-memory ledger.
 */

const TSX = join("node_modules", ".bin", "tsx");
const chat = (args: string[], lines: string[]) =>
  spawnSync(TSX, ["src/cli/chat.ts", "--as-model", ...args], { input: lines.join("\n") + "\n", encoding: "utf8", timeout: 30_000 });

const config = loadConfigFile("config/agent.yaml");
const prompts = new PromptLibrary(PROMPTS_DIR, config.language);
/** The signature the person is shown, derived here from the tool's zod schema the same way the engine derives the model's. */
const signature = (tool: ToolDef<SmsFlowTypes>) => toolSignature(toolSpec(tool.name, prompts.toolDescription(tool.name), tool.parameters({ config: smsConfigOf(config) } as never), config.llm.strictTools));

/** The stdout from `from` on, up to the next line that starts with `until`. */
function section(out: string, from: string, until: string): string {
  const start = out.indexOf(from);
  expect(start, `"${from}" not in:\n${out}`).toBeGreaterThanOrEqual(0);
  const end = out.indexOf(until, start + from.length);
  return out.slice(start, end < 0 ? undefined : end);
}

describe("npm run chat -- --as-model: the person plays the model", () => {
  it("drives a whole SMS consent flow: a send before consent is refused, a bad argument is answered with the validation error and retried", () => {
    // A landline caller: the SMS task asks for a mobile number, so the person-model collects one.
    const r = chat(["--from", "4921199999999"], [
      "Können Sie mir die Öffnungszeiten per SMS schicken?",
      "send_confirmation_sms", // too early: no number, no consent
      "start_sms_flow info=opening_hours",
      "An die null eins sieben null, eins zwei drei, vier fünf, sechs sieben.",
      'collect_phone_number phone_number="null eins sieben null, eins zwei drei, vier fünf, sechs sieben"',
      // Not a listed clear answer (prompts/de-DE/sms/consent_answers.md), so the (person-)model decides.
      "Ja, das passt mir gut.",
      "record_consent consented=ja", // not a boolean: the engine's validation answers
      'record_consent {"consented": tru', // broken JSON: caught before anything is sent
      '1 {"consented": true}',
      "/ledger",
      "Danke, das war's. Tschüss!",
      "end_call",
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const out = r.stdout;

    // Each model request names its step and shows the step's tools with their arguments, as derived from the zod schemas.
    expect(out.match(/^── model request, step \w+ ──$/gm)).toEqual([
      "── model request, step main ──",
      "── model request, step main ──",
      "── model request, step collect_number ──",
      "── model request, step confirm_consent ──",
      "── model request, step confirm_consent ──",
      "── model request, step main ──",
    ]);
    const firstMain = section(out, "── model request, step main ──", "model>");
    expect(firstMain).toContain(`1. ${signature(startSmsFlow)}`);
    expect(signature(startSmsFlow)).toBe('start_sms_flow {info: one of "opening_hours", "address", "booking_link"}');
    expect(firstMain).toContain(prompts.toolDescription("start_sms_flow").split("\n")[0]!);
    const collect = section(out, "── model request, step collect_number ──", "model>");
    expect(collect).toContain(`1. ${signature(collectPhoneNumber)}`);
    expect(collect).toContain("2. cancel_sms (no arguments)");
    expect(section(out, "── model request, step confirm_consent ──", "model>")).toContain(`1. ${signature(recordConsent)}`);
    // The two speakers are told apart.
    expect(out).toMatch(/^caller> Können Sie mir die Öffnungszeiten per SMS schicken\?$/m);
    expect(out).toMatch(/^model> send_confirmation_sms$/m);

    // The early send: refused by the engine (not offered before a recorded yes), visibly; nothing left.
    expect(out).toContain("(send_confirmation_sms is not offered in step main: the engine refuses it as it would a model's call)");
    expect(out).toMatch(/result of send_confirmation_sms: Error: send_confirmation_sms is not available right now\./);
    expect(out).toContain("⛔ send_confirmation_sms: tool_not_offered (step main)");

    // The number as the caller said it went through the real tool to the parser and into the consent question.
    expect(out).toMatch(/^agent: Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 7 0, 1 2 3, 4 5, 6 7 schicken\?$/m);

    // The bad argument: the engine's zod validation is the answer, and the person is asked again in the same turn.
    const retry = section(out, "model> record_consent consented=ja", "model> 1 ");
    expect(retry).toMatch(/── model request, step confirm_consent ──\n {2}caller: "Ja, das passt mir gut\."\n {2}called: record_consent\(\{"consented":"ja"\}\)\n {2}result of record_consent: Error: invalid arguments for record_consent: consented: Expected boolean, received string\./);
    // Broken JSON never reaches the engine: no extra request, the person types again.
    expect(retry).toMatch(/✗ record_consent: the arguments are not valid JSON \(.+\) \(nothing was sent; \? shows the tools\)/);
    expect(out).toContain("⛔ record_consent: invalid_arguments (consented: Expected boolean, received string)");

    // Exactly one SMS, after the yes, to the collected number; the send is the code step's, after consent.
    const sends = out.match(/✉ SMS sent to \+\d+/g);
    expect(sends).toEqual(["✉ SMS sent to +491701234567"]);
    expect(out.indexOf("✉ SMS sent")).toBeGreaterThan(out.indexOf("model> 1 {\"consented\": true}"));
    expect(out).toMatch(/🛠 record_consent\(\{"consented":true\}\)\n {2}🛠 send_confirmation_sms\(\{\}\)/);
    expect(out).toMatch(/^agent: Ich habe die SMS an 0 1 7 0, 1 2 3, 4 5, 6 7 abgeschickt\./m);
    // Two requests in that turn (the invalid call and the valid one); the broken JSON cost none.
    expect(out).toMatch(/✉ SMS sent[^\n]*\nagent: Ich habe die SMS[^\n]*\n {2}\[step main, 2 model request\(s\)/);

    // The chat's ledger holds the evidence, with the person's answer recorded as the model's.
    const records = out.split("\n").filter((l) => l.startsWith("{") && l.includes('"kind"')).map((l) => JSON.parse(l) as { kind: string; number?: string; model?: string; reply?: string });
    expect(records.map((x) => x.kind)).toEqual(expect.arrayContaining(["consent_asked", "consent_given", "sms_approved"]));
    expect(records.find((x) => x.kind === "consent_given")).toMatchObject({ number: "491701234567", reply: "Ja, das passt mir gut.", decidedBy: "model", model: "person" });

    // end_call: the goodbye, then the hangup once it was played; the chat ends by itself.
    expect(out).toContain("☎ the agent hung up");
  }, 30_000);

  it("words typed at model> are spoken through the real claim check: a delivery claim is refused and the person is asked again", () => {
    const r = chat([], ["Ist die SMS schon bei mir angekommen?", "say Ja, die SMS ist bei Ihnen angekommen.", "say Ob sie angekommen ist, kann ich leider nicht sehen."]);
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/⛔ utterance: /);
    expect(out).not.toMatch(/^agent: Ja, die SMS ist bei Ihnen angekommen\./m);
    expect(out).toMatch(/^agent: Ob sie angekommen ist, kann ich leider nicht sehen\.$/m);
    expect(out.match(/── model request, step main ──/g)).toHaveLength(2);
    // The second request shows what happened and the correction the engine added to the prompt.
    expect(out).toMatch(/── model request, step main ──\n {2}caller: "Ist die SMS schon bei mir angekommen\?"\n {2}answered, but nothing was spoken \(the words were refused\)\n {2}added to the prompt: Correction: you cannot know whether an SMS arrived/);
  }, 30_000);

  it("works for the callback agent: its steps and tools, its read-back lines", () => {
    const r = chat(["--config", "config/callback.yaml"], ["Anna Schmidt", 'note_callback_detail field=name value="Anna Schmidt"', "Ja, richtig.", "2 field=name correct=true", "say Worum geht es bei Ihrer Rückrufbitte?"]);
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/── model request, step collect_details ──\n {2}caller: "Anna Schmidt"\n {2}tools:\n {2}1\. note_callback_detail \{field: one of "name", "reason", "time_window"; value: string, 1-200 characters\}/);
    expect(out).toMatch(/^agent: Ich habe Ihren Namen als Anna Schmidt notiert\. Ist das richtig\?$/m);
    // The confirmation's result needs the model's words: asked again in the same turn, with the result shown.
    expect(out).toMatch(/result of confirm_callback_detail: Confirmed: name\. Still missing: reason, time_window\./);
    expect(out).toMatch(/^agent: Worum geht es bei Ihrer Rückrufbitte\?$/m);
    expect(out).toMatch(/"name": "Anna Schmidt"/);
  }, 30_000);

  it("ends cleanly at the end of input: at caller> it just ends; mid-request the engine treats it as a failed model request", () => {
    const idle = chat([], []);
    expect(idle.status, idle.stderr).toBe(0);
    expect(idle.stderr).toBe("");
    expect(idle.stdout).toMatch(/^agent: Guten Tag/m);

    const midRequest = chat([], ["Was sind Ihre Öffnungszeiten?"]);
    expect(midRequest.status, midRequest.stderr).toBe(0);
    expect(midRequest.stderr).toBe("");
    expect(midRequest.stdout).toContain("── model request, step main ──");
    expect(midRequest.stdout).toContain("(the input ended before the model answered: the engine treats it as a failed model request)");
    expect(midRequest.stdout).toMatch(/^agent: .*technische Störung/m);
    expect(midRequest.stdout).not.toMatch(/\n\s+at /);
  }, 30_000);

  it("typing mistakes at model> are named and asked again, never sent, never a crash", () => {
    const r = chat([], ["Hallo?", "", "7", "Guten Tag!", "start_sms_flow info", "start_sms_flow info=\"x", "say", "?", "?prompt", "say Guten Tag, wie kann ich helfen?"]);
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toContain("✗ there is no tool 7: pick 1-4");
    expect(out).toContain('✗ "Guten" is not a tool of this step, and words to speak start with "say"');
    expect(out).toContain('✗ start_sms_flow: expected name=value pairs or one JSON object, not "info"');
    expect(out).toContain("✗ say what?");
    // ? shows the tools in full again, ?prompt the step's system prompt as the model gets it.
    expect(out.match(/Start the SMS flow\./g)!.length).toBeGreaterThanOrEqual(2);
    expect(out).toContain("Aufgabe in diesem Schritt: Beantworte die Fragen der anrufenden Person.");
    expect(out).toMatch(/^agent: Guten Tag, wie kann ich helfen\?$/m);
    // All of that was one model request.
    expect(out).toMatch(/^agent: Guten Tag, wie kann ich helfen\?\n {2}\[step main, 1 model request\(s\)/m);
  }, 30_000);

  it("--as-model with --offline is one line naming both, exit 2", () => {
    const r = spawnSync(TSX, ["src/cli/chat.ts", "--as-model", "--offline"], { input: "", encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^chat: --offline and --as-model/);
  }, 30_000);
});

describe("npm run chat -- --as-model: a person thinks longer than the call's lease", () => {
  const dir = mkdtempSync(join(tmpdir(), "chat-as-model-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("the answer typed after 1.5 s (lease 300 ms) is still committed and spoken", async () => {
    const cfg = parse(readFileSync("config/agent.yaml", "utf8")) as { server: Record<string, unknown> };
    cfg.server.leaseMs = 300;
    const file = join(dir, "agent.yaml");
    writeFileSync(file, stringify(cfg));
    // Its own process group, so a failed test stops tsx's node child too.
    const child = spawn(TSX, ["src/cli/chat.ts", "--as-model", "--config", file], { stdio: ["pipe", "pipe", "pipe"], detached: true });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
    child.stderr.on("data", (d: Buffer) => (err += d.toString("utf8")));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    const waitFor = async (text: string) => {
      for (let i = 0; i < 300 && !out.includes(text); i++) await new Promise((r) => setTimeout(r, 100));
      expect(out, `waited for "${text}"`).toContain(text);
    };
    try {
      await waitFor("agent: Guten Tag");
      child.stdin.write("Bitte die Öffnungszeiten per SMS.\n");
      await waitFor("── model request, step main ──");
      await new Promise((r) => setTimeout(r, 1500));
      child.stdin.write("start_sms_flow info=opening_hours\n");
      await waitFor("agent: Darf ich Ihnen die Informationen per SMS");
      child.stdin.end();
      expect(await exited, err).toBe(0);
    } finally {
      if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    }
    expect(out).toMatch(/\[step confirm_consent, 1 model request\(s\), (\d+) ms model/);
    const ms = Number(/\[step confirm_consent, 1 model request\(s\), (\d+) ms model/.exec(out)![1]);
    expect(ms).toBeGreaterThanOrEqual(1400);
  }, 40_000);
});
