import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";

describe("model selection through config", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({
      config: testConfig({ llm: { model: "base-model", temperature: 0.7, maxTokens: 123, steps: { confirm_consent: { model: "consent-model", temperature: 0 } } } }),
    });
  });
  afterAll(async () => svc.close());

  it("uses the configured model, temperature and max tokens, and per-step overrides", async () => {
    const id = "cfg-models";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    await svc.post(ev.speak(id, "SMS bitte"));
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    await svc.post(ev.speak(id, "Ja"));
    const [main, consent] = svc.fake.requests;
    expect(main).toMatchObject({ model: "base-model", temperature: 0.7, max_tokens: 123 });
    expect(consent).toMatchObject({ model: "consent-model", temperature: 0, max_tokens: 123 });
  });

  it("each step's request carries the persona plus only that step's prompt and tools", async () => {
    const [main, consent] = svc.fake.requests;
    const sys0 = main!.messages[0]!;
    const sys1 = consent!.messages[0]!;
    expect(sys0.role).toBe("system");
    expect(sys0.content).toContain("Praxis Dr. Muster");
    expect(sys0.content).toContain("rufe start_sms_flow auf");
    expect(sys0.content).not.toContain("record_consent");
    expect(sys1.content).toContain("record_consent");
    expect(sys1.content).toContain("0 1 5 1 1, 2 3 4, 5 6, 7 8");
    // No unfilled placeholders reach the model.
    expect(sys0.content).not.toMatch(/\{[a-z_]+\}/);
    expect(sys1.content).not.toMatch(/\{[a-z_]+\}/);
  });

  it("the consent step's request carries only its own part of the call (question and answer)", () => {
    const [main, consent] = svc.fake.requests;
    expect(main!.messages.some((m) => m.role === "assistant" && /^Guten Tag/.test(m.content ?? ""))).toBe(true);
    const history = consent!.messages.slice(1);
    expect(history.map((m) => m.role)).toEqual(["assistant", "user"]);
    expect(history[0]!.content).toMatch(/^Darf ich Ihnen/);
    expect(history[1]!.content).toBe("Ja");
  });

  it("strict function schemas by default", () => {
    const tool = svc.fake.requests[0]!.tools!.find((t) => t.function.name === "start_sms_flow")!;
    expect(tool.function.strict).toBe(true);
    expect(tool.function.parameters).toMatchObject({ type: "object", additionalProperties: false, required: ["info"] });
  });

  it("strict schemas can be switched off for servers that lack them", async () => {
    const loose = await startTestService({ config: testConfig({ llm: { strictTools: false } }) });
    try {
      await loose.post(ev.start("loose"));
      loose.fake.enqueue(reply.text("Hallo"));
      await loose.post(ev.speak("loose", "Hallo"));
      for (const t of loose.fake.requests[0]!.tools!) {
        expect(t.function).not.toHaveProperty("strict");
        expect(t.function.parameters).toHaveProperty("properties");
        expect(t.function.parameters).not.toHaveProperty("$schema");
      }
    } finally {
      await loose.close();
    }
  });
});

describe("English (en-US)", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 100, windowSeconds: 60 } } } } }, "config/agent.en-US.yaml") });
  });
  afterAll(async () => svc.close());

  it("runs the whole flow with English prompts, lines and a US number", async () => {
    const id = "en-1";
    const us = { from: "12125550123" };
    const hello = await svc.post(ev.start(id, us));
    expect(spoken(hello.actions)[0]).toMatch(/^Hello, you're speaking with the AI assistant of Muster Dental/);
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "opening_hours" }));
    const ask = await svc.post(ev.speak(id, "Can you text me the opening hours?", false, us));
    expect(svc.fake.requests[0]!.messages[0]!.content).toContain("Answer in English");
    expect(spoken(ask.actions)).toEqual(["May I text you the information at 2 1 2, 5 5 5, 0 1 2 3?"]);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await svc.post(ev.speak(id, "Yes please.", false, us));
    expect(smsActions(yes.actions)).toEqual([expect.objectContaining({ phone_number: "12125550123", message: expect.stringMatching(/^Muster Dental: Opening hours/) })]);
    expect(spoken(yes.actions)[0]).toMatch(/^I've sent the text to 2 1 2/);
  });

  it("English false claims are caught too", async () => {
    const id = "en-2";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.text("Your text has been delivered."), reply.text("Would you like the details by text?"));
    const r = await svc.post(ev.speak(id, "Did you send it?"));
    expect(spoken(r.actions)).toEqual(["Would you like the details by text?"]);
  });
});
