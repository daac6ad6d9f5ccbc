// The outbox module's public API: what the callback agent wires together.
export { OutboxUnavailableError, DEFAULT_RETENTION_MS, type Claim, type DeadLetter, type Outbox, type OutboxOptions, type PutOptions, type PutResult, type SettleResult } from "./outbox.js";
export { MemoryOutbox } from "./memoryOutbox.js";
export { RedisOutbox, type RedisOutboxOptions } from "./redisOutbox.js";
export { IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER, SIGNATURE_TIMESTAMP_HEADER, signBody, verifySignature, type VerifyOptions } from "./signing.js";
export { backoffDelay, retryAfterMs, type BackoffOptions } from "./backoff.js";
export { OutboxPoster, errorClass, type CycleReport, type OutboxPosterOptions } from "./webhookPoster.js";
