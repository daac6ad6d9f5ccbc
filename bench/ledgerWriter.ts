/**
 * One writer of the consent ledger for bench (g), in a process of its own as a service instance
 * is: opens the ledger (PostgreSQL with a pool of its own, or the file), appends a few records to
 * warm up, prints "ready", waits for a line on stdin, then appends `count` records one after
 * another, each awaited as the gate awaits its evidence, and prints each append's time (ms) as JSON.
 *
 * Usage: node --import tsx bench/ledgerWriter.ts postgres <url> <table> <prefix> <count>
 *        node --import tsx bench/ledgerWriter.ts file <path> - <prefix> <count>
 */
import { performance } from "node:perf_hooks";
import { FileLedger } from "../src/ledger/fileLedger.js";
import type { ConsentLedger, LedgerRecordInput } from "../src/ledger/ledger.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";

const WARM_UP = 5;
const [kind, target, table, prefix, countArg] = process.argv.slice(2);
const count = Number(countArg);
if ((kind !== "postgres" && kind !== "file") || !target || !table || !prefix || !Number.isInteger(count)) {
  console.error("usage: ledgerWriter.ts postgres <url> <table> <prefix> <count> | file <path> - <prefix> <count>");
  process.exit(2);
}

const ledger: ConsentLedger = kind === "postgres" ? new PostgresLedger({ connectionString: target, table }) : new FileLedger(target, { notice: (line) => console.error(line) });
await ledger.ready();

/** A consent question as the SMS task records it: about the size of a real one. */
const record = (i: number): LedgerRecordInput => ({
  id: `${prefix}:${i}`,
  kind: "consent_asked",
  callId: `${prefix}-call-${Math.floor(i / 4)}`,
  at: new Date().toISOString(),
  number: "4915112345678",
  question: "Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 5 1 1, 2 3 4, 5 6, 7 8 schicken?",
});

for (let i = 0; i < WARM_UP; i++) await ledger.append(record(-1 - i));
process.stdout.write("ready\n");
await new Promise<void>((go) => process.stdin.once("data", () => go()));
const times: number[] = [];
for (let i = 0; i < count; i++) {
  const t0 = performance.now();
  await ledger.append(record(i));
  times.push(performance.now() - t0);
}
await ledger.close();
process.stdout.write(JSON.stringify({ times }) + "\n");
process.exit(0);
