/** Where the checkout's parts are, for tests and benchmarks that start them as processes. */
import type { Layout } from "../mod.ts";

/** The checkout's root folder. */
export const ROOT: string = new URL("..", import.meta.url).pathname.replace(
  /\/$/,
  "",
);
/** The CLI's entry. */
export const CLI: string = `${ROOT}/cli.ts`;
/** A Deno child using the module: see tests/fixtures/actor.ts for its arguments. */
export const ACTOR: string = `${ROOT}/tests/fixtures/actor.ts`;
/** A region's size: one page. */
export const PAGE = 4096;
/** Both layouts, for tests that run once per layout. */
export const LAYOUTS: readonly Layout[] = ["seed", "ltp"];
