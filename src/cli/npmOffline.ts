/**
 * `npm start --offline`, `npm run chat --offline`, `npm run eval --offline` (without `--`): npm
 * keeps --offline as its own setting and passes it on only as npm_config_offline, so the program
 * would go on towards a real model and then ask for --offline. Say exactly what to type instead.
 */
export function npmTookOffline(env: NodeJS.ProcessEnv, argv: readonly string[], script: "start" | "run chat" | "run eval"): string | undefined {
  if (env.npm_config_offline !== "true" || argv.includes("--offline")) return undefined;
  const rest = argv.join(" ");
  return `npm took --offline as its own setting; type: npm ${script} -- --offline${rest ? ` ${rest}` : ""}`;
}
