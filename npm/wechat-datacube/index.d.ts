// Types of wechat-datacube.
import type { ChildProcess } from "node:child_process";

/** How to start the server. */
export interface DatacubeOptions {
  /** The instant the emulated clock starts at, and returns to at each reset (RFC 3339,
   * e.g. "2026-05-02T09:00:00+08:00"); real time when absent. */
  clock?: string;
  /** The database URL (default "sqlite::memory:", gone when the server stops). */
  database?: string;
  /** More `datacube serve` flags, e.g. ["--seed", "fixtures/datacube"]. */
  args?: string[];
  /** The datacube binary (default: this platform's package's, or $DATACUBE_BINARY). */
  binary?: string;
  /** Milliseconds to wait for the server to be ready (default 30000). */
  startupTimeout?: number;
}

/** What storing events did. */
export interface EventsReport {
  accepted: number;
  duplicates: number;
  rejected: { line: number; reason: string }[];
  rejected_total: number;
}

/** The fault rules in force, each with the calls it applied to. */
export interface FaultsInForce {
  rules: { rule: string; calls: number }[];
  seed: number | null;
}

/** A running datacube server. */
export interface Datacube {
  /** Its base URL, http://127.0.0.1:PORT: where an SDK's https://api.weixin.qq.com goes. */
  readonly url: string;
  /** The admin API's bearer token. */
  readonly adminToken: string;
  readonly process: ChildProcess;
  /** Adds an Official Account (verified: false makes datacube endpoints answer 48001). */
  addAccount(appid: string, secret: string, options?: { verified?: boolean }): Promise<void>;
  /** Stores events (objects, or NDJSON text) and computes their statistics; rejects if a line
   * was rejected, naming it. */
  postEvents(events: Record<string, unknown>[] | string): Promise<EventsReport>;
  /** Moves the emulated clock; resolves to the new time in China time. */
  setClock(now: string | Date): Promise<string>;
  /** Puts fault rules in force (`TARGET:EFFECT@WHEN`, e.g. "getusersummary:-1@first2",
   * "*:45011@after10", "token:-1@5%"), instead of those before or, with add, after them;
   * with seed, the probabilities are drawn from it. faults() clears them. */
  faults(rules?: string, options?: { seed?: number; add?: boolean }): Promise<FaultsInForce>;
  /** The fault rules in force, each with the calls it applied to. */
  faultsInForce(): Promise<FaultsInForce>;
  /** Everything a test leaves behind goes; the clock and faults go back to the start. */
  reset(): Promise<void>;
  /** An access token from /cgi-bin/token, as an SDK gets one. */
  token(appid: string, secret: string): Promise<string>;
  /** Stops the server. */
  stop(): Promise<void>;
}

/** Starts `datacube serve` of its own and resolves once it is ready. */
export function startDatacube(options?: DatacubeOptions): Promise<Datacube>;

/** The path of the datacube binary this package runs. */
export function binaryPath(): string;
