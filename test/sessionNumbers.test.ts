import { describe, expect, it } from "vitest";
import { flowOwnNumber, remotePartyNumber } from "../src/aiflow/sessionNumbers.js";

// The session objects are the protocol reference's own fixtures (ai-flow-protocol.md, §7).
const inbound = { id: "in", phone_number: "4921112345678", direction: "inbound" as const, from_phone_number: "4915112345678", to_phone_number: "4921112345678" };
const outbound = { id: "out", phone_number: "4915790000687", direction: "outbound" as const, from_phone_number: "4921155660", to_phone_number: "4915790000687" };
const legacy = { id: "legacy", phone_number: "+491234567890", from_phone_number: "+499876543210", to_phone_number: "+491234567890" };

describe("flowOwnNumber / remotePartyNumber", () => {
  it("inbound: the flow is phone_number / to_phone_number, the caller is from_phone_number", () => {
    expect(flowOwnNumber(inbound)).toBe("4921112345678");
    expect(remotePartyNumber(inbound)).toBe("4915112345678");
  });

  it("outbound: the flow is from_phone_number, the dialled customer is to_phone_number (and phone_number)", () => {
    expect(flowOwnNumber(outbound)).toBe("4921155660");
    expect(remotePartyNumber(outbound)).toBe("4915790000687");
    // phone_number is the customer on outbound calls, so it must never be taken as the flow's number.
    expect(flowOwnNumber({ ...outbound, from_phone_number: undefined })).toBeUndefined();
    expect(remotePartyNumber({ ...outbound, to_phone_number: undefined })).toBe("4915790000687");
  });

  it("a missing direction (older payloads) reads as inbound, and the + prefix is stripped", () => {
    expect(flowOwnNumber(legacy)).toBe("491234567890");
    expect(remotePartyNumber(legacy)).toBe("499876543210");
  });

  it("inbound falls back to to_phone_number when phone_number is absent", () => {
    expect(flowOwnNumber({ ...inbound, phone_number: undefined })).toBe("4921112345678");
  });

  it("absent or non-numeric fields (an anonymous caller) give undefined, not a made-up number", () => {
    expect(remotePartyNumber({ ...inbound, from_phone_number: "anonymous" })).toBeUndefined();
    expect(remotePartyNumber({ ...inbound, from_phone_number: undefined })).toBeUndefined();
    expect(flowOwnNumber({ direction: "inbound" })).toBeUndefined();
    expect(flowOwnNumber({ direction: "outbound" })).toBeUndefined();
  });
});
