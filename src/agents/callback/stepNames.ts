/** Step names of the callback agent its tools move to. */
export const CALLBACK_STEP = {
  collectDetails: "collect_details",
  /** Code: offers the confirmation SMS through the SMS task once every detail is confirmed. */
  offerSms: "offer_sms",
  /** Where the call goes once the SMS offer is over (at once, or when the SMS task returns). */
  wrapUp: "wrap_up",
} as const;
