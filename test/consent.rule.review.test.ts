import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { FileLedger } from "../src/ledger/fileLedger.js";
import { ledgerCli } from "./support/ledgerCli.js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { consentRuleConfig, smsActions, spoken, startTestService, type TestService } from "./support/harness.js";
import { atConsentQuestion, ledgerKinds, postPending, until } from "./support/deadline.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import type { LedgerRecordInput } from "../src/ledger/ledger.js";

/** A ledger whose consent_given write waits until released (a slow PostgreSQL, say): the rule's turn is held inside record_consent. */
class HeldLedger extends MemoryLedger {
  hold: { arrived: Promise<void>; release: () => void } | undefined;
  private arrive: (() => void) | undefined;
  private gate: Promise<void> | undefined;
  holdNext(): { arrived: Promise<void>; release: () => void } {
    let release!: () => void;
    this.gate = new Promise<void>((r) => (release = r));
    const arrived = new Promise<void>((r) => (this.arrive = r));
    return (this.hold = { arrived, release });
  }
  override async append(rec: LedgerRecordInput): Promise<void> {
    if (rec.kind === "consent_given" && this.gate) {
      const g = this.gate;
      this.gate = undefined;
      this.arrive?.();
      await g;
    }
    return super.append(rec);
  }
}


let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: consentRuleConfig() });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());

describe("review: question marks of any script, signs the normalising would drop", () => {
  it.each(["Ja？", "Ja‽", "Ja؟", "Gerne⁇", "Ja⁈", "Ja 👎", "Nein 👍"])("%s is a question or carries a sign: the model decides, nothing is sent by rule", async (words) => {
    const id = `rev-q-${words}`;
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.text("Ich schicke die SMS nur an Sie selbst."));
    const r = await svc.post(ev.speak(id, words));
    expect(svc.fake.requests).toHaveLength(1);
    expect(smsActions(r.actions)).toEqual([]);
    expect(ledgerKinds(svc, id)).not.toContain("consent_given");
  });
});

describe("review: keys pressed between the question and the 'Ja.'", () => {
  it("'Ja.' after the caller started keying another number is not the first caller event after the question: the model decides", async () => {
    const id = "rev-dtmf";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    for (const d of "0170") await svc.post(ev.dtmf(id, d));
    svc.fake.enqueue(reply.text("Möchten Sie die SMS an eine andere Nummer? Dann tippen Sie sie bitte ein und drücken Sie die Raute."));
    const r = await svc.post(ev.speak(id, "Ja."));
    expect(svc.fake.requests).toHaveLength(1);
    expect(smsActions(r.actions)).toEqual([]);
    expect(ledgerKinds(svc, id)).not.toContain("consent_given");
  });
});

describe("review: words that overtake a rule's yes (its turn held in the ledger write)", () => {
  let held: TestService;
  const ledger = new HeldLedger();
  beforeAll(async () => {
    held = await startTestService({ ledger, config: consentRuleConfig() });
  });
  afterAll(async () => held.close());

  it("'Nein.' arrives while the rule's 'Ja.' is still in its turn (within the deadline): no SMS leaves", async () => {
    const id = "rev-held-nein";
    await atConsentQuestion(held, id);
    held.fake.reset();
    held.fake.enqueue(reply.tool("record_consent", { consented: false }), reply.tool("record_consent", { consented: false }));
    const h = ledger.holdNext();
    const yes = held.post(ev.speak(id, "Ja."));
    await h.arrived;
    const no = held.post(ev.speak(id, "Nein."));
    await until(async () => (await held.store.progress(id)).queued >= 2 + 2, "the no queued");
    h.release();
    const [a, b] = await Promise.all([yes, no]);
    const late = await held.post(ev.speechEnded(id));
    expect(smsActions([...a.actions, ...b.actions, ...late.actions])).toEqual([]);
    expect((await held.store.get(id))!.sms.sent).toEqual([]);
  });

  it("'Nein.' to the holding line of the rule's slow 'Ja.': no SMS leaves", async () => {
    const id = "rev-held-nein-slow";
    await atConsentQuestion(held, id);
    held.fake.reset();
    held.fake.enqueue(reply.tool("record_consent", { consented: false }), reply.tool("record_consent", { consented: false }));
    const h = ledger.holdNext();
    const yes = held.post(ev.speak(id, "Ja."));
    await h.arrived;
    await until(async () => held.deadlineClock.pending > 0, "the deadline armed");
    held.deadlineClock.advance(800);
    const first = await yes;
    expect(spoken(first.actions)).toEqual(["Einen Moment bitte."]);
    const { answer } = await postPending(held, ev.speak(id, "Nein."));
    h.release();
    const b = await answer;
    const late = await held.post(ev.speechEnded(id));
    expect(smsActions([...first.actions, ...b.actions, ...late.actions])).toEqual([]);
    expect((await held.store.get(id))!.sms.sent).toEqual([]);
  });
});

describe("review: who decided, as the ledger CLI shows and exports it", () => {
  const dir = mkdtempSync(join(tmpdir(), "rule-cli-"));
  const ledgerPath = join(dir, "consent-ledger.jsonl");
  const raw = parseYaml(readFileSync("config/agent.yaml", "utf8")) as Record<string, unknown>;
  raw.ledger = { ...(raw.ledger as object), path: ledgerPath };
  const configPath = join(dir, "agent.yaml");
  writeFileSync(configPath, stringifyYaml(raw));

  it("a call whose yes the rule decided, and one whose no the model decided: verify passes, show and the CSV export name who decided", async () => {
    const file = await startTestService({ ledger: new FileLedger(ledgerPath), config: consentRuleConfig() });
    try {
      await atConsentQuestion(file, "cli-rule");
      await file.post(ev.speak("cli-rule", "Ja, gerne."));
      await atConsentQuestion(file, "cli-model");
      file.fake.reset();
      file.fake.enqueue(reply.tool("record_consent", { consented: false }));
      await file.post(ev.speak("cli-model", "Nein, das brauche ich wirklich nicht."));
    } finally {
      await file.close();
    }
    const env = { CONFIG: configPath };
    const verify = await ledgerCli(["verify"], env);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/the chain is intact, every approval follows a consent for that number/);
    // The person or auditor reading one call sees who decided the answer.
    const shown = await ledgerCli(["show", "cli-rule"], env);
    expect(shown.stdout).toMatch(/consent {6}given: "Ja, gerne\." \(rule yes:ja gerne\)/);
    const shownModel = await ledgerCli(["show", "cli-model"], env);
    expect(shownModel.stdout).toMatch(/consent {6}declined: "Nein, das brauche ich wirklich nicht\." \(model [^)]+\)/);
    // The export keeps both fields: CSV (the default) has their columns, JSON their values.
    const csv = await ledgerCli(["export"], env);
    expect(csv.code, csv.stderr).toBe(0);
    expect(csv.stdout.split("\r\n")[0]!.split(",")).toEqual(expect.arrayContaining(["decidedBy", "rule"]));
    expect(csv.stdout).toContain(",rule,yes:ja gerne,");
    const json = await ledgerCli(["export", "--format", "json"], env);
    const exported = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    expect(exported.find((r) => r.kind === "consent_given" && r.callId === "cli-rule")).toMatchObject({ decidedBy: "rule", rule: "yes:ja gerne" });
    expect(exported.find((r) => r.kind === "consent_declined" && r.callId === "cli-model")).toMatchObject({ decidedBy: "model", model: expect.any(String) });
  });
});
