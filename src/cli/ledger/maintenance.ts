import { parseArgs } from "node:util";
import { eraseFromFile, purgeFile } from "../../ledger/fileMaintenance.js";
import { readLedgerFile } from "../../ledger/readLedger.js";
import { ChainVerifier, type VerifyProblem, type VerifyReport } from "../../ledger/verify.js";
import { DAY_MS, hasherOf, loadConfig, numberArg, postgres, UsageError, warn } from "./common.js";

/** `verify`, `purge` and `erase`: the subcommands that check or change the chain as a whole. */

/** `--head SEQ:DIGEST`: a head noted from an earlier verify. */
function headArg(text: string): { seq: number; digest: string; source: string } {
  const m = /^(\d+):([0-9a-f]{64})$/.exec(text.trim());
  if (!m) throw new UsageError(`--head "${text}" must be POSITION:DIGEST as verify prints it (e.g. 42:9f86d0…, 64 hex digits)`);
  return { seq: Number(m[1]), digest: m[2]!, source: `--head ${m[1]}` };
}

function noPositionals(command: string, positionals: string[]): void {
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" for ${command}`);
}

const describe = (p: VerifyProblem) => `record ${p.seq}${p.id ? ` (id ${p.id}` : ""}${p.callId ? `${p.id ? ", " : " ("}call ${p.callId})` : p.id ? ")" : ""}: ${p.problem}`;

function printReport(report: VerifyReport, where: string, strict: boolean): number {
  const out = (line: string) => console.log(line);
  if (!report.ok) {
    console.error(`ledger: verify failed: ${describe(report.firstProblem!)}`);
    for (const p of report.problems.slice(1, 20)) console.error(`ledger:   also ${describe(p)}`);
    if (report.problems.length > 20) console.error(`ledger:   … and ${report.problems.length - 20} more`);
  } else {
    out(`ledger: ${report.records} record(s) in ${where}: the chain is intact, every approval follows a consent for that number`);
  }
  if (report.legacy.records || report.legacy.sha256Numbers) {
    out(`  legacy: ${report.legacy.records} record(s) from before the chain; ${report.legacy.sha256Numbers} number(s) hashed with plain SHA-256 (reversible by trying every number: rotate to keyed hashing)`);
  }
  if (report.anchor) out(`  purged: the chain starts after position ${report.anchor.seq} (anchor digest ${report.anchor.digest.slice(0, 16)}…)`);
  if (report.erased) out(`  erased: ${report.erased} record(s) tombstoned on request (digests kept)`);
  for (const p of report.outcomeUnknown) out(`  outcome_unknown: ${describe(p)}`);
  if (report.pending.length) out(`  pending: ${report.pending.length} approval(s) in calls that may still run have no outcome yet`);
  if (report.head) out(`  head: ${report.head.seq}:${report.head.digest} (note it elsewhere: verify --head ${report.head.seq}:${report.head.digest} later shows whether anything up to it changed)`);
  if (!report.ok) return 1;
  return strict && report.outcomeUnknown.length ? 1 : 0;
}

export async function runVerify(args: string[], env: NodeJS.ProcessEnv, now: Date): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { config: { type: "string" }, strict: { type: "boolean", default: false }, head: { type: "string", multiple: true } },
    strict: true,
    allowPositionals: true,
  });
  noPositionals("verify", positionals);
  const config = loadConfig(values.config, env);
  const heads = (values.head ?? []).map(headArg);
  const db = postgres(config, env, false);
  let where: string;
  let verifier: ChainVerifier;
  if (db) {
    where = `PostgreSQL table ${db.table}`;
    try {
      // The head row is read first: appends while the records are read make the chain longer, and the
      // chain must still hold the record the row named, with that digest (a change or a cut at the end).
      const head = await db.head().catch(() => undefined);
      const v = new ChainVerifier({ now, heads: [...heads, ...(head && head.seq > 0 ? [{ ...head, source: `the head row ${db.table}_head` }] : [])] });
      verifier = v;
      await db.scan((r) => v.push(r));
    } finally {
      await db.close();
    }
  } else {
    const path = config.ledger.path;
    where = `file ${path}`;
    verifier = new ChainVerifier({ now, heads });
    const contents = await readLedgerFile(path);
    for (const r of contents.records) verifier.push(r);
    if (contents.tornTail) console.log(`  torn: line ${contents.tornTail.line} is an incomplete last line (a crash while writing; its append never completed)`);
    // A line that is no record cannot have been a chained record if the links verify across it (a crash remnant).
    if (contents.problems.length) {
      warn(path, contents.problems);
      console.log(`  not records: ${contents.problems.length} line(s); the chain is checked across them`);
    }
  }
  return printReport(verifier.finish(), where, values.strict!);
}

export async function runPurge(args: string[], env: NodeJS.ProcessEnv, now: Date): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: "string" } }, strict: true, allowPositionals: true });
  noPositionals("purge", positionals);
  const config = loadConfig(values.config, env);
  const days = config.ledger.retentionDays;
  const before = new Date(now.getTime() - days * DAY_MS);
  let result: { deleted: number; through?: number };
  const db = postgres(config, env, false);
  if (db) {
    try {
      result = await db.purge(before, now);
    } finally {
      await db.close();
    }
  } else {
    const r = await purgeFile(config.ledger.path, before, now);
    warn(config.ledger.path, r.problems);
    result = r;
  }
  const anchor = result.through === undefined ? "" : `; an anchor stands for position ${result.through} and a purge record closes the chain`;
  console.log(`${result.deleted} record(s) deleted (the chain's prefix older than ${before.toISOString()}, ledger.retentionDays ${days})${anchor}`);
  return 0;
}

export async function runErase(args: string[], env: NodeJS.ProcessEnv, now: Date): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: "string" }, number: { type: "string" } }, strict: true, allowPositionals: true });
  noPositionals("erase", positionals);
  const config = loadConfig(values.config, env);
  const number = numberArg("--number", values.number, config);
  const hasher = hasherOf(config, env);
  let result: { erased: number; erasureId?: string; unknownKeys?: string[] };
  const db = postgres(config, env);
  if (db) {
    try {
      result = await db.erase(number, now);
    } finally {
      await db.close();
    }
  } else {
    result = await eraseFromFile(config.ledger.path, number, hasher, now);
  }
  if (result.unknownKeys?.length) {
    console.error(`ledger: records hashed with key(s) ${result.unknownKeys.join(", ")} cannot be matched to a number: LEDGER_HASH_KEY / LEDGER_HASH_KEYS_OLD do not list them. Add them to LEDGER_HASH_KEYS_OLD and run erase again; until then the erasure is not complete.`);
  }
  if (!result.erased) console.log(result.unknownKeys?.length ? "no record hashed with a configured key is about that number" : "no record is about that number: nothing erased");
  else console.log(`${result.erased} record(s) about that number erased (personal fields removed, digests kept); erasure record ${result.erasureId}. The do-not-text list keeps the number if it is on it.`);
  return result.unknownKeys?.length ? 1 : 0;
}
