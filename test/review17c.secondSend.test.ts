import { describe, expect, it } from "vitest";
import { approvedSends } from "../src/tasks/sms/evidenceIds.js";
import type { SmsCallState } from "../src/tasks/sms/state.js";
import { forgetNotedSends } from "../src/tasks/sms/withdrawnSends.js";

/**
 * Review 17c (adversarial review of b3d2ad7): the note of a send that never left (markNotSent) is
 * applied by the call's next turn, or later (the store did not answer: the note is retried in the
 * background, while turns go on). With `sms.maxPerCall` above 1 a second SMS to the same number may
 * have been approved and handed over by then. Forgetting the first send must not take back the
 * task's result of the second: the caller got that one (its answer was written).
 */

const CALL = "review17c-second-send";
const NUMBER = "4915112345678";
const send = { type: "send_sms" as const, session_id: CALL, phone_number: NUMBER, message: "Adresse: Musterstraße 1" };

describe("review17c: a note for the first send, applied after a second send to the same number", () => {
  it("the second send's handed_over result stays", () => {
    // Event 3's send (its answer lost) and event 7's send (written: handed over), both to NUMBER.
    const [first] = approvedSends(CALL, [{ seq: 3, actions: [send] }]);
    const [second] = approvedSends(CALL, [{ seq: 7, actions: [send] }]);
    const state = {
      sms: {
        slots: {},
        declined: false,
        retryAllowance: 0,
        sent: [
          { number: NUMBER, message: send.message, turn: 3, approval: first!.approval },
          { number: NUMBER, message: send.message, turn: 7, approval: second!.approval },
        ],
        result: { value: { status: "handed_over", number: NUMBER }, settled: true },
      },
    } as unknown as SmsCallState;
    forgetNotedSends(state, [first!]);
    expect(state.sms.sent.map((s) => s.approval), "the first send is forgotten, the second stays").toEqual([second!.approval]);
    expect(state.sms.result?.value.status, "the task's result: the second SMS was handed over").toBe("handed_over");
  });
});
