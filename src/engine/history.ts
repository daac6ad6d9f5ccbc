import type { HistoryMessage } from "../core/callState.js";

/**
 * Keep at most `max` messages, cutting only at a caller message so that no tool result
 * is left without the assistant message that asked for it (the API rejects that).
 */
export function trimHistory(history: HistoryMessage[], max: number): HistoryMessage[] {
  if (history.length <= max) return history;
  for (let start = history.length - max; start < history.length; start++) {
    if (history[start]!.role === "user") return history.slice(start);
  }
  // No caller message in the window: keep the newest complete tail.
  const lastUser = history.map((m) => m.role).lastIndexOf("user");
  return lastUser >= 0 ? history.slice(lastUser) : history.slice(-max);
}

/** Every assistant tool call is answered by exactly one tool result, in order, before the next non-tool message. */
export function toolPairingProblems(history: HistoryMessage[]): string[] {
  const problems: string[] = [];
  for (let i = 0; i < history.length; i++) {
    const m = history[i]!;
    if (m.role === "assistant" && m.tool_calls?.length) {
      const ids = m.tool_calls.map((c) => c.id);
      const results = [];
      let j = i + 1;
      while (j < history.length && history[j]!.role === "tool") results.push((history[j++] as { tool_call_id: string }).tool_call_id);
      for (const id of ids) if (!results.includes(id)) problems.push(`tool call ${id} at ${i} has no result`);
    }
    if (m.role === "tool") {
      let k = i - 1;
      while (k >= 0 && history[k]!.role === "tool") k--;
      const owner = history[k];
      if (!owner || owner.role !== "assistant" || !owner.tool_calls?.some((c) => c.id === m.tool_call_id)) {
        problems.push(`tool result ${m.tool_call_id} at ${i} has no matching call`);
      }
    }
  }
  return problems;
}

/** After a failure mid-batch: give every unanswered tool call a result, so the next request is valid. */
export function repairToolPairing(history: HistoryMessage[], failedResult: string): HistoryMessage[] {
  const out: HistoryMessage[] = [];
  for (let i = 0; i < history.length; i++) {
    const m = history[i]!;
    out.push(m);
    if (m.role === "assistant" && m.tool_calls?.length) {
      const answered = new Set<string>();
      let j = i + 1;
      while (j < history.length && history[j]!.role === "tool") {
        const t = history[j] as { tool_call_id: string };
        answered.add(t.tool_call_id);
        out.push(history[j]!);
        j++;
      }
      for (const c of m.tool_calls) if (!answered.has(c.id)) out.push({ role: "tool", tool_call_id: c.id, content: failedResult });
      i = j - 1;
    }
  }
  return out;
}
