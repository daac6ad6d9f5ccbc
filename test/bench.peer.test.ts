import { describe, expect, it } from "vitest";
import { peerCompare } from "../bench/peerCompare.js";
import { loadTokenizer } from "../bench/tokens.js";

/**
 * Row (b)'s side-by-side comparison at minimum size, so it cannot rot: one call, played by the
 * service and by OpenAI Agents JS (bench/peer is installed from its lock file when missing, as in
 * CI on a fresh clone), against the local model server answering at once.
 */
describe("bench: side by side with OpenAI Agents JS", () => {
  // The first test to run may install bench/peer (npm ci, about half a minute).
  it("counts tokens with the o200k_base tokenizer, not characters / 4", { timeout: 240_000 }, async () => {
    const tok = await loadTokenizer();
    expect(tok.encoding).toBe("o200k_base");
    expect(tok.count("hello world")).toBe(2);
    // A German line: far from its length / 4, and the same count every time.
    const line = "Können Sie mir die Öffnungszeiten per SMS schicken?";
    expect(tok.count(line)).toBeGreaterThan(0);
    expect(tok.count(line)).not.toBe(Math.ceil(line.length / 4));
    expect(tok.count(line)).toBe(tok.count(line));
  });

  it("plays one call on both designs and counts each design's model requests", { timeout: 240_000 }, async () => {
    const r = await peerCompare({ modelMs: 0, runs: 1, scenarioIds: ["happy-own-number-de"] });
    // The call: SMS request, "Ja, gerne.", goodbye; each design sent its SMS.
    expect(r.calls).toEqual(["happy-own-number-de"]);
    expect(r.callerTurnsPerPass).toBe(3);
    expect(r.problems).toEqual([]);
    // Ours: start_sms_flow (1); "Ja, gerne." right after the heard question is a listed clear yes,
    // so record_consent runs by rule and the send is code (0); end_call (1).
    expect(r.ours.requestsPerTurn).toBeCloseTo(2 / 3, 5);
    // Agents JS by default asks again after every tool: 2 (start_sms_flow, text) + 3 (record_consent, send, text) + 2 (end_call, text).
    expect(r.peerDefault.requestsPerTurn).toBeCloseTo(7 / 3, 5);
    // With stopAtToolNames the tool's output ends the turn; record_consent still needs the send after it: 1 + 2 + 1.
    expect(r.peerStopAtTools.requestsPerTurn).toBeCloseTo(4 / 3, 5);
    // The peer sends every step's prompt and every tool with the whole history each time.
    expect(r.peerStopAtTools.promptTokensPerTurn).toBeGreaterThan(r.ours.promptTokensPerTurn);
    expect(r.peerDefault.promptTokensPerTurn).toBeGreaterThan(r.peerStopAtTools.promptTokensPerTurn);
    for (const d of [r.ours, r.peerDefault, r.peerStopAtTools]) expect(d.wallMsPerCall).toBeGreaterThan(0);
    expect(r.wallRatioStopAtTools).toBe(r.ours.wallMsPerCall / r.peerStopAtTools.wallMsPerCall);
  });
});
