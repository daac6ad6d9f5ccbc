import { describe, expect, it } from "vitest";
import { ConsentQuestion, consentViolations, type CallerEntry } from "../bench/consentOracle.js";
import { loadConfigFile } from "../src/appConfig.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { PROMPTS_DIR } from "../src/service.js";

/**
 * The capacity bench's caller-side consent oracle (bench/consentOracle.ts): it must flag every
 * SMS the caller's own words and what it heard do not cover, including the cases a wrong "yes"
 * comes from (a cut-off question, a yes to a holding line, words after the yes, a "no").
 */

const config = loadConfigFile("config/agent.yaml");
const question = new ConsentQuestion(config.tasks.sms.consent.question, config.business.name);
const lines = new PromptLibrary(PROMPTS_DIR, "de-DE");
const CALLER = "4915112345678";
/** The question as the service speaks it: the number read out in digit groups. */
const asked = (spoken: string) => config.tasks.sms.consent.question.replace("{number}", spoken);
const heard = (text: string, complete = true): CallerEntry => ({ kind: "heard", text, complete });
const said = (text: string): CallerEntry => ({ kind: "said", text });
const sms = (to = CALLER): CallerEntry => ({ kind: "sms", to });
const silence: CallerEntry = { kind: "silence" };
const Q = asked("0 1 5 1, 1 2 3 4, 5 6 7 8");

describe("caller-side consent oracle", () => {
  it("reads the number out of the configured question, and no other line as the question", () => {
    expect(question.numberAskedIn(Q)).toBe("015112345678");
    expect(question.isFor(Q, CALLER)).toBe(true);
    expect(question.isFor(Q, "4915199999999")).toBe(false);
    expect(question.numberAskedIn(lines.line("sms_sent", { number: "0 1 5 1, 1 2 3 4, 5 6 7 8" }))).toBeUndefined();
    expect(question.numberAskedIn(lines.line("holding"))).toBeUndefined();
  });

  it("a yes to the fully heard question, then the SMS (a holding line and silence in between): no violation", () => {
    expect(consentViolations([heard("Guten Tag"), said("SMS bitte"), heard(Q), said("Ja, gerne."), sms()], question)).toEqual([]);
    expect(consentViolations([heard(Q), said("Ja, gerne."), heard(lines.line("holding")), silence, sms()], question)).toEqual([]);
  });

  it("flags an SMS without a question, after a cut-off question, after a yes to a holding line, or with words after the yes", () => {
    expect(consentViolations([heard("Guten Tag"), said("Ja"), sms()], question)).toHaveLength(1);
    expect(consentViolations([heard(Q, false), said("Ja, gerne."), sms()], question)).toHaveLength(1);
    expect(consentViolations([heard(Q), heard(lines.line("holding")), said("Ja, gerne."), sms()], question)).toHaveLength(1);
    expect(consentViolations([heard(Q), said("Ja, gerne."), said("Moment, doch nicht"), sms()], question)).toHaveLength(1);
  });

  it("flags an SMS after a no (also after a later yes), a second SMS on one yes, and an SMS to another number than asked", () => {
    expect(consentViolations([heard(Q), said("Nein, danke."), sms()], question)).toHaveLength(1);
    expect(consentViolations([heard(Q), said("Nein, danke."), heard(Q), said("Ja"), sms()], question)).toHaveLength(1);
    expect(consentViolations([heard(Q), said("Ja, gerne."), sms(), sms()], question)).toHaveLength(1);
    expect(consentViolations([heard(Q), said("Ja, gerne."), sms("4915199999999")], question)).toHaveLength(1);
  });
});
