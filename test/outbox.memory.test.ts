import { MemoryOutbox } from "../src/outbox/memoryOutbox.js";
import { outboxContract } from "./outbox.contract.js";

// One instance: the "other" instance is the same outbox.
outboxContract("memory", async ({ now, ...opts }) => {
  const outbox = new MemoryOutbox(now, opts);
  return { outbox, other: outbox, close: () => outbox.close() };
});
