import { createServer, connect, type Server, type Socket } from "node:net";
import { REDIS_URL } from "./redis.js";

/**
 * A TCP proxy in front of the test Redis that can drop the connection when the next reply
 * arrives: the command ran, the client never sees its reply and resends it after reconnecting.
 * While `refusing`, new connections are closed at once (the client keeps trying to reconnect).
 */
export class DroppingProxy {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private drop = false;
  refusing = false;
  connections = 0;
  dropped = 0;

  async start(): Promise<number> {
    const target = new URL(REDIS_URL);
    this.server = createServer((client) => {
      if (this.refusing) {
        client.destroy();
        return;
      }
      this.connections++;
      const upstream = connect(Number(target.port || 6379), target.hostname);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.on("data", (d) => upstream.write(d));
      upstream.on("data", (d) => {
        if (this.drop) {
          this.drop = false;
          this.dropped++;
          client.destroy();
          upstream.destroy();
          return;
        }
        client.write(d);
      });
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    return (this.server.address() as { port: number }).port;
  }

  /** The next reply from Redis is lost with its connection. */
  dropNextReply() {
    this.drop = true;
  }

  async close() {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server?.close(r));
  }
}
