import type { SpeakOptions } from "../aiflow/actions.js";
import type { EngineOptions } from "./options.js";

/** The options every `speak` carries (voice, barge-in, VAD), plus the input timeout when an answer is expected. */
export function speakOptions(speech: EngineOptions["speech"], inputTimeoutSeconds?: number): SpeakOptions {
  return {
    ...(speech.tts ? { tts: speech.tts } : {}),
    ...(speech.bargeIn ? { barge_in: speech.bargeIn } : {}),
    ...(speech.vad ? { vad: speech.vad } : {}),
    ...(inputTimeoutSeconds !== undefined ? { user_input_timeout_seconds: inputTimeoutSeconds } : {}),
  };
}
