import { zodToJsonSchema } from "zod-to-json-schema";
import type { z } from "zod";
import type { ToolSpec } from "./chatModel.js";
import { FlowDefinitionError } from "../core/errors.js";

/**
 * Derive the JSON schema the model sees from a tool's zod schema. In strict mode every
 * property is required and optionals become nullable (OpenAI's strict function rules);
 * otherwise a plain JSON schema. `$schema` is dropped: some servers reject unknown keys.
 */
export function toolJsonSchema(parameters: z.ZodObject<z.ZodRawShape>, strict: boolean): Record<string, unknown> {
  const schema = zodToJsonSchema(parameters, { target: strict ? "openAi" : "jsonSchema7", $refStrategy: "none" }) as Record<string, unknown>;
  delete schema.$schema;
  if (schema.type !== "object" || typeof schema.properties !== "object") {
    // zod-to-json-schema returns an empty schema, silently, for schemas it cannot read (zod 4 objects).
    throw new FlowDefinitionError("tool parameters did not convert to a JSON object schema; use the zod 3 API");
  }
  if (strict) schema.additionalProperties = false;
  return schema;
}

export function toolSpec(name: string, description: string, parameters: z.ZodObject<z.ZodRawShape>, strict: boolean): ToolSpec {
  return { name, description, parameters: toolJsonSchema(parameters, strict), strict };
}

/** Strict mode sends `null` for optionals; zod's `.optional()` wants them absent. */
export function nullsToUndefined(args: unknown): unknown {
  if (args === null || typeof args !== "object" || Array.isArray(args)) return args;
  return Object.fromEntries(Object.entries(args as Record<string, unknown>).filter(([, v]) => v !== null));
}
