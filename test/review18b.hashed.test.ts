import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { numberRedactor } from "../src/ledger/chain.js";
import { FileLedger } from "../src/ledger/fileLedger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion } from "./support/deadline.js";

/**
 * Review 18b, issue 18 point 1: with `ledger.numbers: hashed` no record holds a number in any other
 * form. A record that names no number (a cancel or a "no" before a number is in play) stores the
 * caller's words unredacted, so the caller's own number, dictated a moment before, is in the file.
 */

const KEY = { id: "2026-12", secret: "c".repeat(40) };

describe("review18b: hashed numbers and records without a number", () => {
  let svc: TestService | undefined;
  afterEach(async () => {
    await svc?.close();
    svc = undefined;
  });

  it("a cancel while the caller dictates their number stores no digits of it", async () => {
    const hasher = NumberHasher.keyed(KEY);
    const path = join(mkdtempSync(join(tmpdir(), "review18b-hashed-")), "ledger.jsonl");
    const ledger = new FileLedger(path, { hasher, redact: numberRedactor("DE"), notice: () => undefined });
    await ledger.ready();
    process.env.LEDGER_HASH_KEY = `${KEY.id}:${KEY.secret}`;
    svc = await startTestService({ config: testConfig({ ledger: { numbers: "hashed", path } }), ledger });
    const id = "review18b-hashed-cancel";
    await atConsentQuestion(svc, id);
    // "Not this number": the task asks for another one (no number in play now).
    svc.fake.enqueue(reply.tool("ask_for_other_number", {}));
    await svc.post(ev.speak(id, "Nein, lieber an eine andere Nummer."));
    // The caller starts to dictate (their own number, as it happens), then gives up.
    svc.fake.enqueue(reply.tool("cancel_sms", {}));
    await svc.post(ev.speak(id, "Die 0151 12345678, ach nein, lassen Sie es."));
    await ledger.close();
    const text = readFileSync(path, "utf8");
    expect(text).toContain("sms_cancelled");
    expect(text, "a number in the ledger in clear with ledger.numbers: hashed").not.toMatch(/0151 ?12345678|15112345678/);
  });
});
