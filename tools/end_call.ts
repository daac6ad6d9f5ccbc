import { z } from "zod";
import { defineTool } from "../src/engine/define.js";

export const endCall = defineTool({
  name: "end_call",
  transitions: [],
  parameters: () => z.object({}),
  execute(ctx) {
    ctx.goodbye("goodbye");
    return ctx.note("call_ending");
  },
});
