import fc from "fast-check";
import { parsePhoneNumberFromString } from "libphonenumber-js/max";
import { describe, expect, it } from "vitest";
import { maskNumber, normalizeAiFlowNumber, parseAiFlowNumber, parseCallerNumber, spokenDigitGroups, type ParsedNumber } from "../src/phone/number.js";
import { checkRecipient, type RecipientPolicy } from "../src/phone/policy.js";
import { spokenToDialString } from "../src/phone/spoken.js";

const MOBILE = "4915112345678";

/** Parse with home country DE and insist on a result. */
function parseDE(input: string): ParsedNumber {
  const p = parseCallerNumber(input, "DE");
  if (!p) throw new Error(`expected ${JSON.stringify(input)} to parse`);
  return p;
}

describe("spokenToDialString", () => {
  it.each([
    ["0151 1234 5678", "015112345678"],
    ["0151-1234-5678", "015112345678"],
    ["0151/1234567-8", "015112345678"],
    ["0151.1234.5678", "015112345678"],
    ["(0151) 1234 5678", "015112345678"],
    ["plus 49 151 12345678", "+4915112345678"],
    ["Plus 49 151 12345678", "+4915112345678"],
    ["+49 151 12345678", "+4915112345678"],
    ["+ 49 151 12345678", "+4915112345678"],
    ["0049 151 12345678", "+4915112345678"],
    ["00 49 151 12345678", "+4915112345678"],
    ["null eins fünf eins eins zwei drei vier fünf sechs sieben acht", "015112345678"],
    ["Null Eins Fünf Eins Eins Zwei Drei Vier Fünf Sechs Sieben Acht", "015112345678"],
    ["null eins fuenf eins eins zwo drei vier fuenf sechs sieben acht", "015112345678"],
    ["doppel null vier neun eins fünf eins", "+49151"],
    ["doppelnull vier neun 151", "+49151"],
    ["plus vier neun eins fünf eins", "+49151"],
    ["zero one five one one two three four five six seven eight", "015112345678"],
    ["oh one five one", "0151"],
    ["double seven", "77"],
    ["triple eight", "888"],
    ["doppel 7", "77"],
    ["meine Nummer ist 0151 1234 5678", "015112345678"],
    ["my number is 0151 1234 5678", "015112345678"],
    ["hallo", ""],
    ["", ""],
  ])("%j → %j", (input, expected) => {
    expect(spokenToDialString(input)).toBe(expected);
  });

  it("a '+' or 'plus' after the first digit is ignored", () => {
    expect(spokenToDialString("0151 plus 1234")).toBe("01511234");
  });

  it("a repeat word only repeats the next digit, once", () => {
    expect(spokenToDialString("double seven eight")).toBe("778");
    expect(spokenToDialString("doppel 12")).toBe("112");
  });
});

describe("parseCallerNumber (home DE): normalized output is E.164 digits without '+'", () => {
  it.each([
    ["0151 1234 5678"],
    ["0151-1234-5678"],
    ["plus 49 151 12345678"],
    ["+49 151 12345678"],
    ["+49 (0)151 12345678"],
    ["+49 (0) 151 1234 5678"],
    ["0049 151 12345678"],
    ["0049151 12345678"],
    ["null eins fünf eins eins zwei drei vier fünf sechs sieben acht"],
    ["null eins fünf eins eins zwo drei vier fünf sechs sieben acht"],
    ["doppel null vier neun eins fünf eins eins zwei drei vier fünf sechs sieben acht"],
    ["doppelnull vier neun 151 12345678"],
    ["zero one five one one two three four five six seven eight"],
    ["meine Nummer ist 0151 1234 5678"],
    ["Meine Nummer? Null eins fünf eins, eins zwei drei vier, fünf sechs sieben acht."],
    ["my number is 0151-1234-5678"],
  ])("%j → 4915112345678, valid German mobile", (input) => {
    const p = parseDE(input);
    expect(p.aiflow).toBe(MOBILE);
    expect(p.e164).toBe("+" + MOBILE);
    expect(p.aiflow).not.toContain("+");
    expect(p).toMatchObject({ country: "DE", type: "MOBILE", valid: true });
  });

  it("'double seven' (English) repeats the digit", () => {
    const p = parseDE("zero one five one double seven one two three four five six");
    expect(p.aiflow).toBe("4915177123456");
    expect(p.valid).toBe(true);
  });

  it("'doppel sieben' (German) repeats the digit", () => {
    expect(parseDE("null eins sieben sechs doppel sieben eins zwei drei vier fünf sechs").aiflow).toBe("4917677123456");
  });

  it("international numbers keep their own country", () => {
    expect(parseDE("+43 664 1234567")).toMatchObject({ aiflow: "436641234567", country: "AT", type: "MOBILE", valid: true });
    expect(parseDE("0041 79 123 45 67")).toMatchObject({ aiflow: "41791234567", country: "CH", type: "MOBILE", valid: true });
    expect(parseDE("+1 212 555 0123")).toMatchObject({ aiflow: "12125550123", country: "US", valid: true });
  });

  it.each([["hallo"], [""], ["ja"], ["eins"], ["12"], ["plus"]])("garbage %j → undefined", (input) => {
    expect(parseCallerNumber(input, "DE")).toBeUndefined();
  });

  it.each([["0151 12"], ["triple sieben"], ["0151 1234 5678 9999"], ["o one five one"]])("%j → parsed but not valid", (input) => {
    const p = parseCallerNumber(input, "DE");
    expect(p === undefined || p.valid === false).toBe(true);
  });

  it("home country decides national formats: 0151… with US home is not a German number", () => {
    const p = parseCallerNumber("0151 1234 5678", "US");
    expect(p?.aiflow === MOBILE && p.valid).toBe(false);
  });

  it("national / international formatting fields", () => {
    const p = parseDE("0176 12345678");
    expect(p.national).toBe("0176 12345678");
    expect(p.international).toBe("+49 176 12345678");
  });
});

describe("normalizeAiFlowNumber", () => {
  it("strips a leading '+'", () => {
    expect(normalizeAiFlowNumber("+4915112345678")).toBe(MOBILE);
  });

  it("keeps digits-only numbers as they are", () => {
    expect(normalizeAiFlowNumber(MOBILE)).toBe(MOBILE);
  });

  it("drops separators", () => {
    expect(normalizeAiFlowNumber("+49 151-1234 5678")).toBe(MOBILE);
  });

  it.each([
    ["too short", "123456"],
    ["too short with +", "+49151"],
    ["too long", "1234567890123456"],
    ["national format (leading 0)", "015112345678"],
    ["non-numeric", "anonymous"],
    ["non-numeric letters only", "abc"],
    ["empty", ""],
    ["only a plus", "+"],
  ])("rejects %s: %j", (_label, raw) => {
    expect(normalizeAiFlowNumber(raw)).toBeUndefined();
  });

  it("rejects undefined and null", () => {
    expect(normalizeAiFlowNumber(undefined)).toBeUndefined();
    expect(normalizeAiFlowNumber(null)).toBeUndefined();
  });

  it("property: '+'-prefixed E.164 digits normalize to the digits", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[1-9]\d{6,14}$/), (digits) => {
        expect(normalizeAiFlowNumber("+" + digits)).toBe(digits);
        expect(normalizeAiFlowNumber(digits)).toBe(digits);
      }),
    );
  });
});

describe("parseAiFlowNumber", () => {
  it("parses stored numbers with and without '+'", () => {
    expect(parseAiFlowNumber(MOBILE)).toMatchObject({ aiflow: MOBILE, country: "DE", type: "MOBILE", valid: true });
    expect(parseAiFlowNumber("+" + MOBILE)?.aiflow).toBe(MOBILE);
  });

  it("does not treat a stored number as national", () => {
    expect(parseAiFlowNumber("436641234567")).toMatchObject({ country: "AT", valid: true });
  });

  it("returns undefined for non-numbers", () => {
    expect(parseAiFlowNumber("")).toBeUndefined();
    expect(parseAiFlowNumber("anonymous")).toBeUndefined();
  });
});

describe("spokenDigitGroups", () => {
  it("domestic German mobile, home DE: national format, groups of at most 5, digit by digit", () => {
    expect(spokenDigitGroups(parseAiFlowNumber(MOBILE)!, "DE")).toBe("0 1 5 1 1, 2 3 4, 5 6, 7 8");
  });

  it("0176 12345678, home DE", () => {
    expect(spokenDigitGroups(parseAiFlowNumber("4917612345678")!, "DE")).toBe("0 1 7 6, 1 2 3, 4 5 6, 7 8");
  });

  it("Berlin landline, home DE", () => {
    expect(spokenDigitGroups(parseAiFlowNumber("4930123456")!, "DE")).toBe("0 3 0, 1 2 3, 4 5 6");
  });

  it("a German number with home AT is international, with '+'", () => {
    expect(spokenDigitGroups(parseAiFlowNumber(MOBILE)!, "AT")).toBe("+ 4 9, 1 5 1 1, 2 3 4, 5 6, 7 8");
  });

  it("an Austrian number with home DE is international, with '+'", () => {
    const s = spokenDigitGroups(parseAiFlowNumber("436641234567")!, "DE");
    expect(s.startsWith("+")).toBe(true);
    expect(s).toBe("+ 4 3, 6 6 4, 1 2 3, 4 5, 6 7");
  });

  it("a UK number with home DE is international, with '+'", () => {
    expect(spokenDigitGroups(parseAiFlowNumber("447400123456")!, "DE")).toBe("+ 4 4, 7 4 0 0, 1 2 3, 4 5 6");
  });

  it("a US number (parentheses in national format) with home US has no parentheses", () => {
    const s = spokenDigitGroups(parseAiFlowNumber("12125550123")!, "US");
    expect(s).not.toMatch(/[()]/);
    expect(s.replace(/[^\d]/g, "")).toBe("2125550123");
  });
});

describe("maskNumber", () => {
  it("shows only the last 3 digits", () => {
    expect(maskNumber(MOBILE)).toBe("**********678");
    expect(maskNumber("+" + MOBILE)).toBe("**********678");
  });

  it("never reveals more than 3 digits", () => {
    const masked = maskNumber("+49 151 1234 5678");
    expect(masked.replace(/\*/g, "")).toBe("678");
  });

  it("numbers of 3 digits or fewer are fully hidden", () => {
    expect(maskNumber("123")).toBe("***");
    expect(maskNumber("12")).toBe("***");
  });

  it("empty input gives an empty string", () => {
    expect(maskNumber("")).toBe("");
    expect(maskNumber(undefined)).toBe("");
    expect(maskNumber(null)).toBe("");
  });
});

describe("checkRecipient", () => {
  const policy: RecipientPolicy = { allowedCountries: ["DE", "AT", "CH"], allowedNumberTypes: ["MOBILE"], blockedNumbers: [] };
  const check = (input: string, p: RecipientPolicy = policy) => checkRecipient(parseCallerNumber(input, "DE"), p);

  it.each([["0151 1234 5678"], ["0176 12345678"], ["+43 664 1234567"], ["+41 79 123 45 67"]])("mobile %j in an allowed country is ok", (input) => {
    expect(check(input)).toEqual({ ok: true });
  });

  it.each([
    ["premium rate 0900", "0900 1234567", "PREMIUM_RATE"],
    ["shared cost 0180", "0180 1234567", "SHARED_COST"],
    ["toll free 0800", "0800 1234567", "TOLL_FREE"],
    ["Berlin landline 030", "030 12345678", "FIXED_LINE"],
  ])("German %s → number_type_not_allowed", (_label, input, type) => {
    expect(parseDE(input)).toMatchObject({ valid: true, country: "DE", type });
    const v = check(input);
    expect(v.ok).toBe(false);
    expect(!v.ok && v.reason).toBe("number_type_not_allowed");
    expect(!v.ok && v.detail).toContain(type);
  });

  it("UK mobile +44 7911 123456 → country_not_allowed", () => {
    const v = check("+44 7911 123456");
    expect(!v.ok && v.reason).toBe("country_not_allowed");
  });

  it("UK mobile +44 7400 123456 → country_not_allowed naming GB", () => {
    const v = check("+44 7400 123456");
    expect(!v.ok && v.reason).toBe("country_not_allowed");
    expect(!v.ok && v.detail).toContain("GB");
  });

  it.each([["0151 12"], ["hallo"], ["+49 151"]])("invalid number %j → invalid_number", (input) => {
    const v = check(input);
    expect(!v.ok && v.reason).toBe("invalid_number");
  });

  it("undefined → invalid_number", () => {
    const v = checkRecipient(undefined, policy);
    expect(!v.ok && v.reason).toBe("invalid_number");
  });

  it("blocked number → number_blocked, however it was spoken", () => {
    const blocked: RecipientPolicy = { ...policy, blockedNumbers: [MOBILE] };
    for (const input of ["0151 1234 5678", "+49 151 12345678", "null eins fünf eins eins zwei drei vier fünf sechs sieben acht"]) {
      const v = check(input, blocked);
      expect(!v.ok && v.reason).toBe("number_blocked");
    }
    expect(check("0176 12345678", blocked)).toEqual({ ok: true });
  });

  it("FIXED_LINE allowed by policy lets the landline through", () => {
    expect(check("030 12345678", { ...policy, allowedNumberTypes: ["MOBILE", "FIXED_LINE"] })).toEqual({ ok: true });
  });
});

/** Valid German mobile numbers in national format: 015x / 016x / 017x prefix + 7 or 8 subscriber digits, libphonenumber-valid. */
const PREFIXES = ["0151", "0152", "0155", "0157", "0159", "0160", "0162", "0163", "0170", "0171", "0172", "0173", "0174", "0175", "0176", "0177", "0178", "0179"];
const germanMobile = fc
  .tuple(fc.constantFrom(...PREFIXES), fc.stringMatching(/^\d{7,8}$/))
  .map(([prefix, sub]) => prefix + sub)
  .filter((national) => {
    const p = parsePhoneNumberFromString(national, "DE");
    return !!p && p.isValid() && p.getType() === "MOBILE";
  });

/** Insert a random separator ("", " ", "-", " - ", "  ") after every digit. */
function withSeparators(digits: string) {
  return fc.array(fc.constantFrom("", "", " ", "-", " - ", "  ", "/"), { minLength: digits.length, maxLength: digits.length }).map((seps) =>
    digits
      .split("")
      .map((d, i) => d + (i < digits.length - 1 ? seps[i] : ""))
      .join(""),
  );
}

const GERMAN_WORDS = ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"];

describe("properties (fast-check)", () => {
  it("a valid German mobile formatted nationally with random spaces/dashes parses back to the same E.164 digits", () => {
    fc.assert(
      fc.property(
        germanMobile.chain((national) => fc.tuple(fc.constant(national), withSeparators(national))),
        ([national, formatted]) => {
          const expected = parsePhoneNumberFromString(national, "DE")!.number.slice(1);
          const p = parseCallerNumber(formatted, "DE");
          expect(p?.aiflow).toBe(expected);
          expect(p?.valid).toBe(true);
          expect(p?.type).toBe("MOBILE");
          expect(checkRecipient(p, { allowedCountries: ["DE"], allowedNumberTypes: ["MOBILE"], blockedNumbers: [] })).toEqual({ ok: true });
        },
      ),
      { numRuns: 300 },
    );
  });

  it("the same number in +49 / 0049 / 'plus 49' international form gives the same digits", () => {
    fc.assert(
      fc.property(germanMobile, fc.constantFrom("+49 ", "0049 ", "plus 49 ", "+49 (0)", "00 49 "), (national, intl) => {
        const expected = "49" + national.slice(1);
        expect(parseCallerNumber(intl + national.slice(1), "DE")?.aiflow).toBe(expected);
      }),
      { numRuns: 200 },
    );
  });

  it("the number spoken as German digit words gives the same digits", () => {
    fc.assert(
      fc.property(germanMobile, (national) => {
        const spoken = national
          .split("")
          .map((d) => GERMAN_WORDS[Number(d)]!)
          .join(" ");
        expect(parseCallerNumber(spoken, "DE")?.aiflow).toBe("49" + national.slice(1));
      }),
      { numRuns: 200 },
    );
  });

  it("spokenDigitGroups reads every digit, one at a time, in groups of at most 5", () => {
    fc.assert(
      fc.property(germanMobile, (national) => {
        const p = parseCallerNumber(national, "DE")!;
        const spoken = spokenDigitGroups(p, "DE");
        const groups = spoken.split(", ");
        for (const g of groups) {
          const tokens = g.split(" ");
          expect(tokens.length).toBeGreaterThan(0);
          expect(tokens.length).toBeLessThanOrEqual(5);
          for (const t of tokens) expect(t).toMatch(/^\d$/);
        }
        expect(spoken.replace(/[^\d]/g, "")).toBe(national);
      }),
      { numRuns: 300 },
    );
  });

  it("maskNumber never shows more than the last 3 digits", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^\+?\d{4,15}$/), (n) => {
        const digits = n.replace(/\D/g, "");
        const masked = maskNumber(n);
        expect(masked).toHaveLength(digits.length);
        expect(masked.slice(-3)).toBe(digits.slice(-3));
        expect(masked.slice(0, -3)).toMatch(/^\*+$/);
      }),
    );
  });
});

/** Regression: "eins" is the German digit word; "ein"/"eine" in front of a number are articles. */
describe("German articles 'ein'/'eine' in filler text are not read as the digit 1", () => {
  it.each([
    ["Ich habe ein Handy, die Nummer ist 0151 1234 5678"],
    ["Das ist eine Handynummer: 0151 1234 5678"],
  ])("%j → 4915112345678", (input) => {
    expect(spokenToDialString(input)).toBe("015112345678");
    expect(parseCallerNumber(input, "DE")?.aiflow).toBe(MOBILE);
  });
});

/** Regression: "oh" before the number is an interjection; inside a run of digits it is zero. */
describe("a leading English interjection 'oh' is not read as the digit 0", () => {
  it("'Oh, my number is 212 555 0123' (home US) → 12125550123", () => {
    expect(parseCallerNumber("Oh, my number is 212 555 0123", "US")?.aiflow).toBe("12125550123");
  });

  it("'oh' inside the digits still means zero", () => {
    expect(parseCallerNumber("two one two five five five oh one two three", "US")?.aiflow).toBe("12125550123");
  });
});
