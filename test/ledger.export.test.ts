import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { digestOf, GENESIS } from "../src/ledger/chain.js";
import type { LedgerRecord, LedgerRecordInput } from "../src/ledger/ledger.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { purgeFile } from "../src/ledger/fileMaintenance.js";
import { readLedgerFile } from "../src/ledger/readLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { TEST_DATABASE_URL, dropTable, requirePostgres, uniqueTable } from "./support/postgres.js";
import { ledgerCli } from "./support/ledgerCli.js";

const DAY = 86_400_000;


const cli = ledgerCli;

/** A YAML copy of config/agent.yaml whose ledger lives in `dir`. */
function configIn(dir: string, ledger: Record<string, unknown> = {}): { configPath: string; ledgerPath: string } {
  const raw = parseYaml(readFileSync("config/agent.yaml", "utf8")) as Record<string, unknown>;
  const ledgerPath = join(dir, "evidence", "consent-ledger.jsonl");
  raw.ledger = { ...(raw.ledger as object), path: ledgerPath, ...ledger };
  const configPath = join(dir, "agent.yaml");
  writeFileSync(configPath, stringifyYaml(raw));
  return { configPath, ledgerPath };
}

/** An RFC 4180 reader written independently of the exporter. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") row.push(field), (field = "");
    else if (c === "\r" && text[i + 1] === "\n") row.push(field), rows.push(row), (row = []), (field = ""), i++;
    else field += c;
  }
  expect(field === "" && row.length === 0, "CSV ends with CRLF").toBe(true);
  return rows;
}

const HEADER = ["seq", "kind", "callId", "at", "number", "question", "reply", "outcome", "model", "decidedBy", "rule", "message", "consentAskedAt", "consentAnsweredAt", "detail"];
const QUESTION = "Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 5 1 1, 2 3 4, 5 6, 7 8 schicken?";

/** Records as a ledger writes them: positions 1.., each linked to the digest of the one before. */
function chained(inputs: LedgerRecordInput[]): LedgerRecord[] {
  const out: LedgerRecord[] = [];
  for (const input of inputs) {
    const last = out.at(-1);
    out.push({ seq: out.length + 1, ...input, prev: last ? digestOf(last) : GENESIS });
  }
  return out;
}

const records: LedgerRecord[] = chained([
  { id: "old:t1:consent_asked:0", kind: "consent_asked", callId: "old", at: "2025-12-31T23:59:59.999Z", number: "4915112345678", question: QUESTION },
  { id: "c1:t1:consent_asked:0", kind: "consent_asked", callId: "c1", at: "2026-01-01T00:00:00.000Z", number: "4915112345678", question: QUESTION },
  {
    id: "c1:t2:sms_sent:0",
    kind: "sms_sent",
    callId: "c1",
    at: "2026-06-15T12:00:00.000Z",
    number: "4915112345678",
    question: QUESTION,
    reply: 'Ja, "gerne",\nbitte an die Nummer',
    consentAskedAt: "2026-06-15T11:59:58.000Z",
    consentAnsweredAt: "2026-06-15T12:00:00.000Z",
    message: "Praxis Dr. Muster: Öffnungszeiten: Mo-Fr 8-12 Uhr, Di und Do auch 15-18 Uhr.",
    outcome: "sent",
    model: "gpt-4o-mini",
  },
  { id: "c1:t3:sms_failed:0", kind: "sms_failed", callId: "c1", at: "2026-12-31T23:59:59.999Z", number: "4915112345678", outcome: "unknown", detail: "carrier said\r\nno" },
  { id: "new:t1:consent_declined:0", kind: "consent_declined", callId: "new", at: "2027-01-01T00:00:00.000Z", reply: "Nein" },
]);
const in2026 = records.slice(1, 4);

function csvRowsOf(rs: LedgerRecord[]): string[][] {
  return rs.map((r) => HEADER.map((h) => (r[h as keyof LedgerRecord] === undefined ? "" : String(r[h as keyof LedgerRecord]))));
}

describe("npm run ledger -- export (file ledger)", () => {
  const dir = mkdtempSync(join(tmpdir(), "ledger-export-"));
  const { configPath, ledgerPath } = configIn(dir);

  beforeAll(() => {
    const lines = records.map((r) => JSON.stringify(r)).join("\n") + "\n";
    // A crash mid-write left a torn last line: skipped, not an error.
    writeFileSync(ledgerPathEnsured(ledgerPath), lines + '{"seq":6,"kind":"sms_sent","callId":"torn","at":"2026-0');
  });

  it("CSV: header row, RFC 4180 quoting, CRLF, from and to inclusive whole days (UTC)", async () => {
    const r = await cli(["export", "--from", "2026-01-01", "--to", "2026-12-31", "--config", configPath]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/line 6: incomplete last line/);
    const rows = parseCsv(r.stdout);
    expect(rows[0]).toEqual(HEADER);
    expect(rows.slice(1)).toEqual(csvRowsOf(in2026));
    // Quoting as RFC 4180 writes it: only fields that need it, quotes doubled.
    expect(r.stdout).toContain(`,"${QUESTION}",`);
    expect(r.stdout).toContain(',"Ja, ""gerne"",\nbitte an die Nummer",');
    expect(r.stdout).toContain(',"carrier said\r\nno"\r\n');
    expect(r.stdout.startsWith(HEADER.join(",") + "\r\n")).toBe(true);
  });

  it("JSON: an array of the records as written, to --out; CONFIG works instead of --config", async () => {
    const out = join(dir, "exports", "2026.json");
    const r = await cli(["export", "--from=2026-01-01", "--to=2026-12-31", "--format", "json", "--out", out], { CONFIG: configPath });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`3 record(s) written to ${out}`);
    expect(JSON.parse(readFileSync(out, "utf8"))).toEqual(in2026);
  });

  it("without bounds everything readable; ISO times with a zone are exact bounds, --to inclusive", async () => {
    const all = await cli(["export", "--format", "json", "--config", configPath]);
    expect(all.code).toBe(0);
    expect(JSON.parse(all.stdout)).toEqual(records);
    const t = await cli(["export", "--format", "json", "--from", "2026-06-15T13:00:00+01:00", "--to", "2026-12-31T23:59:59.999Z", "--config", configPath]);
    expect(t.code).toBe(0);
    expect(JSON.parse(t.stdout)).toEqual(records.slice(2, 4));
    const empty = await cli(["export", "--from", "2030-01-01", "--config", configPath]);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toBe(HEADER.join(",") + "\r\n");
  });

  // Each case is its own process; they run side by side.
  it.concurrent.each([
    [["export", "--from", "2026-13-01"], /^ledger: --from "2026-13-01" is not a calendar date$/],
    [["export", "--to", "2026-02-30"], /^ledger: --to "2026-02-30" is not a calendar date$/],
    [["export", "--from", "yesterday"], /^ledger: --from "yesterday" is not a date/],
    [["export", "--from", "2026-01-01T10:00:00"], /^ledger: --from "2026-01-01T10:00:00" has no time zone/],
    [["export", "--from", "2026-12-31", "--to", "2026-01-01"], /^ledger: --from 2026-12-31 is after --to 2026-01-01$/],
    [["export", "--format", "xml"], /^ledger: unknown --format "xml": use csv or json$/],
    [["export", "--frmo", "2026-01-01"], /^ledger: Unknown option '--frmo'/],
    [["export", "--from"], /^ledger: Option '--from' argument is ambiguous/],
    [["export", "stray"], /^ledger: unexpected argument "stray" for export$/],
    [["exprot"], /^ledger: unknown command "exprot": use export, show, verify, purge, erase or optout$/],
    [[], /^ledger: no command: use export, show, verify, purge, erase or optout$/],
    [["purge", "--days", "3"], /^ledger: Unknown option '--days'/],
  ])("bad input %j: exit 2, one line naming the problem, no output", async (args, message) => {
    const r = await cli(args.length ? [...args, "--config", configPath] : []);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stderr.trimEnd()).toMatch(message);
  });

  it("a config problem is exit 2 too, naming the file", async () => {
    const r = await cli(["export", "--config", join(dir, "missing.yaml")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ledger: cannot read config file .*missing\.yaml/);
  });

  it("malformed lines in the middle: every readable record exported, each bad line reported by number, exit 1", async () => {
    const d = mkdtempSync(join(tmpdir(), "ledger-export-bad-"));
    const c = configIn(d);
    const lines = records.map((r) => JSON.stringify(r));
    lines.splice(2, 0, "not json at all", JSON.stringify({ seq: 9, kind: "sms_teleported", callId: "x", at: "2026-01-02T00:00:00Z" }));
    writeFileSync(ledgerPathEnsured(c.ledgerPath), lines.join("\n") + "\n");
    const r = await cli(["export", "--format", "json", "--config", c.configPath]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual(records);
    expect(r.stderr).toContain(`${c.ledgerPath} line 3: not JSON`);
    expect(r.stderr).toContain(`${c.ledgerPath} line 4: not a ledger record: kind:`);
    expect(r.stderr).toContain("2 malformed line(s)");
  });

  it("a missing ledger file is an error (exit 1), not an empty export", async () => {
    const c = configIn(mkdtempSync(join(tmpdir(), "ledger-export-none-")));
    const r = await cli(["export", "--config", c.configPath]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/ledger file .* does not exist/);
  });
});

describe("npm run ledger -- purge (file ledger)", () => {
  it("deletes records older than ledger.retentionDays, keeps the rest byte for byte, prints how many", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-purge-"));
    const { configPath, ledgerPath } = configIn(dir, { retentionDays: 30 });
    const now = Date.now();
    const at = (daysAgo: number) => new Date(now - daysAgo * DAY).toISOString();
    const keptLines = [
      // Key order and spacing differ from what JSON.stringify would write now: kept verbatim.
      `{"seq":3, "kind":"sms_sent","callId":"recent","at":"${at(29)}","reply":"Ja"}`,
      "a line that is not a record",
      `{"seq":4,"kind":"consent_asked","callId":"today","at":"${at(0)}"}`,
    ];
    const text = [`{"seq":1,"kind":"consent_asked","callId":"old","at":"${at(400)}"}`, `{"seq":2,"kind":"sms_sent","callId":"old","at":"${at(31)}"}`, ...keptLines].join("\n") + "\n";
    writeFileSync(ledgerPathEnsured(ledgerPath), text);

    const r = await cli(["purge", "--config", configPath]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^2 record\(s\) deleted \(the chain's prefix older than \S+Z, ledger\.retentionDays 30\); an anchor stands for position 2 and a purge record closes the chain\n$/);
    expect(r.stderr).toContain("line 4: not JSON");
    const after = readFileSync(ledgerPath, "utf8").split("\n");
    // An anchor first, the kept lines byte for byte, the purge record last.
    expect(JSON.parse(after[0]!)).toMatchObject({ kind: "anchor", seq: 2 });
    expect(after.slice(1, 4)).toEqual(keptLines);
    expect(JSON.parse(after[4]!)).toMatchObject({ kind: "purge", seq: 5, maintenance: { through: 2, count: 2 } });
    expect(readdirSync(join(dir, "evidence"))).toEqual(["consent-ledger.jsonl"]); // no temp file left behind

    const again = await cli(["purge", "--config", configPath]);
    expect(again.stdout).toMatch(/^0 record\(s\) deleted/);
  });

  it("no ledger file yet: nothing to delete", async () => {
    const { configPath } = configIn(mkdtempSync(join(tmpdir(), "ledger-purge-none-")));
    const r = await cli(["purge", "--config", configPath]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^0 record\(s\) deleted/);
  });
});

describe("purgeFile", () => {
  it("is all or nothing, keeps a torn tail, and leaves a chain that verifies: anchor, kept records, purge record", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-purgefile-"));
    const path = join(dir, "l.jsonl");
    const kept = records.slice(1).map((r) => JSON.stringify(r));
    // A torn tail (crash) is kept: its append never resolved, so no SMS depended on it.
    writeFileSync(path, [JSON.stringify(records[0]), ...kept].join("\n") + '\n{"seq":6,"kind":"sms_');
    const now = new Date("2027-02-01T00:00:00.000Z");
    const r = await purgeFile(path, new Date("2026-01-01T00:00:00.000Z"), now);
    expect(r).toMatchObject({ deleted: 1, kept: 4, rewritten: true, through: 1 });
    expect(r.problems).toEqual([{ line: 6, message: expect.stringMatching(/incomplete last line/) }]);
    const lines = readFileSync(path, "utf8").split("\n");
    expect(lines.slice(1, 6)).toEqual([...kept, '{"seq":6,"kind":"sms_']);
    const after = await readLedgerFile(path);
    expect(after.records.slice(1, 5)).toEqual(records.slice(1));
    expect(after.records[0]).toMatchObject({ kind: "anchor", seq: 1, erased: { digest: digestOf(records[0]!) } });
    expect(after.records[5]).toMatchObject({ kind: "purge", seq: 6, prev: digestOf(records[4]!), maintenance: { through: 1, count: 1 } });
    // The fixture is not a whole consent flow: only the chain is checked here.
    expect(verifyRecords(after.records).problems.filter((x) => /digest|position|anchor|purge/.test(x.problem))).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(["l.jsonl"]);
  });

  it("a line that is not a record ends the prefix: it and everything after it stay", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-purgefile-"));
    const path = join(dir, "l.jsonl");
    const fragment = '{"seq":7,"kind":"sms_sent","callId":"x","at":"2020-01-01T00:00:00.000Z","repl';
    writeFileSync(path, `${fragment}\n${JSON.stringify(records[0])}\n`);
    const r = await purgeFile(path, new Date("2026-01-01T00:00:00.000Z"));
    expect(r).toMatchObject({ deleted: 0, rewritten: false });
    expect(readFileSync(path, "utf8")).toBe(`${fragment}\n${JSON.stringify(records[0])}\n`);
  });

  it("nothing older than the cutoff: the file is not touched", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-purgefile-"));
    const path = join(dir, "l.jsonl");
    writeFileSync(path, JSON.stringify(records[4]) + "\n");
    expect(await purgeFile(path, new Date("2020-01-01T00:00:00Z"))).toMatchObject({ deleted: 0, rewritten: false });
  });
});

describe("npm run ledger (PostgreSQL via DATABASE_URL)", () => {
  const table = uniqueTable("cli");
  const env = { DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table };
  // ledger.path points at nothing: with DATABASE_URL the file is never read.
  const configPath = configIn(mkdtempSync(join(tmpdir(), "ledger-export-pg-")), { retentionDays: 30 }).configPath;
  let seeded: Promise<void> | undefined;

  beforeEach(async () => {
    await requirePostgres();
    seeded ??= (async () => {
      const l = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table });
      // The same inputs: PostgreSQL must give back the same chain (positions and digests) as the file holds.
      for (const { seq: _seq, prev: _prev, ...rec } of records) await l.append({ ...rec, id: rec.id! });
      await l.close();
    })();
    await seeded;
  });
  afterAll(async () => {
    await dropTable(table);
  });

  it("export CSV and JSON read the table, with the same shape and range rules as the file", async () => {
    const csv = await cli(["export", "--from", "2026-01-01", "--to", "2026-12-31", "--config", configPath], env);
    expect(csv.stderr).toBe("");
    expect(csv.code).toBe(0);
    const rows = parseCsv(csv.stdout);
    expect(rows[0]).toEqual(HEADER);
    expect(rows.slice(1)).toEqual(csvRowsOf(in2026));

    const json = await cli(["export", "--format", "json", "--config", configPath], env);
    expect(json.code).toBe(0);
    // Appended anew, each record got a salt of its own (and so its own links): the fields written are the file's.
    const exported = JSON.parse(json.stdout) as LedgerRecord[];
    expect(exported.map(({ salt: _s, prev: _p, ...r }) => r)).toEqual(records.map(({ prev: _p, ...r }) => r));
    expect(exported.every((r) => typeof r.salt === "string")).toBe(true);
    expect(verifyRecords(exported).problems.filter((x) => /digest|position/.test(x.problem))).toEqual([]);
  });

  it("bad input is still exit 2 before any connection is made", async () => {
    const r = await cli(["export", "--from", "2026-12-31", "--to", "2026-01-01", "--config", configPath], { ...env, DATABASE_URL: "postgres://postgres@127.0.0.1:1/test" });
    expect(r.code).toBe(2);
  });

  it("an unreachable server is exit 1 with a message naming it (no password)", async () => {
    const r = await cli(["export", "--config", configPath], { ...env, DATABASE_URL: "postgres://postgres:s3cret@127.0.0.1:1/test" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ledger: consent ledger postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/test table ledger_test_\S+: query failed: .*ECONNREFUSED/);
    expect(r.stderr).not.toContain("s3cret");
  });

  it("purge deletes rows older than ledger.retentionDays and prints how many", async () => {
    const l = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table });
    const now = Date.now();
    await l.append({ id: "recent:t1:consent_asked:0", kind: "consent_asked", callId: "recent", at: new Date(now - 29 * DAY).toISOString() });
    const r = await cli(["purge", "--config", configPath], env);
    expect(r.code).toBe(0);
    // The five prepared records are all older than 30 days (2025-2027 dates vs. today) except any in the future.
    const expected = records.filter((x) => Date.parse(x.at) < now - 30 * DAY).length;
    expect(r.stdout).toMatch(new RegExp(`^${expected} record\\(s\\) deleted \\(the chain's prefix older than \\S+Z, ledger\\.retentionDays 30\\)`));
    const left = await l.query();
    await l.close();
    expect(left.map((x) => x.callId)).toContain("recent");
    // What was kept, the recent record, and the anchor and purge record the purge left.
    expect(left).toHaveLength(records.length - expected + 1 + 2);
    expect(left[0]).toMatchObject({ kind: "anchor" });
  });
});

/** Makes the ledger's folder and returns the path. */
function ledgerPathEnsured(path: string): string {
  mkdirSync(dirname(path), { recursive: true });
  return path;
}
