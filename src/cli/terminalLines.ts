import { createInterface, type Interface } from "node:readline";

/**
 * The terminal's lines, handed out one `ask` at a time. `npm run chat -- --as-model` asks for the
 * caller's words and, in the middle of a turn, for the model's answer on the same input: one
 * queue serves both in the order they ask, so a piped script and a person at a keyboard read alike.
 * On a pipe (no TTY) each line is echoed after its prompt, so the transcript shows who typed what.
 */
export class TerminalLines {
  private readonly rl: Interface;
  private readonly tty: boolean;
  private readonly queued: string[] = [];
  private waiting?: (line: string | undefined) => void;
  private ended = false;

  constructor(
    input: NodeJS.ReadableStream & { isTTY?: boolean },
    private readonly output: NodeJS.WritableStream = process.stdout,
  ) {
    this.tty = Boolean(input.isTTY);
    this.rl = createInterface({ input, output: this.tty ? output : undefined, terminal: this.tty });
    this.rl.on("line", (line) => {
      if (this.waiting) this.hand(line);
      else this.queued.push(line);
    });
    this.rl.on("close", () => {
      this.ended = true;
      this.hand(undefined);
    });
  }

  /** The next line typed after `prompt`; undefined once the input has ended (EOF, Ctrl-D). */
  ask(prompt: string): Promise<string | undefined> {
    return new Promise((resolve) => {
      const answer = (line: string | undefined) => {
        if (line !== undefined && !this.tty && line.trim()) this.output.write(`${prompt}${line.trim()}\n`);
        resolve(line);
      };
      if (this.queued.length) return answer(this.queued.shift());
      if (this.ended) return answer(undefined);
      this.waiting = answer;
      if (this.tty) {
        this.rl.setPrompt(prompt);
        this.rl.prompt();
      }
    });
  }

  close(): void {
    this.rl.close();
  }

  private hand(line: string | undefined): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.(line);
  }
}
