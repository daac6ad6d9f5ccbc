/** What bench/peerCompare.ts hands the peer process (agentCalls.ts) and what it gets back. Types only. */

export interface PeerToolSpec {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
  strict: boolean;
}

export interface PeerCall {
  id: string;
  lang: string;
  /** The caller's lines, in order: one agent run each. */
  turns: string[];
  /** Each tool's output (by tool name; record_consent_yes / _no; `default` for the rest): the service's line or note for it. */
  outputs: Record<string, string>;
}

export interface PeerJob {
  baseURL: string;
  model: string;
  temperature: number;
  maxTokens: number;
  /** Agents JS `toolUseBehavior: { stopAtToolNames }`; absent: the default (the model runs again after every tool). */
  stopAtToolNames?: string[];
  agents: Record<string, { instructions: string; tools: PeerToolSpec[] }>;
  calls: PeerCall[];
  /** Every call played this many times, one after another. */
  repeat: number;
}

export interface PeerResult {
  calls: Array<{ id: string; ms: number; answers: string[] }>;
}
