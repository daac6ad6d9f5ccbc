/**
 * The root of the service's own error classes, so callers can tell three kinds apart:
 * a flow that is defined wrongly (a start-up or programming error), a tool that failed while it
 * ran (the model gets a result it can recover from), and a model that could not answer
 * (the caller hears an apology or is transferred). Each message says what to do.
 */
export class AgentError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
