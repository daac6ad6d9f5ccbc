import type { CallStore } from "../../store/callStore.js";

/**
 * What became of a commit that threw (the store failed on the answer, or its reply was lost): the
 * worker must not record as not sent what the store in fact committed, nor send what it did not.
 */

/** Whether an earlier commit that threw ran after all: its request id, sent again, gets the reply it got (a commit that never ran is refused: the queue moved on). */
export async function ranAfterAll(store: CallStore, callId: string, token: string, unsaved: { seq: number; requestId: string }, ttlSeconds: number): Promise<boolean> {
  try {
    // Asked as it was sent (commitAndNext): a request id is answered with its first reply.
    return (await store.commitAndNext(callId, token, { seq: unsaved.seq, state: undefined, ttlSeconds, droppable: false }, unsaved.requestId)).result === "committed";
  } catch {
    return false;
  }
}

/** Whether a commit that threw was written all the same: if the store cannot say, it was not. */
export async function committedAnyway(store: CallStore, callId: string, seq: number): Promise<boolean> {
  try {
    return (await store.progress(callId)).processed >= seq;
  } catch {
    return false;
  }
}
