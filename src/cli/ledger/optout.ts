import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import type { CountryCode } from "libphonenumber-js/max";
import { createLedger } from "../../ledger/createLedger.js";
import type { ConsentLedger } from "../../ledger/ledger.js";
import { parseAiFlowNumber, parseCallerNumber, type ParsedNumber } from "../../phone/number.js";
import { loadConfig, UsageError } from "./common.js";

/**
 * `npm run ledger -- optout add|remove N` and `optout list`: the operator's side of the
 * do-not-text list. Each change goes through the ledger's own write (the file ledger's lock file,
 * PostgreSQL's chain head), so a running service sees it at its next send, and is a chained
 * record (`opt_out_added` / `opt_out_removed`, outcome "operator").
 */

export const OPT_OUT_USAGE = `optout   add N | remove N | list. Puts a number on the do-not-text list (a caller's wish to get no
         SMS, checked on every send) or takes it off; each change is a chained record. N as +49 151 …,
         0151 … (ledger's homeCountry) or AI Flow format 49151…. list prints the list as stored
         (with ledger.numbers: hashed, keyed hashes: never the numbers).`;

/**
 * A number as an operator types it. Digits alone that do not start with 0 are AI Flow format
 * (E.164 without "+", as the ledger, exports and recipients.blockedNumbers write numbers): read
 * as national digits they would name another number.
 */
function operatorNumber(raw: string, home: CountryCode): ParsedNumber {
  const text = raw.trim();
  const parsed = /^[1-9]\d+$/.test(text) ? parseAiFlowNumber(text) : parseCallerNumber(text, home);
  if (!parsed?.valid) throw new UsageError(`"${raw}" is not a phone number: give it as +49 151 …, 0151 … or in AI Flow format 49151…`);
  return parsed;
}

export async function runOptOut(args: string[], env: NodeJS.ProcessEnv, now: Date): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: "string" } }, strict: true, allowPositionals: true });
  const [action, raw, ...extra] = positionals;
  if (action !== "add" && action !== "remove" && action !== "list") {
    throw new UsageError(action === undefined ? "optout needs add N, remove N or list" : `unknown optout action "${action}": use add, remove or list`);
  }
  const unexpected = action === "list" ? raw : extra[0];
  if (unexpected !== undefined) throw new UsageError(`unexpected argument "${unexpected}" for optout ${action}`);
  if (action !== "list" && raw === undefined) throw new UsageError(`optout ${action} needs a phone number`);
  const config = loadConfig(values.config, env);
  const number = raw === undefined ? undefined : operatorNumber(raw, config.homeCountry);
  const ledger: ConsentLedger = createLedger(config, env);
  try {
    await ledger.ready();
    if (!config.ledger.optOutList) console.error("ledger: note: ledger.optOutList is false in this config, so the service does not check the list");
    if (!number) return await list(ledger);
    const add = action === "add";
    const kind = add ? "opt_out_added" : "opt_out_removed";
    const r = await ledger.setOptOut!({
      id: `operator:${now.toISOString()}:${kind}:${randomBytes(4).toString("hex")}`,
      add,
      number: number.aiflow,
      by: "operator",
      callId: "operator",
      at: now.toISOString(),
      detail: `the operator via the CLI (npm run ledger -- optout ${action})`,
    });
    const shown = number.international;
    if (add) console.log(`${shown} is on the do-not-text list${r.wasListed ? " (it already was; the request is recorded again)" : ""}`);
    else console.log(r.written ? `${shown} is off the do-not-text list` : `${shown} was not on the do-not-text list: nothing changed`);
    return 0;
  } finally {
    await ledger.close();
  }
}

async function list(ledger: ConsentLedger): Promise<number> {
  const entries = await ledger.optOutEntries!();
  for (const e of entries) console.log(`${e.since}  ${e.by.padEnd(8)}  ${e.number}${e.keyId ? `  key ${e.keyId}` : ""}  record ${e.record}`);
  console.log(`${entries.length} number(s) on the do-not-text list`);
  return 0;
}
