import type { Logger } from "pino";
import type { CallbackReport, CallReports } from "./report.js";

/** The message of the log line that carries a demo's report (README and tests name it). */
export const LOGGED_REPORT_MESSAGE = "callback report (demo: logged, not posted; set CALLBACK_URL and CALLBACK_SIGNING_SECRET to post it)";

/**
 * The offline demo without a receiver: each call's final report (at its session_end) is one log
 * line instead of a post, so a new user sees what their endpoint would get. A demo's calls are
 * test calls, which is why the body may be logged here and never by the poster. Snapshots (a call
 * whose session_end never comes) are not logged: a demo keeps nothing until they would be due.
 */
export class LoggedReports implements CallReports {
  constructor(private readonly log: Logger) {}

  async save(report: CallbackReport, opts: { final: boolean }): Promise<void> {
    if (opts.final) this.log.info({ report }, LOGGED_REPORT_MESSAGE);
  }
}
