/**
 * Runs work for one key strictly one at a time, in arrival order; different keys run in
 * parallel. A failed job does not block the next one. Both session stores queue a call's
 * events with it (the Redis store then also takes a lock shared by every instance).
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const job = previous.then(work, work);
    const tail = job.catch(() => undefined);
    this.tails.set(key, tail);
    return job.finally(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
  }
}
