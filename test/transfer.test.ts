import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { AiFlowAction } from "../src/aiflow/actions.js";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev, FLOW_NUMBER } from "./support/events.js";
import { spoken, startTestService, testConfig, type TestService } from "./support/harness.js";

/**
 * Transfer to a person (issue 13, point 2): the model picks a configured target by key; the
 * caller hears the announcement, and AI Flow's transfer leaves with the configured timeout and the
 * flow's own number as caller ID. A transfer nobody answers comes back as a new session_start: the
 * caller hears that nobody is available, not "welcome back".
 */

const RECEPTION = "4921112345600";
const BILLING = "4921112345601";
const ANNOUNCE = "Ich verbinde Sie mit dem Empfang. Einen Moment bitte.";
const ANNOUNCE_UNNAMED = "Ich verbinde Sie mit einem Mitarbeiter. Einen Moment bitte.";
const FAILED = "Leider ist gerade niemand erreichbar. Kann ich Ihnen anders helfen?";
const WELCOME_BACK = "Da sind Sie wieder. Wie kann ich Ihnen weiterhelfen?";

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({
    config: testConfig({
      agents: {
        reception: {
          transfer: {
            timeoutSeconds: 25,
            callerIdName: "Praxis Hotline",
            targets: {
              reception: { number: RECEPTION, description: "Empfang / reception desk, for appointments", name: "dem Empfang" },
              billing: { number: BILLING, description: "billing questions" },
            },
          },
        },
      },
    }),
  });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());

const transfers = (actions: AiFlowAction[]) => actions.filter((a): a is Extract<AiFlowAction, { type: "transfer" }> => a.type === "transfer");

describe("transfer_call", () => {
  it("inbound: the announcement, then the transfer to the chosen target with the timeout and the flow's number as caller ID", async () => {
    const id = "transfer-inbound";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("transfer_call", { target: "reception" }));
    const r = await svc.post(ev.speak(id, "Ich möchte bitte mit jemandem am Empfang sprechen."));
    expect(r.status).toBe(200);
    expect(spoken(r.actions)).toEqual([ANNOUNCE]);
    expect(r.actions.map((a) => a.type)).toEqual(["speak", "transfer"]);
    expect(transfers(r.actions)).toEqual([
      { type: "transfer", session_id: id, target_phone_number: RECEPTION, caller_id_name: "Praxis Hotline", caller_id_number: FLOW_NUMBER, timeout: 25 },
    ]);
    // One model request: the announcement is a fixed line, the model is not asked again.
    expect(svc.fake.requests).toHaveLength(1);
    const tools = svc.fake.requests[0]!.tools!.map((t) => t.function.name);
    expect(tools).toContain("transfer_call");
    const state = await svc.store.get(id);
    expect((state as { transfer?: { target: string } }).transfer).toMatchObject({ target: "reception" });
  });

  it("a target without a name: the announcement without one", async () => {
    const id = "transfer-unnamed";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("transfer_call", { target: "billing" }));
    const r = await svc.post(ev.speak(id, "Ich habe eine Frage zur Rechnung."));
    expect(spoken(r.actions)).toEqual([ANNOUNCE_UNNAMED]);
    expect(transfers(r.actions)[0]).toMatchObject({ target_phone_number: BILLING });
  });

  it("outbound: the caller ID is the flow's own number, from_phone_number", async () => {
    const id = "transfer-outbound";
    const outbound = { direction: "outbound" as const, from: FLOW_NUMBER, to: CALLER };
    await svc.post(ev.start(id, outbound));
    svc.fake.enqueue(reply.tool("transfer_call", { target: "reception" }));
    const r = await svc.post(ev.speak(id, "Verbinden Sie mich bitte mit einem Menschen.", false, outbound));
    expect(transfers(r.actions)).toHaveLength(1);
    expect(transfers(r.actions)[0]).toMatchObject({ target_phone_number: RECEPTION, caller_id_number: FLOW_NUMBER });
    expect(transfers(r.actions)[0]!.caller_id_number).not.toBe(CALLER);
  });

  it("nobody answers (a new session_start for the call): the transfer_failed line, no welcome back, the mark cleared", async () => {
    const id = "transfer-failed";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("transfer_call", { target: "reception" }));
    await svc.post(ev.speak(id, "Bitte verbinden Sie mich mit dem Empfang."));
    const back = await svc.post(ev.start(id));
    expect(spoken(back.actions)).toEqual([FAILED]);
    expect(spoken(back.actions)).not.toContain(WELCOME_BACK);
    expect(transfers(back.actions)).toEqual([]);
    expect((await svc.store.get(id) as { transfer?: unknown }).transfer).toBeUndefined();
    // The conversation goes on; the model sees what the caller heard.
    svc.fake.enqueue(reply.text("Gern, ich helfe Ihnen weiter."));
    const next = await svc.post(ev.speak(id, "Dann sagen Sie mir bitte die Öffnungszeiten."));
    expect(spoken(next.actions)).toEqual(["Gern, ich helfe Ihnen weiter."]);
    expect(JSON.stringify(svc.fake.requests.at(-1)!.messages)).toContain(FAILED);
    // A later session_start (no transfer pending) is a plain welcome back again.
    const again = await svc.post(ev.start(id));
    expect(spoken(again.actions)).toEqual([WELCOME_BACK]);
  });

  it("an unknown target key: invalid arguments, the model is told, no transfer", async () => {
    const id = "transfer-unknown";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("transfer_call", { target: "sales" }), reply.text("Dafür habe ich leider niemanden, den ich Ihnen durchstellen kann."));
    const r = await svc.post(ev.speak(id, "Verbinden Sie mich mit dem Vertrieb."));
    expect(transfers(r.actions)).toEqual([]);
    expect(spoken(r.actions)).toEqual(["Dafür habe ich leider niemanden, den ich Ihnen durchstellen kann."]);
    expect(svc.fake.requests).toHaveLength(2);
    const toolResult = svc.fake.requests[1]!.messages.at(-1)!;
    expect(toolResult.role).toBe("tool");
    expect(toolResult.content).toMatch(/invalid arguments for transfer_call/);
    expect((await svc.store.get(id) as { transfer?: unknown }).transfer).toBeUndefined();
  });

  it("the SMS gate lets the transfer through unchanged (schema-checked, no SMS rule applies)", async () => {
    const id = "transfer-gate";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("transfer_call", { target: "reception" }));
    const r = await svc.post(ev.speak(id, "Einen Menschen bitte."));
    expect(transfers(r.actions)).toHaveLength(1);
    const state = await svc.store.get(id);
    expect(state!.sms.sent).toEqual([]);
  });
});

describe("transfer_call without configured targets", () => {
  let plain: TestService;
  beforeAll(async () => {
    plain = await startTestService();
  });
  afterAll(async () => plain.close());

  it("the tool answers that no transfer is possible; nothing leaves but the model's words", async () => {
    const id = "transfer-none";
    await plain.post(ev.start(id));
    plain.fake.enqueue(reply.tool("transfer_call", { target: "reception" }), reply.text("Eine Weiterleitung ist leider nicht möglich, aber ich helfe Ihnen gern."));
    const r = await plain.post(ev.speak(id, "Ich möchte mit einem Menschen sprechen."));
    expect(transfers(r.actions)).toEqual([]);
    expect(spoken(r.actions)).toEqual(["Eine Weiterleitung ist leider nicht möglich, aber ich helfe Ihnen gern."]);
    expect(plain.fake.requests[1]!.messages.at(-1)!.content).toMatch(/No transfer to a person is possible/);
  });
});
