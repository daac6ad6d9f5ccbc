import { ConfigError, applyEnv, configPathFrom, loadConfigFile } from "./config/load.js";
import { OpenAIChatModel } from "./llm/openaiChatModel.js";
import { createService } from "./service.js";

/** `npm start`: load and check config, then serve the webhook until SIGTERM / SIGINT. */
async function main(): Promise<void> {
  const env = process.env;
  const config = applyEnv(loadConfigFile(configPathFrom(process.argv.slice(2), env)), env);
  if (!env.OPENAI_API_KEY && !env.OPENAI_BASE_URL) {
    throw new ConfigError(
      "no model endpoint: set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (an OpenAI-compatible server such as Ollama, vLLM or Azure OpenAI)",
    );
  }
  const model = new OpenAIChatModel({
    // Local servers (Ollama, vLLM) ignore the key, but the client needs one.
    apiKey: env.OPENAI_API_KEY || "unused",
    baseURL: env.OPENAI_BASE_URL || undefined,
    timeoutMs: config.llm.timeoutMs,
    maxRetries: config.llm.maxRetries,
    azureApiVersion: config.llm.azureApiVersion,
  });
  const service = createService({ config, model, apiToken: env.AIFLOW_API_TOKEN || undefined });
  const { app, logger } = service;
  try {
    await service.ledger.ready();
  } catch (e) {
    throw new ConfigError(`${(e as Error).message} (set ledger.path in the config)`);
  }

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, "shutting down: finishing in-flight requests");
    await service.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  await app.listen({ port: config.server.port, host: config.server.host });
  logger.info(
    { model: config.llm.model, language: config.language, auth: Boolean(env.AIFLOW_API_TOKEN), endpoint: env.OPENAI_BASE_URL ?? "api.openai.com" },
    "sipgate AI Flow agent ready: POST /webhook",
  );
}

main().catch((e) => {
  // One clear line for configuration problems; a stack only for real bugs.
  if (e instanceof ConfigError) console.error(`aiflow-sms-agent: ${e.message}`);
  else console.error(e);
  process.exit(1);
});
