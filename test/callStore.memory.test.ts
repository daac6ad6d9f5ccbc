import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryCallStore, jsonCopy } from "../src/store/memoryCallStore.js";
import { callStoreContract } from "./callStore.contract.js";

let n = 0;
callStoreContract("memory", async () => {
  const store = new MemoryCallStore();
  return { store, id: () => `mem-${++n}`, close: () => store.close() };
});

/** The memory store copies state without the text in between; the copy must be exactly what a JSON round trip gives (what Redis keeps). */
describe("jsonCopy: a JSON round trip without the text", () => {
  const roundTrip = (v: unknown) => {
    const text = JSON.stringify(v);
    return text === undefined ? undefined : JSON.parse(text);
  };

  it("equals JSON.parse(JSON.stringify(v)) for any value JSON can write", () => {
    fc.assert(
      fc.property(
        fc.anything({ withBoxedValues: true, withMap: true, withSet: true, withNullPrototype: true, withDate: true, withTypedArray: true, withSparseArray: true, withObjectString: true, maxDepth: 4 }),
        (v) => {
          expect(jsonCopy(v)).toStrictEqual(roundTrip(v));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("the edge cases by name: -0, NaN, Infinity, undefined and functions in objects and arrays, toJSON, an own __proto__ key, class instances", () => {
    class Point {
      constructor(
        readonly x: number,
        readonly y = undefined,
      ) {}
    }
    const own = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}');
    const cases: unknown[] = [
      -0,
      [-0, Number.NaN, Number.POSITIVE_INFINITY],
      { a: undefined, b: () => 1, c: Symbol("s"), d: [undefined, () => 1, Symbol("t")] },
      { at: new Date(86_400_000), custom: { toJSON: (key: string) => `custom:${key}` } },
      own,
      new Point(1),
      [new Map([["k", 1]]), new Set([1]), new Uint8Array([1, 2])],
      Object.assign(Object.create(null), { x: 1 }),
      undefined,
      () => 1,
    ];
    for (const v of cases) expect(jsonCopy(v)).toStrictEqual(roundTrip(v));
    const copied = jsonCopy(own) as Record<string, unknown>;
    expect(Object.getPrototypeOf(copied)).toBe(Object.prototype);
    expect(Object.keys(copied)).toEqual(["__proto__", "a"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("throws where JSON.stringify throws: a BigInt, a cycle", () => {
    expect(() => jsonCopy({ n: 1n })).toThrow(TypeError);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => jsonCopy(cyclic)).toThrow();
  });
});
