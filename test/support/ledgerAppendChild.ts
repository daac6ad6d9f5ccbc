/**
 * Child process for test/ledger.chain.test.ts: a second writer of a ledger file in a process of
 * its own, as the CLI is. Opens the file ledger, prints "ready", waits for a line on stdin, then
 * appends `count` records (ids `<prefix>-<i>`) one after another, printing "first" after the
 * first, and prints "done".
 *
 * Usage: node --import tsx test/support/ledgerAppendChild.ts <ledger-file> <prefix> <count>
 */
import { FileLedger } from "../../src/ledger/fileLedger.js";

const [path, prefix, countArg] = process.argv.slice(2);
const count = Number(countArg);
if (!path || !prefix || !Number.isInteger(count)) {
  console.error("usage: ledgerAppendChild.ts <ledger-file> <prefix> <count>");
  process.exit(2);
}

const ledger = new FileLedger(path, { notice: (line) => console.error(line) });
await ledger.ready();
process.stdout.write("ready\n");
await new Promise<void>((go) => process.stdin.once("data", () => go()));
for (let i = 0; i < count; i++) {
  await ledger.append({ id: `${prefix}-${i}`, kind: "consent_asked", callId: `${prefix}-call`, at: new Date().toISOString() });
  if (i === 0) process.stdout.write("first\n");
}
await ledger.close();
process.stdout.write("done\n");
process.exit(0);
