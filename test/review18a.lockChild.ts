/**
 * Review 18a helper: a slow maintenance rewrite (what purgeFile does: read, rewrite, rename over),
 * holding the ledger's lock, run in its own pid namespace (a `docker compose run … npm run ledger`
 * next to the service's container). argv: ledger path, hold ms.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import { lockPathOf, withFileLock } from "../src/ledger/fileLock.js";

const [path, holdMs] = process.argv.slice(2) as [string, string];
await withFileLock(lockPathOf(path), async () => {
  const text = await readFile(path, "utf8");
  process.stdout.write(`locked ${process.pid}\n`);
  await new Promise((r) => setTimeout(r, Number(holdMs)));
  await writeFile(`${path}.tmp`, text, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
});
process.stdout.write("released\n");
