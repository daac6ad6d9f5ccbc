import type { LedgerRecord } from "../src/ledger/ledger.js";
import type { ModelAnswer } from "./model.js";
import type { Scenario } from "./world.js";

/** A line as it reached the caller: delivered at `deliveredAt`, played from `start` to `end`, cut short at `cutAt` (the caller spoke over it). */
export interface HeardLine {
  kind: "speak";
  text: string;
  deliveredAt: number;
  start: number;
  end: number;
  cutAt?: number;
}

export type Heard = HeardLine | { kind: "send_sms"; number: string; deliveredAt: number } | { kind: "hangup" | "transfer"; deliveredAt: number };

/** What the caller (through sipgate) sent. */
export interface Said {
  at: number;
  type: string;
  text?: string;
  bargedIn?: boolean;
}

/** What a run leaves for the oracle: only what the caller said and heard, what the model answered and the ledger. */
export interface Transcript {
  scenario: Scenario;
  said: Said[];
  heard: Heard[];
  /** HTTP answers: when the event was sent and when its answer came. */
  answers: Array<{ event: string; sentAt: number; answeredAt: number }>;
  model: ModelAnswer[];
  ledger: LedgerRecord[];
  /** The virtual clock's zero as the service's clock reads it (epoch ms): ledger times less this are virtual times. */
  epoch: number;
  /** When an instance crashed (virtual ms): a fact of the simulated world, like a lost answer. */
  crashes: number[];
  /** A readable account of the call, for a failing seed. */
  trace: string[];
  /** Requests still unanswered at the end (a caller left waiting). */
  waiting: number;
  errors: string[];
  endedAt?: number;
}
