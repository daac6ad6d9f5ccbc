/** The simulated call's numbers (AI Flow format): the caller's own mobile and the flow's number. */
export const SIM_CALLER = "4915112345678";
export const FLOW_NUMBER_FOR_SIM = "4921112345678";

/** The digits of a number as the consent question reads it ("0 1 5 1 1, 2 3 4, …"), in AI Flow format (home country +49). */
export function spokenToAiFlow(spoken: string): string {
  const digits = spoken.replace(/\D/g, "");
  return digits.startsWith("0") ? `49${digits.slice(1)}` : digits;
}
