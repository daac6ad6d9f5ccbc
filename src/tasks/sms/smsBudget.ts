import type { SmsConfig } from "./config.js";
import type { SmsCallState as CallState } from "./state.js";

/**
 * How many more SMS this call may send: `tasks.sms.maxPerCall` standing sends, and at most
 * `maxPerCall + retryAllowance` attempts in all. One function, used by the tools (to
 * refuse early and word it truthfully) and by the gate (to decide).
 */
export function smsBudget(state: CallState, config: SmsConfig): { canSend: boolean; standing: number; attempts: number } {
  const standing = state.sms.sent.filter((s) => !s.failed).length;
  const attempts = state.sms.sent.length;
  const canSend = standing < config.maxPerCall && attempts < config.maxPerCall + state.sms.retryAllowance;
  return { canSend, standing, attempts };
}
