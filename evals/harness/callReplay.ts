import type { ChatModel, ChatRequest, ChatResponse } from "../../src/llm/chatModel.js";
import type { ReplayAnswer } from "./scenario.js";

/**
 * A reviewed call's model, replayed (a scenario's `replay:`, written by `--from-call`): the
 * recorded answers in order, each only to a request of the step that got it in the call. A
 * request it has no answer for fails the trial as a harness error, as a cassette miss does: the
 * call went another way than recorded, and the scenario must be looked at again.
 */
export class CallReplayModel implements ChatModel {
  private next = 0;
  readonly misses: string[] = [];

  constructor(
    private readonly scenarioId: string,
    private readonly answers: ReplayAnswer[],
  ) {}

  async complete(req: ChatRequest): Promise<ChatResponse> {
    const answer = this.answers[this.next];
    if (!answer || (req.step !== undefined && answer.step !== req.step)) {
      const miss = answer
        ? `replay of ${this.scenarioId}: model request ${this.next + 1} is for step ${req.step}, the call's was for step ${answer.step}`
        : `replay of ${this.scenarioId}: model request ${this.next + 1} (step ${req.step}) but the call made only ${this.answers.length}`;
      this.misses.push(miss);
      throw new Error(miss);
    }
    this.next++;
    if (answer.error !== undefined) throw new Error(`replayed model error: ${answer.error}`);
    return {
      text: answer.text,
      toolCalls: answer.toolCalls.map((c) => ({ id: "", name: c.name, arguments: typeof c.arguments === "string" ? c.arguments : JSON.stringify(c.arguments) })),
      usage: { promptTokens: 0, completionTokens: 0 },
      model: "replay",
    };
  }
}
