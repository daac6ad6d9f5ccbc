import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import type { OutboxEntry } from "../src/store/callStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, postAndHangUp, until } from "./support/deadline.js";

/**
 * Review 18b: the call's state is lost mid-call (a memory-store instance restarted, Redis keys
 * expired) while the ledger keeps the call's records. Event positions restart at 1, so the new
 * life's evidence ids (call:e<seq>:kind:n) equalled the old life's, and the deduplicating ledger
 * dropped the new records silently (found by review 18b: an SMS left with no approval of its own,
 * a third life texted again). Now a new life's records carry `L<life>`, and a call whose ledger
 * holds its SMS flow asks no more after its state was lost.
 */

const OPEN = { max: 1000, windowSeconds: 60 };
const config = () => testConfig({ server: { answerWithinMs: 0 }, tasks: { sms: { recipients: { perRecipient: OPEN } } } });

describe("review18b: evidence ids after the call's state was lost", () => {
  const services: TestService[] = [];
  afterEach(async () => {
    for (const s of services.splice(0)) await s.close().catch(() => undefined);
  });

  it("a later life of the call asks no more (the ledger holds its SMS flow), and its records get ids of their own", async () => {
    const ledger = new MemoryLedger();
    const id = "review18b-lost-state";

    // Life 1: the yes's answer is lost and cannot go back (the caller spoke since): sms_not_sent, connection_failed.
    const inner = new MemoryCallStore<SmsSlice>();
    let putBackArrived: () => void = () => undefined;
    let putBackGate: Promise<void> | undefined;
    const store = Object.assign(Object.create(inner) as MemoryCallStore<SmsSlice>, {
      async putBack(callId: string, entries: OutboxEntry[], processedAtCollect: number) {
        putBackArrived();
        if (putBackGate) await putBackGate;
        return inner.putBack(callId, entries, processedAtCollect);
      },
    });
    const life1 = await startTestService({ config: config(), store, ledger });
    services.push(life1);
    await life1.app.listen({ port: 0, host: "127.0.0.1" });
    const port = (life1.app.server.address() as AddressInfo).port;
    await atConsentQuestion(life1, id); // e1, e2
    life1.fake.reset();
    let release!: () => void;
    putBackGate = new Promise<void>((r) => (release = r));
    const arrived = new Promise<void>((r) => (putBackArrived = r));
    const gate = life1.fake.block();
    life1.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.text("Ja, ich höre Sie."));
    await postAndHangUp(port, ev.speak(id, "Ja, gerne."), gate.arrived); // e3
    gate.release();
    await arrived;
    await life1.post(ev.speak(id, "Hallo?")); // e4
    release();
    await until(() => ledger.records.some((r) => r.callId === id && r.kind === "sms_not_sent"), "life 1's approval recorded as not sent");
    await life1.close();

    // Life 2: the process restarted; the memory store is new, the ledger the same. The ledger holds
    // this call's SMS flow, which a new life cannot rebuild (and whose event positions it would
    // reuse): the offer ends, the caller is not asked again, and nothing of the old life is shadowed.
    const before = ledger.records.length;
    const life2 = await startTestService({ config: config(), ledger });
    services.push(life2);
    await life2.post(ev.speak(id, "Hallo, sind Sie noch da?")); // e1
    life2.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    const q2 = await life2.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?")); // e2
    expect(spoken(q2.actions).join(" ")).not.toMatch(/Darf ich Ihnen/);
    life2.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes2 = await life2.post(ev.speak(id, "Ja, gerne.")); // e3
    expect(smsActions(yes2.actions)).toEqual([]);
    // A record this life writes gets an id of its own (L1), never one the old life's records hold.
    life2.fake.enqueue(reply.tool("opt_out_sms", {}));
    await life2.post(ev.speak(id, "Und schicken Sie mir nie wieder eine SMS.")); // e4
    await life2.close();
    const added = ledger.records.slice(before);
    expect(added.map((r) => r.kind)).toContain("opt_out_added");
    for (const r of added) expect(r.id, r.kind).toMatch(new RegExp(`^${id}:L1:e\\d+:`));
    expect(new Set(ledger.records.map((r) => r.id)).size).toBe(ledger.records.length);
    expect(verifyRecords(ledger.records).problems).toEqual([]);
    // A third life comes after the second.
    const life3 = await startTestService({ config: config(), ledger });
    services.push(life3);
    life3.fake.enqueue(reply.tool("opt_out_sms", { number: "0151 12345678" }));
    await life3.post(ev.speak(id, "Auch an die 0151 12345678 bitte nie wieder.")); // e1
    expect(ledger.records.at(-1)!.id).toMatch(new RegExp(`^${id}:L2:e1:`));
  });
});
