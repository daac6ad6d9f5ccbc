import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Private Redis and PostgreSQL for the run (unless TEST_REDIS_URL / TEST_DATABASE_URL are set),
    // and a check that no test left a process running.
    globalSetup: ["test/support/globalSetup.ts"],
  },
});
