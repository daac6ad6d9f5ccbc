import { z } from "zod";

/**
 * The transfer_call tool's settings, brought by the agent that offers the tool (the reception
 * agent: `agents.reception.transfer`). The model picks a target by key; each target's description
 * tells it when. No targets: the tool answers that no transfer is possible.
 */
export const transferConfigSchema = z
  .object({
    targets: z
      .record(
        z.string().regex(/^[a-z][a-z0-9_]*$/, "target keys are lower_snake_case"),
        z
          .object({
            /** E.164 digits without +, as AI Flow's transfer action wants it. */
            number: z.string().regex(/^[1-9]\d{6,14}$/, "E.164 digits without + (e.g. 4921112345678)"),
            /** What the model reads to choose this target: who answers there and for what. */
            description: z.string().min(1),
            /** What the caller hears: "Ich verbinde Sie mit {name}." Without it, a line without a name. */
            name: z.string().min(1).optional(),
          })
          .strict(),
      )
      .default({}),
    /** Seconds the target rings before sipgate gives the call back (a new session_start). */
    timeoutSeconds: z.number().int().min(5).max(120).default(30),
    /** Caller ID name shown to the target; default business.name. */
    callerIdName: z.string().min(1).optional(),
  })
  .strict()
  .default({});

export type TransferConfig = z.infer<typeof transferConfigSchema>;
