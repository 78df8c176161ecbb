/** The Deno child of the demo: attaches through LTP_IPC_PATH, as tst_reinit() does. */
import { Checkpoint } from "../mod.ts";

using cp = Checkpoint.open();
console.log("deno child: waiting at checkpoint 0");
await cp.wait(0);
console.log("deno child: woken; telling the parent at checkpoint 1");
await cp.wake(1);
