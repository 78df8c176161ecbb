/**
 * The demo: a parent and two exec()'d children, a Deno script and a shell
 * script in LTP's style, meet at checkpoints through one region.
 *
 *   ./deno task demo
 *
 * The parent never sleeps: it knows a child has arrived because
 * waitForWaiters() sees it parked at the checkpoint.
 */
import { Checkpoint } from "../mod.ts";

const here = new URL(".", import.meta.url).pathname;
const deno = Deno.execPath();
const childFlags = [
  "--quiet",
  "--allow-ffi",
  "--allow-env",
  // the regions' folders, and where LTP's slow-kernel factor is read from (see README, "Permissions, and why")
  "--allow-read=/dev/shm,/tmp,/proc,/boot,/lib/modules,/lib/kernel",
  "--allow-write=/dev/shm,/tmp",
];

using cp = Checkpoint.create();
console.log(`parent: region ${cp.path} (${cp.layout} layout, ${cp.capacity} checkpoints)`);

/** Starts a child, lets it through checkpoint 0 once it is parked there, and waits for it at checkpoint 1. */
async function meet(name: string, command: Deno.Command): Promise<void> {
  const child = command.spawn();
  await cp.waitForWaiters(0, 1);
  console.log(`parent: the ${name} is parked at checkpoint 0; waking it`);
  await cp.wake(0);
  await cp.wait(1);
  console.log(`parent: the ${name} reached checkpoint 1`);
  const status = await child.status;
  if (!status.success) throw new Error(`the ${name} failed with exit code ${status.code}`);
}

await meet("deno child", new Deno.Command(deno, { args: ["run", ...childFlags, `${here}child.ts`], env: cp.env }));
await meet(
  "shell child",
  new Deno.Command("sh", {
    args: [`${here}child.sh`],
    // the shell child calls `tst_checkpoint`; here it is this project's CLI
    env: { ...cp.env, TST_CHECKPOINT: `${deno} run ${childFlags.join(" ")} ${here}../cli.ts` },
  }),
);
console.log("parent: done");
