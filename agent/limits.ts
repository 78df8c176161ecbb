/**
 * The open-files numbers the agent (agent/server.ts) and its client
 * (agent/client.sh, through tools/install.ts) share: a client under a
 * lower limit never starts an agent, which would refuse to start.
 * @module
 */

/** Descriptors an agent keeps free of slots, for Deno itself and the calls (a region, its folder, a listing). */
export const SPARE_FDS = 64;
/** The fewest slots worth an agent: two descriptors each. */
export const MIN_SLOTS = 8;
/** The lowest open-files limit (ulimit -n) an agent starts under. */
export const AGENT_MIN_NOFILE = SPARE_FDS + 2 * MIN_SLOTS;
