/** Who made a region, as its bytes, its name and its mode tell. */
/**
 * Which library made a region, told from its header, name and mode:
 * `ltp-c`: LTP's C library (a non-zero `lib_pid` at byte 8, its pid);
 * `tst_checkpoint`: this project's `Checkpoint.create()` (named
 * `ltp_checkpoint_PID_RANDOM`, no header); `ltp-shell`: LTP's shell library
 * (named `ltp_TEST_PID`, no header, mode 0600, as `tst_test.sh` makes it;
 * the pid is its shell's); `unknown`: anything else with the magic.
 */
export type Maker = "ltp-c" | "ltp-shell" | "tst_checkpoint" | "unknown";

const THIS_PROJECT = /^ltp_checkpoint_(\d+)_[0-9a-z]+$/;
const LTP_SHELL = /^ltp_.+_(\d+)$/;

/** Who made a region, from the pid in its header, its name and its mode. */
export function makerOf(name: string, libPid: number, mode: number): { maker: Maker; makerPid: number } {
  if (libPid > 0) return { maker: "ltp-c", makerPid: libPid };
  const ours = THIS_PROJECT.exec(name);
  if (ours) return { maker: "tst_checkpoint", makerPid: Number(ours[1]) };
  const shell = LTP_SHELL.exec(name);
  if (shell && mode === 0o600) return { maker: "ltp-shell", makerPid: Number(shell[1]) };
  return { maker: "unknown", makerPid: 0 };
}

/** How each maker is named in `status`. */
export const MAKERS: Record<Maker, string> = {
  "ltp-c": "LTP's C library",
  "ltp-shell": "LTP's shell library",
  "tst_checkpoint": "this project (tst_checkpoint init, Checkpoint.create or init)",
  "unknown": "unknown (no pid in its header, a name no library gives)",
};
