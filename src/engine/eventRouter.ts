import type { AiFlowEvent } from "../aiflow/events.js";
import type { FlowTypes, StepDef } from "./define.js";
import type { ComposedFlow } from "./defineFlow.js";
import type { EngineOptions } from "./options.js";
import type { Transitions } from "./transitions.js";
import type { Turn } from "./turnContext.js";
import type { TurnRunner } from "./turnRunner.js";

/**
 * Which code an event reaches: the flow's observers (bookkeeping, always), nothing after hangup,
 * the hangup after a goodbye, the flow's hook for the event type, then the engine's own handling
 * of a new call, a caller's words and silence.
 */
export class EventRouter<F extends FlowTypes> {
  constructor(
    private readonly flow: ComposedFlow<F>,
    private readonly steps: ReadonlyMap<string, StepDef<F>>,
    private readonly options: EngineOptions,
    private readonly runner: TurnRunner<F>,
    private readonly transitions: Transitions<F>,
  ) {}

  async observe(turn: Turn<F>, event: AiFlowEvent): Promise<void> {
    await this.flow.observers?.[event.type]?.(turn, event);
  }

  async route(turn: Turn<F>, event: AiFlowEvent, isNew: boolean): Promise<void> {
    const { state } = turn;
    await this.observe(turn, event);
    // After hangup the call is over: bookkeeping (observers) still ran, nothing is said or asked.
    if (state.ended) {
      turn.log.debug({ sessionId: turn.sessionId, event: event.type }, "event after hangup ignored");
      return;
    }
    if (state.pendingHangup && event.type !== "assistant_speak" && event.type !== "user_speech_started") {
      // The goodbye was said; whatever comes next (speech ended, silence, speech) ends the call.
      state.pendingHangup = false;
      turn.hangupNow();
      return;
    }
    // The one place a barge-in is noted: every "was this an answer?" check reads it (heard.ts).
    if (event.type === "user_speak" && event.barged_in) state.bargedIn = state.spoken;
    const hook = this.flow.hooks[event.type];
    if (hook) {
      const handled = await this.transitions.collecting(turn, async () => {
        const outcome = await hook(turn, event);
        const { handled, next } = typeof outcome === "boolean" ? { handled: outcome, next: undefined } : outcome;
        if (next !== undefined) await this.transitions.apply(turn, { label: `${event.type} hook`, declared: this.flow.hookTransitions[event.type] ?? [] }, next);
        return handled;
      });
      if (handled) return;
    }

    switch (event.type) {
      case "session_start":
        if (isNew) turn.speak(this.options.openingLine);
        else turn.say("welcome_back");
        return;
      case "user_speak":
        if (event.barged_in) this.markInterrupted(turn);
        turn.beginCallerTurn(event.text);
        await this.runner.runStep(turn);
        return;
      case "user_input_timeout":
        await this.inputTimeout(turn);
        return;
      default:
        // assistant_speak, assistant_speech_ended, user_speech_started, dtmf outside a hook: nothing to say.
        return;
    }
  }

  private async inputTimeout(turn: Turn<F>): Promise<void> {
    const { state } = turn;
    state.inputTimeouts++;
    if (state.inputTimeouts > this.options.limits.maxInputTimeouts) {
      turn.goodbye("timeout_goodbye");
      return;
    }
    const step = this.steps.get(state.step);
    if (step?.onTimeout) {
      await this.transitions.collecting(turn, async () => step.onTimeout!(turn));
      return;
    }
    // The same question again: still the line the caller is answering.
    turn.speak(turn.prompts.line("timeout_reprompt", { last_line: state.lastLine ?? "" }), { repeat: true });
  }

  /** The caller cut the last line short: tell the model it may not have been heard. */
  private markInterrupted(turn: Turn<F>): void {
    const { state } = turn;
    const mark = " " + turn.note("interrupted_mark");
    for (let i = state.history.length - 1; i >= 0; i--) {
      const m = state.history[i]!;
      if (m.role === "assistant" && m.content) {
        if (!m.content.endsWith(mark)) m.content += mark;
        return;
      }
      if (m.role === "user") return;
    }
  }
}
