import { randomBytes } from "node:crypto";
import pg from "pg";

/**
 * PostgreSQL for the ledger tests. Never DATABASE_URL (that may be a real ledger): the tests use
 * TEST_DATABASE_URL, which test/support/globalSetup.ts sets to a private cluster it starts unless
 * it is given, and a fresh table per run so runs never collide.
 */
export const TEST_DATABASE_URL =
  process.env.TEST_DATABASE_URL ||
  (() => {
    throw new Error("TEST_DATABASE_URL is not set: run the tests through vitest (npm test), whose globalSetup starts a private PostgreSQL");
  })();

/** A table name no other run uses: ledger_test_<pid>_<time>_<random>. */
export function uniqueTable(tag = "t"): string {
  return `ledger_test_${tag}_${process.pid}_${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;
}

let probed: Promise<void> | undefined;

/**
 * Fails (never skips) with a message that says what to start when the server is not there. Call it in
 * beforeEach (or in the test): a failing beforeAll would make vitest count the tests as skipped.
 */
export function requirePostgres(): Promise<void> {
  probed ??= probe();
  return probed;
}

async function probe(): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query("SELECT 1");
  } catch (e) {
    const err = e as Error & { code?: string; errors?: Error[] };
    const why = err.message || err.errors?.map((x) => x.message).join("; ") || err.code || String(e);
    throw new Error(
      `PostgreSQL is not reachable at ${TEST_DATABASE_URL} (${why}). The ledger tests need it: ` +
        `check TEST_DATABASE_URL, or unset it to let the tests start their own.`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Runs one statement on a connection of its own (not the ledger's pool). */
export async function sql<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    return (await client.query<R>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/** Drops a test table and its chain head (`<table>_head`); a no-op when the server was never reachable (the tests already failed saying so). */
export async function dropTable(table: string): Promise<void> {
  if (!(await requirePostgres().then(() => true, () => false))) return;
  await sql(`DROP TABLE IF EXISTS "${table}", "${table}_head"`);
}
