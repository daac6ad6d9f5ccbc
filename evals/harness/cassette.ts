import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChatModel, ChatRequest, ChatResponse } from "../../src/llm/chatModel.js";

/**
 * Cassettes: every model exchange of a run, keyed by a hash of the request, so a run can be
 * replayed with no network. A replay that meets a request it has no answer for fails loudly.
 */

export function requestKey(req: ChatRequest): string {
  const { model, temperature, maxTokens, system, messages, tools } = req;
  return createHash("sha256").update(JSON.stringify({ model, temperature, maxTokens, system, messages, tools })).digest("hex");
}

export class CassetteMissError extends Error {
  constructor(file: string, key: string, req: ChatRequest) {
    const last = req.messages.at(-1);
    super(`cassette miss in ${file}: no recorded answer for request ${key.slice(0, 12)} (model ${req.model}, last message ${JSON.stringify(last?.content ?? null).slice(0, 80)}); record again with --record`);
    this.name = "CassetteMissError";
  }
}

/** The replay dir has no cassette for this model: a wrong dir or a run never recorded, not a harness crash. */
export class NoCassetteError extends Error {
  override name = "NoCassetteError";
}

/**
 * The cassette of the model that plays a persona scenario's caller, next to the agent model's.
 * Without it a replay cannot know what the recorded caller said, and would have to make it up.
 */
export function personaCallerCassette(modelName: string): string {
  return `${modelName}.persona-caller`;
}

function cassetteFile(dir: string, modelName: string): string {
  return join(dir, `${modelName.replace(/[^a-zA-Z0-9._-]/g, "_")}.json`);
}

/** Passes requests to the real model and keeps every answer. */
export class RecordingModel implements ChatModel {
  private readonly entries: Record<string, ChatResponse> = {};
  constructor(
    private readonly inner: ChatModel,
    private readonly dir: string,
    private readonly modelName: string,
  ) {}

  async complete(req: ChatRequest): Promise<ChatResponse> {
    const res = await this.inner.complete(req);
    this.entries[requestKey(req)] = res;
    return res;
  }

  save(): string {
    mkdirSync(this.dir, { recursive: true });
    const file = cassetteFile(this.dir, this.modelName);
    const existing = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, ChatResponse>) : {};
    writeFileSync(file, JSON.stringify({ ...existing, ...this.entries }, null, 1));
    return file;
  }
}

/** Answers only from a cassette; never touches the network. */
export class ReplayModel implements ChatModel {
  private readonly entries: Record<string, ChatResponse>;
  readonly file: string;
  /** Misses so far; the engine turns a model error into an apology, so the harness checks these itself. */
  readonly misses: CassetteMissError[] = [];
  constructor(dir: string, modelName: string) {
    this.file = cassetteFile(dir, modelName);
    if (!existsSync(this.file)) throw new NoCassetteError(`no cassette for model ${modelName}: ${this.file} does not exist; record one with --record ${dir}`);
    this.entries = JSON.parse(readFileSync(this.file, "utf8")) as Record<string, ChatResponse>;
  }

  async complete(req: ChatRequest): Promise<ChatResponse> {
    const key = requestKey(req);
    const hit = this.entries[key];
    if (!hit) {
      const miss = new CassetteMissError(this.file, key, req);
      this.misses.push(miss);
      throw miss;
    }
    return structuredClone(hit);
  }
}
