import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { trimHistory, toolPairingProblems, repairToolPairing } from "../src/engine/history.js";
import { type HistoryMessage } from "../src/core/callState.js";
import { initialCallState, type SmsCallState as CallState } from "../src/tasks/sms/state.js";
import { createHmac } from "node:crypto";
import { digestOf, GENESIS } from "../src/ledger/chain.js";
import { FileLedger } from "../src/ledger/fileLedger.js";
import type { LedgerRecord } from "../src/ledger/ledger.js";
import { HMAC_PREFIX, MIN_SECRET_LENGTH, NumberHasher } from "../src/ledger/numberHash.js";
import { MemoryRateLimiter } from "../src/store/rateLimiter.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import type { AiFlowEvent } from "../src/aiflow/events.js";

function state(id: string): CallState {
  return initialCallState({ sessionId: id, direction: "inbound", language: "de-DE", step: "main" });
}

describe("MemoryCallStore", () => {
  it("returns copies (no shared objects between turns), expires by TTL and sweeps idle calls", async () => {
    let now = 1000;
    const store = new MemoryCallStore(() => now, 60_000);
    await store.arrive("t", { key: "k", event: { type: "session_start", session: { id: "t" } } as AiFlowEvent, via: "http", holdingFollowUp: false });
    await store.acquireLease("t", "A", 5000);
    await store.nextEvent("t", "A");
    const s = state("t");
    await store.commit("t", "A", { seq: 1, state: s, ttlSeconds: 10, droppable: false });
    s.step = "changed";
    expect((await store.get("t"))!.step).toBe("main");
    expect(await store.size()).toBe(1);
    now += 10_001;
    expect(await store.get("t")).toBeUndefined();
    await store.releaseLease("t", "A");
    store.sweep();
    expect(await store.size()).toBe(0);
    expect(await store.progress("t")).toEqual({ processed: 0, queued: 0, ready: { http: 0, ws: 0 }, ended: false });
    await store.close();
  });
});

describe("MemoryRateLimiter", () => {
  it("allows max hits per key in a sliding window", async () => {
    let now = 0;
    const l = new MemoryRateLimiter(() => now);
    const k = (key: string) => [{ key, max: 2, windowMs: 1000 }];
    expect(await l.acquire(k("k"))).toEqual({ ok: true });
    expect(await l.acquire(k("k"))).toEqual({ ok: true });
    expect(await l.acquire(k("k"))).toEqual({ ok: false, key: "k" });
    expect(await l.acquire(k("other"))).toEqual({ ok: true });
    now = 1001;
    expect(await l.acquire(k("k"))).toEqual({ ok: true });
  });

  it("is all-or-nothing across windows: a full window counts nothing in the others", async () => {
    const l = new MemoryRateLimiter(() => 0);
    const both = [
      { key: "a", max: 5, windowMs: 1000 },
      { key: "b", max: 1, windowMs: 1000 },
    ];
    expect(await l.acquire(both)).toEqual({ ok: true });
    for (let i = 0; i < 3; i++) expect(await l.acquire(both)).toEqual({ ok: false, key: "b" });
    // "a" was counted once, not four times.
    for (let i = 0; i < 4; i++) expect(await l.acquire([both[0]!])).toEqual({ ok: true });
    expect(await l.acquire([both[0]!])).toEqual({ ok: false, key: "a" });
  });
});

describe("FileLedger", () => {
  it("appends one JSON line per record, in order, durable when append resolves", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-"));
    const path = join(dir, "nested", "ledger.jsonl");
    const ledger = new FileLedger(path);
    await Promise.all([
      ledger.append({ id: "c1:t1:consent_asked:0", kind: "consent_asked", callId: "c1", at: "2026-11-23T09:00:00.000Z", number: "4915112345678", question: "Darf ich?" }),
      ledger.append({ id: "c1:t2:consent_given:0", kind: "consent_given", callId: "c1", at: "2026-11-23T09:00:03.000Z", number: "4915112345678", reply: "Ja" }),
    ]);
    // Read right after append resolved, before close: the lines are on disk.
    const lines = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([
      expect.objectContaining({ seq: 1, id: "c1:t1:consent_asked:0", kind: "consent_asked", number: "4915112345678", prev: GENESIS }),
      expect.objectContaining({ seq: 2, id: "c1:t2:consent_given:0", kind: "consent_given", reply: "Ja", prev: expect.stringMatching(/^[0-9a-f]{64}$/) }),
    ]);
    await ledger.close();
  });

  it("stores a keyed hash (and the key's id) instead of the number when configured", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "ledger-")), "l.jsonl");
    const key = { id: "k1", secret: "s".repeat(MIN_SECRET_LENGTH) };
    const ledger = new FileLedger(path, { hasher: NumberHasher.keyed(key) });
    await ledger.append({ id: "c:t1:sms_approved:0", kind: "sms_approved", callId: "c", at: "2026-11-23T09:00:00.000Z", number: "4915112345678" });
    await ledger.close();
    const text = readFileSync(path, "utf8");
    expect(text).not.toContain("15112345678");
    const stored = JSON.parse(text) as { number: string; keyId: string };
    // Computed here, independently of numberHash.ts: HMAC-SHA-256 of the number with the key's secret.
    expect(stored.number).toBe(HMAC_PREFIX + createHmac("sha256", key.secret).update("4915112345678").digest("hex"));
    expect(stored.keyId).toBe("k1");
  });

  it("an unwritable path rejects append (so the gate refuses the send) instead of crashing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "l-"));
    writeFileSync(join(dir, "a-file"), "x");
    const ledger = new FileLedger(join(dir, "a-file", "ledger.jsonl"));
    await expect(ledger.ready()).rejects.toThrow(/not writable/);
    // A valid record: the rejection is the path's doing, not the record's.
    await expect(ledger.append({ id: "c:t1:sms_approved:0", kind: "sms_approved", callId: "c", at: "2026-11-23T09:00:00.000Z" })).rejects.toThrow(/ENOTDIR|EEXIST/);
    await ledger.close();
  });
});

describe("history", () => {
  const toolCall = (id: string) => ({ id, type: "function" as const, function: { name: "x", arguments: "{}" } });
  const call = (id: string): HistoryMessage => ({ role: "assistant", content: null, tool_calls: [toolCall(id)] });
  const result = (id: string): HistoryMessage => ({ role: "tool", tool_call_id: id, content: "ok" });

  it("trims only at caller messages, so no tool result loses its call", () => {
    const h: HistoryMessage[] = [];
    for (let i = 0; i < 20; i++) h.push({ role: "user", content: `u${i}` }, call(`c${i}`), result(`c${i}`), { role: "assistant", content: `a${i}` });
    const t = trimHistory(h, 10);
    expect(t.length).toBeLessThanOrEqual(10);
    expect(t[0]!.role).toBe("user");
    expect(toolPairingProblems(t)).toEqual([]);
    expect(t.at(-1)).toEqual({ role: "assistant", content: "a19" });
  });

  it("finds and repairs unanswered tool calls", () => {
    const broken: HistoryMessage[] = [{ role: "user", content: "u" }, { role: "assistant", content: null, tool_calls: [toolCall("a"), toolCall("b")] }, result("a"), { role: "assistant", content: "hi" }];
    expect(toolPairingProblems(broken)).toEqual(["tool call b at 1 has no result"]);
    const fixed = repairToolPairing(broken, "failed");
    expect(toolPairingProblems(fixed)).toEqual([]);
    expect(fixed[3]).toEqual({ role: "tool", tool_call_id: "b", content: "failed" });
    expect(toolPairingProblems([result("zz")])).toEqual(["tool result zz at 0 has no matching call"]);
  });
});

describe("FileLedger after a crash", () => {
  it("continues the sequence and the chain, and never glues a record onto a torn line", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "ledger-")), "l.jsonl");
    const first = '{"seq":1,"id":"c:t1:consent_asked:0","kind":"consent_asked","callId":"c","at":"2026-11-23T09:00:00.000Z","prev":"' + GENESIS + '"}';
    writeFileSync(path, first + '\n{"seq":2,"kind":"consent_gi', { mode: 0o600 });
    const ledger = new FileLedger(path);
    await ledger.append({ id: "c:t2:consent_given:0", kind: "consent_given", callId: "c", at: "2026-11-23T09:00:02.000Z" });
    await ledger.close();
    const lines = readFileSync(path, "utf8").split("\n");
    expect(lines[1]).toBe('{"seq":2,"kind":"consent_gi');
    const second = JSON.parse(lines[2]!) as LedgerRecord;
    expect(second).toMatchObject({ seq: 2, kind: "consent_given", prev: digestOf(JSON.parse(first) as LedgerRecord) });
    const again = new FileLedger(path);
    await again.append({ id: "c:t3:sms_approved:0", kind: "sms_approved", callId: "c", at: "2026-11-23T09:00:03.000Z" });
    await again.close();
    const last = JSON.parse(readFileSync(path, "utf8").trim().split("\n").at(-1)!) as LedgerRecord;
    expect(last).toMatchObject({ seq: 3, kind: "sms_approved", prev: digestOf(second) });
  });
});
