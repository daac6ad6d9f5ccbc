import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { LedgerRecord } from "../src/ledger/ledger.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { readLedgerFile } from "../src/ledger/readLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { makePostgresDir, postgresBin, startPostgres } from "../test/support/postgresServer.js";
import { percentile } from "./deadline.js";

/**
 * Bench (g), the time one consent-ledger append takes (the gate waits for it before a send_sms
 * can leave, so it spends the answer deadline): PostgreSQL with four instances appending at once
 * (four processes, each with its own pool, as four service instances would; every append locks
 * the chain-head row, so they take turns), next to one instance alone, measured in the same run;
 * and the file ledger with one writer (lock file, write, fsync). Each writer appends one record
 * after another, as a turn does. Afterwards the chain each run left is verified.
 */

export interface AppendStats {
  n: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface LedgerAppendResult {
  appendsPerWriter: number;
  postgres: {
    server: string;
    alone: AppendStats;
    fourAtOnce: AppendStats;
    /** Four at once over alone. */
    ratioP50: number;
    ratioP99: number;
    /** Records the four left, and whether their chain verified (positions 1..N, links, no id twice). */
    chain: { records: number; ok: boolean };
  };
  file: { oneWriter: AppendStats; chain: { records: number; ok: boolean } };
}

const round = (x: number) => Math.round(x * 10) / 10;
const ratio = (x: number, base: number) => Math.round((x / base) * 100) / 100;
const stats = (xs: number[]): AppendStats => ({ n: xs.length, p50Ms: round(percentile(xs, 0.5)), p99Ms: round(percentile(xs, 0.99)), maxMs: round(percentile(xs, 1)) });

/** BENCH_DATABASE_URL or TEST_DATABASE_URL if set, else a private cluster with PostgreSQL's durable defaults. */
async function benchPostgres(): Promise<{ url: string; label: string; stop: () => Promise<void> }> {
  const given = process.env.BENCH_DATABASE_URL || process.env.TEST_DATABASE_URL;
  const settings = async (url: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const fsync = (await c.query<{ fsync: string }>("SHOW fsync")).rows[0]!.fsync;
      return `fsync ${fsync}, synchronous_commit on (the ledger sets it)`;
    } finally {
      await c.end();
    }
  };
  if (given) return { url: given, label: `the PostgreSQL at BENCH_DATABASE_URL / TEST_DATABASE_URL (${await settings(given)})`, stop: async () => undefined };
  const bin = postgresBin();
  if (!bin) throw new Error("bench (g) needs PostgreSQL (Debian: apt-get install postgresql), or BENCH_DATABASE_URL naming a server it may use");
  const dir = mkdtempSync(join(tmpdir(), "bench-postgres-"));
  chmodSync(dir, 0o711); // the postgres user must reach its folder inside
  const home = join(dir, "postgres");
  makePostgresDir(home);
  const server = await startPostgres(bin, home, { durable: true });
  return {
    url: server.url,
    label: `a private PostgreSQL with its durable defaults (${await settings(server.url)})`,
    stop: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface Writer {
  proc: ChildProcess;
  out: string;
  err: string;
  /** Resolves when the output holds `word`; rejects if the process exits first. */
  saw(word: string): Promise<void>;
}

function startWriter(args: string[]): Writer {
  const proc = spawn(process.execPath, ["--import", "tsx", "bench/ledgerWriter.ts", ...args], { stdio: ["pipe", "pipe", "pipe"] });
  const waiting: Array<() => void> = [];
  const w: Writer = {
    proc,
    out: "",
    err: "",
    saw: (word) =>
      new Promise((resolve, reject) => {
        const check = () => (w.out.includes(word) ? resolve() : void waiting.push(check));
        proc.once("exit", (code) => setImmediate(() => (w.out.includes(word) ? resolve() : reject(new Error(`ledger writer exited ${code} before "${word}": ${w.err.trim()}`)))));
        check();
      }),
  };
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
    w.out += d;
    for (const f of waiting.splice(0)) f();
  });
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => (w.err += d));
  return w;
}

async function stopWriter(w: Writer): Promise<void> {
  if (w.proc.exitCode !== null || w.proc.signalCode !== null) return;
  const exited = new Promise((r) => w.proc.once("exit", r));
  w.proc.kill("SIGKILL");
  await exited;
}

/** Starts the writers, lets them all go at the same moment, returns every append's time. */
async function runWriters(argsOf: (i: number) => string[], writers: number): Promise<number[]> {
  const started = Array.from({ length: writers }, (_, i) => startWriter(argsOf(i)));
  try {
    await Promise.all(started.map((w) => w.saw("ready")));
    for (const w of started) w.proc.stdin!.write("go\n");
    await Promise.all(started.map((w) => w.saw("}\n")));
    return started.flatMap((w) => (JSON.parse(w.out.slice(w.out.indexOf("{"))) as { times: number[] }).times);
  } finally {
    await Promise.all(started.map(stopWriter));
  }
}

function chainOf(records: LedgerRecord[], expected: number): { records: number; ok: boolean } {
  const report = verifyRecords(records);
  return { records: records.length, ok: report.ok && records.length === expected && records.every((r, i) => r.seq === i + 1) };
}

export async function ledgerAppendScenario(opts: { appends: number }): Promise<LedgerAppendResult> {
  const { appends } = opts;
  const server = await benchPostgres();
  const stamp = `${process.pid}_${Date.now().toString(36)}`;
  const tables = [`bench_ledger_alone_${stamp}`, `bench_ledger_four_${stamp}`];
  const dir = mkdtempSync(join(tmpdir(), "bench-ledger-"));
  try {
    const alone = await runWriters(() => ["postgres", server.url, tables[0]!, "alone", String(appends)], 1);
    const four = await runWriters((i) => ["postgres", server.url, tables[1]!, `instance-${i}`, String(appends)], 4);
    const reader = new PostgresLedger({ connectionString: server.url, table: tables[1] });
    let pgChain;
    try {
      // Each writer also appended 5 records to warm up.
      pgChain = chainOf(await reader.query(), 4 * (appends + 5));
    } finally {
      await reader.close();
    }
    const path = join(dir, "ledger.jsonl");
    const file = await runWriters(() => ["file", path, "-", "file", String(appends)], 1);
    const fileChain = chainOf((await readLedgerFile(path)).records, appends + 5);
    const a = stats(alone);
    const f = stats(four);
    return {
      appendsPerWriter: appends,
      postgres: { server: server.label, alone: a, fourAtOnce: f, ratioP50: ratio(f.p50Ms, a.p50Ms), ratioP99: ratio(f.p99Ms, a.p99Ms), chain: pgChain },
      file: { oneWriter: stats(file), chain: fileChain },
    };
  } finally {
    const c = new pg.Client({ connectionString: server.url });
    await c
      .connect()
      .then(() => c.query(tables.map((t) => `DROP TABLE IF EXISTS "${t}", "${t}_head"`).join("; ")))
      .catch(() => undefined)
      .finally(() => c.end().catch(() => undefined));
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
