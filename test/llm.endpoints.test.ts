import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { ModelError } from "../src/llm/chatModel.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";

/** The same client code against the URL shapes of the OpenAI-compatible servers the README names. */

const fake = new FakeOpenAIServer();
beforeAll(async () => {
  await fake.start();
});
afterAll(async () => fake.close());

const request = { model: "m", temperature: 0, maxTokens: 50, system: "sys", messages: [{ role: "user" as const, content: "hi" }], tools: [] };

describe("OpenAI-compatible endpoints", () => {
  it("OpenAI / Ollama / vLLM / Azure v1: POST {base}/chat/completions with a bearer key", async () => {
    fake.reset();
    fake.enqueue(reply.text("hallo"));
    const model = new OpenAIChatModel({ apiKey: "sk-test", baseURL: fake.baseURL, timeoutMs: 2000, maxRetries: 0 });
    const r = await model.complete(request);
    expect(r.text).toBe("hallo");
    expect(fake.calls[0]!.url).toBe("/v1/chat/completions");
    expect(fake.calls[0]!.headers.authorization).toBe("Bearer sk-test");
    expect(fake.requests[0]).not.toHaveProperty("tools");
    expect(fake.requests[0]!.messages[0]).toEqual({ role: "system", content: "sys" });
  });

  it("classic Azure OpenAI: deployment in the path, api-version query, api-key header", async () => {
    fake.reset();
    fake.enqueue(reply.text("azure"));
    const model = new OpenAIChatModel({ apiKey: "az-key", baseURL: fake.baseURL.replace(/\/v1$/, ""), timeoutMs: 2000, maxRetries: 0, azureApiVersion: "2024-10-21" });
    const r = await model.complete({ ...request, model: "my-deployment" });
    expect(r.text).toBe("azure");
    expect(fake.calls[0]!.url).toBe("/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21");
    expect(fake.calls[0]!.headers["api-key"]).toBe("az-key");
  });

  it("retries a 429 / 5xx when configured, then succeeds", async () => {
    fake.reset();
    fake.enqueue(reply.error(503), reply.text("after retry"));
    const model = new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 2000, maxRetries: 1 });
    expect((await model.complete(request)).text).toBe("after retry");
    expect(fake.requests).toHaveLength(2);
  });

  it("errors come back as ModelError with the cause", async () => {
    fake.reset();
    fake.enqueue(reply.error(401));
    const model = new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 2000, maxRetries: 0 });
    await expect(model.complete(request)).rejects.toBeInstanceOf(ModelError);
  });
});
