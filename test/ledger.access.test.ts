import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { FileLedger } from "../src/ledger/fileLedger.js";
import type { ConsentLedger, LedgerRecordInput } from "../src/ledger/ledger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { TEST_DATABASE_URL, dropTable, uniqueTable } from "./support/postgres.js";
import { ledgerCli } from "./support/ledgerCli.js";

/**
 * Issue 18 point 5: one person's records, readable (`export --number`), one call's evidence as a
 * page (`show`), and every file the CLI writes 0600 (point 4). On the file ledger and PostgreSQL.
 */

const SECRET = "k1:" + "s".repeat(40);
const ALICE = "4915112345678";
const BOB = "4915798765432";
// How the agent reads Alice's number back (spokenDigitGroups with homeCountry DE).
const ALICE_SPOKEN = "0 1 5 1 1, 2 3 4, 5 6, 7 8";

const cli = ledgerCli;

/** Alice's call (asked, yes, approved, handed over), Bob's call (asked, no without a number), and a call where Alice asks for an SMS to Bob. */
function evidence(): LedgerRecordInput[] {
  const q = (spoken: string) => `Darf ich Ihnen die Öffnungszeiten per SMS an ${spoken} schicken?`;
  return [
    { id: "a:e2:consent_asked:0", kind: "consent_asked", callId: "call-alice", at: "2026-12-01T09:00:03.000Z", number: ALICE, question: q(ALICE_SPOKEN) },
    { id: "a:e3:consent_given:0", kind: "consent_given", callId: "call-alice", at: "2026-12-01T09:00:07.000Z", number: ALICE, reply: "Ja, gerne.", ref: "a:e2:consent_asked:0" },
    { id: "a:e3:sms_approved:0", kind: "sms_approved", callId: "call-alice", at: "2026-12-01T09:00:07.000Z", number: ALICE, message: "Praxis: Mo–Fr 8–12 Uhr", model: "gpt-4o-mini", ref: "a:e3:consent_given:0" },
    { id: "a:e3:sms_handed_over:0", kind: "sms_handed_over", callId: "call-alice", at: "2026-12-01T09:00:07.000Z", number: ALICE, ref: "a:e3:sms_approved:0" },
    { id: "b:e2:consent_asked:0", kind: "consent_asked", callId: "call-bob", at: "2026-12-01T10:00:03.000Z", number: BOB, question: q("0 1 5 7, 9 8 7, 6 5 4 3 2") },
    { id: "b:e3:consent_declined:0", kind: "consent_declined", callId: "call-bob", at: "2026-12-01T10:00:06.000Z", reply: "Nein, danke." },
    { id: "x:e2:consent_asked:0", kind: "consent_asked", callId: "call-alice-for-bob", at: "2026-12-02T09:00:03.000Z", number: BOB, question: q("0 1 5 7, 9 8 7, 6 5 4 3 2") },
    { id: "x:e3:consent_declined:0", kind: "consent_declined", callId: "call-alice-for-bob", at: "2026-12-02T09:00:05.000Z", number: ALICE, reply: "Doch nicht." },
  ];
}

function configIn(dir: string, numbers: "full" | "hashed"): { configPath: string; ledgerPath: string } {
  const raw = parseYaml(readFileSync("config/agent.yaml", "utf8")) as Record<string, unknown>;
  const ledgerPath = join(dir, "consent-ledger.jsonl");
  raw.ledger = { ...(raw.ledger as object), path: ledgerPath, numbers };
  const configPath = join(dir, "agent.yaml");
  writeFileSync(configPath, stringifyYaml(raw));
  return { configPath, ledgerPath };
}

async function fill(ledger: ConsentLedger): Promise<void> {
  for (const r of evidence()) await ledger.append(r);
  await ledger.close();
}

const hashed = () => NumberHasher.keyed({ id: "k1", secret: "s".repeat(40) });

describe.each(["file", "postgres"] as const)("access and audit on the %s ledger (hashed numbers)", (kind) => {
  const table = uniqueTable("access");
  afterAll(async () => {
    if (kind === "postgres") {
      await dropTable(table);
      await dropTable(`${table}_head`);
    }
  });
  let env: Record<string, string>;
  const ready = (async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-access-"));
    const { configPath, ledgerPath } = configIn(dir, "hashed");
    env = { CONFIG: configPath, LEDGER_HASH_KEY: SECRET, ...(kind === "postgres" ? { DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table } : {}) };
    await fill(kind === "postgres" ? new PostgresLedger({ connectionString: TEST_DATABASE_URL, table, hasher: hashed() }) : new FileLedger(ledgerPath, { hasher: hashed(), notice: () => undefined }));
    return dir;
  })();

  it("export --number: every record about the number, the question as spoken, nobody else's", async () => {
    await ready;
    const r = await cli(["export", "--number", "0151 12345678"], env);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Records about 4915112345678 \(5 record\(s\) in 2 call\(s\)\):/);
    expect(r.stdout).toContain(`asked        "Darf ich Ihnen die Öffnungszeiten per SMS an ${ALICE_SPOKEN} schicken?"`);
    expect(r.stdout).toContain('consent      given: "Ja, gerne."');
    expect(r.stdout).toContain('approved     SMS "Praxis: Mo–Fr 8–12 Uhr" (model gpt-4o-mini)');
    expect(r.stdout).toContain("handed over  to sipgate");
    expect(r.stdout).toContain('consent      declined: "Doch nicht."');
    // Bob's call and Bob's question in the shared call are Bob's, not Alice's.
    expect(r.stdout).not.toMatch(/call-bob\b|Nein, danke|9 8 7/);
  });

  it("export --number --format json --out: the same records, in a 0600 file (an existing 0644 file is tightened)", async () => {
    const dir = await ready;
    const out = join(dir, "access.json");
    writeFileSync(out, "old", { mode: 0o644 });
    const r = await cli(["export", "--number", "+49 151 12345678", "--format", "json", "--out", out], env);
    expect(r.code).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const recs = JSON.parse(readFileSync(out, "utf8")) as Array<{ id: string; question?: string }>;
    expect(recs.map((x) => x.id)).toEqual(["a:e2:consent_asked:0", "a:e3:consent_given:0", "a:e3:sms_approved:0", "a:e3:sms_handed_over:0", "x:e3:consent_declined:0"]);
    expect(recs[0]!.question).toContain(ALICE_SPOKEN);
  });

  it("the ledger itself never holds the number: the question is stored with {number}", async () => {
    const dir = await ready;
    const r = await cli(["export", "--format", "json"], env);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/12345678|1 2 3, 4 5 6|9 8 7, 6 5/);
    expect(r.stdout).toContain("an {number} schicken?");
    expect(statSync(dir).isDirectory()).toBe(true);
  });

  it("show CALL_ID: the call's evidence as a page", async () => {
    await ready;
    const r = await cli(["show", "call-alice"], env);
    expect(r.code).toBe(0);
    const page = r.stdout;
    expect(page).toMatch(/^Call call-alice: 4 record\(s\), chain positions 1–4/);
    expect(page).toMatch(/asked +"Darf ich Ihnen die Öffnungszeiten per SMS an \{number\} schicken\?" +\[number hmac-sha256:[0-9a-f]{64}, key k1\]/);
    expect(page).toMatch(/consent +given: "Ja, gerne."/);
    expect(page).toMatch(/handed over/);
    expect(page).toContain("Consent: every approval in this call follows a consent_given answering a consent_asked for that number.");
    expect(page).toContain("Outcome: every approval has its handover record");
    expect(page).toContain("npm run ledger -- verify");
    const none = await cli(["show", "no-such-call"], env);
    expect(none.code).toBe(1);
    expect(none.stdout).toMatch(/No record of call no-such-call/);
  });

  it("bad usage is named: no call id, a number that is none", async () => {
    await ready;
    expect(await cli(["show"], env)).toMatchObject({ code: 2, stderr: expect.stringMatching(/show needs a call id/) });
    expect(await cli(["export", "--number", "hallo"], env)).toMatchObject({ code: 2, stderr: expect.stringMatching(/--number "hallo" is not a phone number/) });
  });
});
