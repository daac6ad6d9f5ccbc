import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebSocket } from "ws";

/**
 * Headless Chromium driven over the DevTools protocol (a WebSocket, no extra package): enough to
 * log in through a form, follow a link and take a screenshot, as a person at the browser would.
 */
export class Browser {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly listeners: Array<(method: string, params: unknown, sessionId?: string) => void> = [];
  private sessionId = "";

  private constructor(
    private readonly proc: ChildProcess,
    private readonly ws: WebSocket,
  ) {
    ws.on("message", (data) => {
      const msg = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string }; method?: string; params?: unknown; sessionId?: string };
      if (msg.id !== undefined) {
        const w = this.waiting.get(msg.id);
        this.waiting.delete(msg.id);
        if (msg.error) w?.reject(new Error(msg.error.message));
        else w?.resolve(msg.result);
      } else if (msg.method) for (const l of this.listeners) l(msg.method, msg.params, msg.sessionId);
    });
  }

  static async launch(chromium: string): Promise<Browser> {
    const profile = mkdtempSync(join(tmpdir(), "chrome-review-"));
    const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1280,900", `--user-data-dir=${profile}`, "--remote-debugging-port=0", "about:blank"];
    const proc = spawn(chromium, flags, { stdio: "ignore" });
    const portFile = join(profile, "DevToolsActivePort");
    for (let i = 0; i < 300 && !existsSync(portFile); i++) await new Promise((r) => setTimeout(r, 100));
    const [port, path] = readFileSync(portFile, "utf8").trim().split("\n");
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    const browser = new Browser(proc, ws);
    const { targetId } = (await browser.send("Target.createTarget", { url: "about:blank" })) as { targetId: string };
    const { sessionId } = (await browser.send("Target.attachToTarget", { targetId, flatten: true })) as { sessionId: string };
    browser.sessionId = sessionId;
    await browser.page("Page.enable");
    await browser.page("Emulation.setDeviceMetricsOverride", { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false });
    return browser;
  }

  private send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<unknown> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
  }

  /** A command for the page. */
  page(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    return this.send(method, params, this.sessionId);
  }

  /** Runs `action` and waits for the page's next load. */
  async loaded(action: () => Promise<unknown>): Promise<void> {
    const done = new Promise<void>((resolve) => {
      const l = (method: string, _p: unknown, sessionId?: string) => {
        if (method === "Page.loadEventFired" && sessionId === this.sessionId) {
          this.listeners.splice(this.listeners.indexOf(l), 1);
          resolve();
        }
      };
      this.listeners.push(l);
    });
    await action();
    await done;
  }

  goto(url: string): Promise<void> {
    return this.loaded(() => this.page("Page.navigate", { url }));
  }

  /** A JavaScript expression's value in the page. */
  async evaluate<T>(expression: string): Promise<T> {
    const r = (await this.page("Runtime.evaluate", { expression, returnByValue: true })) as { result: { value: T }; exceptionDetails?: { text: string; exception?: { description?: string } } };
    if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text} (evaluating ${expression.slice(0, 80)}; page: ${await this.evaluate<string>("location.href + ' ' + document.body.innerText.slice(0, 300)")})`);
    return r.result.value;
  }

  async screenshot(): Promise<Buffer> {
    const { data } = (await this.page("Page.captureScreenshot", { format: "png", captureBeyondViewport: true })) as { data: string };
    return Buffer.from(data, "base64");
  }

  async close(): Promise<void> {
    this.ws.close();
    this.proc.kill("SIGTERM");
    await new Promise((r) => (this.proc.exitCode !== null ? r(undefined) : this.proc.once("exit", r)));
  }
}
