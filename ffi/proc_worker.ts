/**
 * The /proc reader: a Worker that scans /proc for futexWaiters() (ffi/proc.ts)
 * and writes the answer into the shared buffer it is given, so that the
 * caller can stop waiting for it at its deadline, whatever another process
 * makes a read of its /proc files do.
 * @module
 */
import { answer, type FileId, scanProcAsync, started } from "./proc.ts";

interface Request {
  files: FileId[];
  budgetMs: number;
  skip: number[];
  buffer: SharedArrayBuffer;
}

// deno-lint-ignore no-explicit-any
const scope = self as any;
scope.onmessage = async ({ data }: MessageEvent<Request>) => {
  started(data.buffer);
  try {
    const found = await scanProcAsync(data.files, data.budgetMs, data.skip, new Int32Array(data.buffer, 0, 4));
    answer(data.buffer, { ok: found });
  } catch (error) {
    answer(data.buffer, { error: String((error as Error)?.message ?? error) });
  }
  scope.close();
};
