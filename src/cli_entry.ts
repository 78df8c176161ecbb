/**
 * The installed tool's entry (tools/install.ts bundles this file): cli.ts
 * without its `import.meta.main` check, which costs a call ~0.4 ms (the
 * first look at `import.meta` builds the object), since a bundle is always
 * the main module.
 * @module
 */
import "./cli_gate.ts";
import { run } from "./command.ts";

Deno.exit(await run(Deno.args));
