import { describe, expect, it } from "vitest";
import { exposureProblem, isLoopback } from "../src/server/exposure.js";

describe("isLoopback", () => {
  it.each(["127.0.0.1", "127.1.2.3", "127.255.255.254", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "localhost", "LOCALHOST", "api.localhost"])("%s is loopback", (host) => {
    expect(isLoopback(host)).toBe(true);
  });

  it.each(["0.0.0.0", "::", "10.0.0.5", "192.168.1.10", "128.0.0.1", "::ffff:10.0.0.1", "example.com", "localhost.example.com", "127.0.0.1.nip.io", "fe80::1"])("%s is not", (host) => {
    expect(isLoopback(host)).toBe(false);
  });
});

describe("exposureProblem", () => {
  it("no token on an open address: refused, naming AIFLOW_API_TOKEN and server.allowNoToken", () => {
    for (const host of ["0.0.0.0", "::", "10.0.0.5"]) {
      const problem = exposureProblem({ host, hasToken: false, allowNoToken: false });
      expect(problem).toContain(`refusing to serve ${host} without AIFLOW_API_TOKEN`);
      expect(problem).toContain("server.allowNoToken: true");
      expect(problem).not.toContain("\n");
    }
  });

  it("a token, loopback, or the explicit opt-out each allow the start", () => {
    expect(exposureProblem({ host: "0.0.0.0", hasToken: true, allowNoToken: false })).toBeUndefined();
    expect(exposureProblem({ host: "0.0.0.0", hasToken: false, allowNoToken: true })).toBeUndefined();
    expect(exposureProblem({ host: "127.0.0.1", hasToken: false, allowNoToken: false })).toBeUndefined();
    expect(exposureProblem({ host: "::1", hasToken: false, allowNoToken: false })).toBeUndefined();
    expect(exposureProblem({ host: "localhost", hasToken: false, allowNoToken: false })).toBeUndefined();
  });
});
