/** Every tool the shipped flow offers, one file each. */
export { startSmsFlow } from "./start_sms_flow.js";
export { collectPhoneNumber } from "./collect_phone_number.js";
export { recordConsent } from "./record_consent.js";
export { sendConfirmationSms } from "./send_confirmation_sms.js";
export { cancelSms } from "./cancel_sms.js";
export { askForOtherNumber } from "./ask_for_other_number.js";
export { endCall } from "./end_call.js";
