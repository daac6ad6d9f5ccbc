import type { ToolSpec } from "./chatModel.js";

/**
 * A tool as a person reads it, written from the JSON schema the model gets (ToolSpec, derived
 * from the tool's zod schema by toolSchema.ts): never a second description that could drift.
 */

type JsonSchema = Record<string, unknown>;

/** One argument of a tool, as far as a person needs it to type a call. */
export interface ParameterText {
  name: string;
  /** "string, 1-200 characters", "one of \"a\", \"b\"", "true or false", … */
  type: string;
  required: boolean;
  description?: string;
  /** The JSON types the schema admits ("string", "boolean", …), to read a bare typed value. */
  jsonTypes: string[];
}

function jsonTypes(schema: JsonSchema): string[] {
  if (Array.isArray(schema.anyOf)) return (schema.anyOf as JsonSchema[]).flatMap(jsonTypes);
  if (Array.isArray(schema.type)) return schema.type as string[];
  if (typeof schema.type === "string") return [schema.type];
  if (Array.isArray(schema.enum)) return [...new Set((schema.enum as unknown[]).map((v) => (v === null ? "null" : typeof v)))];
  return [];
}

function range(min: unknown, max: unknown, unit: string): string {
  const lo = typeof min === "number" ? min : undefined;
  const hi = typeof max === "number" ? max : undefined;
  if (lo === undefined && hi === undefined) return "";
  if (lo !== undefined && hi !== undefined) return lo === hi ? `, ${lo}${unit}` : `, ${lo}-${hi}${unit}`;
  return lo !== undefined ? `, at least ${lo}${unit}` : `, at most ${hi}${unit}`;
}

/** The kind of value a schema admits, in words; `null` (strict mode's "absent") is left out. */
function typeText(schema: JsonSchema): string {
  if (Array.isArray(schema.enum)) return `one of ${(schema.enum as unknown[]).filter((v) => v !== null).map((v) => JSON.stringify(v)).join(", ")}`;
  if (Array.isArray(schema.anyOf)) {
    const parts = (schema.anyOf as JsonSchema[]).filter((s) => s.type !== "null").map(typeText);
    return parts.join(" or ") || "null";
  }
  const types = jsonTypes(schema).filter((t) => t !== "null");
  if (types.length !== 1) return types.join(" or ") || "any JSON value";
  switch (types[0]) {
    case "string":
      return `string${range(schema.minLength, schema.maxLength, " characters")}`;
    case "number":
    case "integer":
      return `${types[0]}${range(schema.minimum, schema.maximum, "")}`;
    case "boolean":
      return "true or false";
    case "array":
      return `list of ${schema.items && typeof schema.items === "object" ? typeText(schema.items as JsonSchema) : "values"}${range(schema.minItems, schema.maxItems, " items")}`;
    case "object":
      return "object (JSON)";
    default:
      return types[0]!;
  }
}

/** The tool's arguments; in strict mode an optional one is required but nullable, so it counts as optional. */
export function parameterTexts(spec: ToolSpec): ParameterText[] {
  const properties = (spec.parameters.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((spec.parameters.required ?? []) as string[]);
  return Object.entries(properties).map(([name, schema]) => {
    const types = jsonTypes(schema);
    return {
      name,
      type: typeText(schema),
      required: required.has(name) && !types.includes("null"),
      description: typeof schema.description === "string" ? schema.description : undefined,
      jsonTypes: types,
    };
  });
}

/** `record_consent {consented: true or false}` style signature line. */
export function toolSignature(spec: ToolSpec): string {
  const params = parameterTexts(spec);
  if (params.length === 0) return `${spec.name} (no arguments)`;
  return `${spec.name} {${params.map((p) => `${p.name}${p.required ? "" : "?"}: ${p.type}`).join("; ")}}`;
}

/** The tool for a person: signature, the description the model reads, and each argument's. */
export function toolText(spec: ToolSpec): string[] {
  const lines = [toolSignature(spec)];
  for (const l of spec.description.trim().split("\n")) lines.push(`  ${l}`);
  for (const p of parameterTexts(spec)) lines.push(`  - ${p.name}${p.required ? "" : " (optional)"}: ${p.description ?? p.type}`);
  return lines;
}
