import { describe, expect, it } from "vitest";
import { parseCallerNumber } from "../src/phone/number.js";
import { spokenToDialString } from "../src/phone/spoken.js";

/** Numbers as people say them (issue 11): pairs, hundreds, country codes as words, corrections. */

describe("German numbers as people say them", () => {
  it.each([
    // pairs after the prefix
    ["null eins fünf eins, zwölf, vierunddreißig, sechsundfünfzig, achtundsiebzig", "015112345678"],
    ["null eins fuenf eins zwoelf vierunddreissig sechsundfuenfzig achtundsiebzig", "015112345678"],
    ["0151 zwölf vierunddreißig sechsundfünfzig achtundsiebzig", "015112345678"],
    ["null eins sieben null, elf, dreizehn, neunzehn, zehn", "017011131910"],
    ["zwanzig dreißig dreissig vierzig fünfzig fuenfzig sechzig siebzig achtzig neunzig", "20303040505060708090"],
    ["einundzwanzig zweiundzwanzig zwoundzwanzig neunundneunzig", "21222299"],
    ["sechzehn siebzehn achtzehn vierzehn fünfzehn", "1617181415"],
    // the recognizer may split a compound
    ["vier und dreißig", "34"],
    ["ein und zwanzig", "21"],
    // hundreds
    ["null hundertsechsundsiebzig zwölf vierunddreißig sechsundfünfzig", "0176123456"],
    ["hundert", "100"],
    ["einhundert", "100"],
    ["einhundertzwölf", "112"],
    ["hundertelf", "111"],
    ["hundertundzwölf", "112"],
    ["hundertfünf", "105"],
    ["zweihundert", "200"],
    ["zwei hundert", "200"],
    ["neunhundertneunundneunzig", "999"],
    // a separate word after "hundert" stays its own group: 0800 12 …
    ["null achthundert zwölf", "080012"],
    // country code as a number word
    ["plus neunundvierzig eins fünf eins zwölf vierunddreißig sechsundfünfzig achtundsiebzig", "+4915112345678"],
    ["null null neunundvierzig hundertfünfzig", "+49150"],
    ["doppelnull neunundvierzig", "+49"],
    ["doppel null neunundvierzig", "+49"],
    ["zwo zwo", "22"],
    ["doppelfünf", "55"],
    // articles are not digits, compounds with "ein" are
    ["ich habe eine Handynummer, null eins fünf eins", "0151"],
    ["ein Handy: einundzwanzig", "21"],
  ])("%j → %j", (input, expected) => {
    expect(spokenToDialString(input)).toBe(expected);
  });
});

describe("English numbers as people say them", () => {
  it.each([
    ["plus forty nine one five one", "+49151"],
    ["plus forty-nine one five one", "+49151"],
    ["oh one five one twelve thirty four fifty six seventy eight", "015112345678"],
    ["oh seven nine double five", "07955"],
    ["two oh oh one five five five oh oh one two", "20015550012"],
    ["Oh, oh, my number is two oh one", "201"],
    ["triple eight", "888"],
    ["ten eleven thirteen nineteen", "10111319"],
    ["twenty thirty ninety", "203090"],
    ["one hundred", "100"],
    ["hundred", "100"],
    ["one hundred twelve", "112"],
    ["one hundred and five", "105"],
    ["two hundred forty one", "241"],
    // 1-800-555-1212: a single digit after "hundred" stays its own digit
    ["one eight hundred five five five one two one two", "18005551212"],
    ["one hundred and", "100"],
  ])("%j → %j", (input, expected) => {
    expect(spokenToDialString(input)).toBe(expected);
  });
});

describe("a correction within one utterance", () => {
  it.each([
    // the digits after the correction word replace as many digits just before it: the group just said
    ["0151 1234 56, nein, 78", "0151123478"],
    ["null eins fünf eins eins zwei drei vier fünf sechs, nein, sieben acht", "0151123478"],
    ["null eins fünf eins zwölf vierunddreißig sechsundfünfzig, nee, achtundsiebzig", "0151123478"],
    ["0151 1234 56, ich meine 78", "0151123478"],
    ["0151 1234 56, Korrektur: 78", "0151123478"],
    ["0151 1234, nicht 56, sondern 78", "0151123478"],
    ["0151 1234 56, no, 78", "0151123478"],
    ["0151 1234 56, I mean 78", "0151123478"],
    ["0151 1234 56, sorry, 78", "0151123478"],
    ["0151 1234 56, correction, 78", "0151123478"],
    // two corrections in a row, and one correction word right after another
    ["0151 1234 56, nein, 77, nein, 78", "0151123478"],
    ["0151 1234 56, nein, ich meine 78", "0151123478"],
    // a correction longer than what was said replaces all of it
    ["56, nein, 5678", "5678"],
    // a fresh number (starts with 0 or + and is long enough) replaces the whole number
    ["0151 123, nein, 0170 1234567", "01701234567"],
    ["0151 1234 5678, nein, 0170 1234567", "01701234567"],
    ["0151 1234 56, nein, plus 43 664 1234567", "+436641234567"],
    ["null null vier neun eins fünf eins, nein, null null vier drei sechs sechs vier eins zwei drei", "+43664123"],
    // a short correction starting with 0 is still the end of the number
    ["0151 1234 56, nein, 05", "0151123405"],
    // nothing to correct: a correction word before any digit, or no digits after it
    ["Nein, meine Nummer ist 0151 1234 5678", "015112345678"],
    ["No, my number is oh one five one", "0151"],
    ["plus, nein, null eins fünf eins", "0151"],
    ["0151 1234 5678, nein, das ist die richtige", "015112345678"],
  ])("%j → %j", (input, expected) => {
    expect(spokenToDialString(input)).toBe(expected);
  });
});

describe("numbers said in pairs parse to valid numbers", () => {
  it.each([
    ["null eins fünf eins, zwölf, vierunddreißig, sechsundfünfzig, achtundsiebzig", "4915112345678"],
    ["null hundertsechsundsiebzig zwölf vierunddreißig sechsundfünfzig achtundsiebzig", "4917612345678"],
    ["plus neunundvierzig hunderteinundfünfzig zwölf vierunddreißig sechsundfünfzig achtundsiebzig", "4915112345678"],
    ["plus forty nine one fifty one twelve thirty four fifty six seventy eight", "4915112345678"],
    ["0151 1234 5600, nein, 78", "4915112345678"],
  ])("%j → %s, a valid German mobile", (input, aiflow) => {
    expect(parseCallerNumber(input, "DE")).toMatchObject({ aiflow, valid: true, type: "MOBILE" });
  });
});
