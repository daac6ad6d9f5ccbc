/** Step names of the SMS task; its tools refer to steps by these names only. */
export const STEP = {
  collectNumber: "collect_number",
  confirmConsent: "confirm_consent",
  sendSms: "send_sms",
} as const;

/** Steps where the caller is giving or confirming a number (keypad entry counts here). */
export const NUMBER_STEPS: readonly string[] = [STEP.collectNumber, STEP.confirmConsent];
