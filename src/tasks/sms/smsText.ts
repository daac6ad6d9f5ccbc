import type { SmsConfig } from "./config.js";
import { AgentError } from "../../core/errors.js";

export class SmsSlotError extends AgentError {
  readonly code = "sms_slot_invalid";
}

/**
 * The SMS body is the configured template with `{business_name}` and the declared slots
 * filled from configured option texts. Slot values are option keys chosen by the model,
 * never free text, so the model cannot write what the SMS says.
 */
export function renderSmsText(config: SmsConfig, slots: Record<string, string>): string {
  return config.template.replace(/\{([^}]*)\}/g, (_, name: string) => {
    if (name === "business_name") return config.business.name;
    // Own keys only: "toString" or "constructor" must not pass for a slot or an option.
    const slot = Object.hasOwn(config.slots, name) ? config.slots[name] : undefined;
    if (!slot) throw new SmsSlotError(`template placeholder {${name}} is not a declared slot`);
    const key = Object.hasOwn(slots, name) ? slots[name] : undefined;
    if (key === undefined) throw new SmsSlotError(`slot ${name} has no value`);
    const text = Object.hasOwn(slot.options, key) ? slot.options[key] : undefined;
    if (text === undefined) throw new SmsSlotError(`slot ${name} has no option ${key}`);
    return text;
  });
}
