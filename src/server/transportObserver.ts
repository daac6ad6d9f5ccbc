import type { AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";

/** What a transport tells the call review (src/review/recorder.ts): an event arrived, a frame was pushed. */
export interface TransportObserver {
  arrived(event: AiFlowEvent, via: "http" | "ws"): void;
  pushed(action: AiFlowAction): void;
}
