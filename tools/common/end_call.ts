import { z } from "zod";
import { defineTool } from "../../src/engine/define.js";
import type { FlowTypes } from "../../src/engine/define.js";

/** Any flow may offer it: the goodbye line, then hangup once it has been played. */
export const endCall = defineTool<FlowTypes>()({
  name: "end_call",
  transitions: [],
  parameters: () => z.object({}),
  execute(ctx) {
    ctx.goodbye("goodbye");
    return ctx.note("call_ending");
  },
});
