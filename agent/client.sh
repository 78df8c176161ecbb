# The agent's client (agent/client.sh), put into the installed launcher by
# tools/install.ts, which defines before it: tc_agent (runs agent/server.ts
# with the launcher's Deno and flags, "$@" after them), tc_vars (the
# variables Deno may read, which each call carries), tc_id (the launcher's
# identity, new at each install: an agent of another install never serves
# this launcher's calls), tc_nofile (the open-files limit an agent needs to
# start, agent/limits.ts), tc_limits (the process's limits from
# /proc/self/limits, as tc_ln, tc_lf, ...) and tc_low (whether a limit is
# below what a Deno start needs).
#
# It runs no external command on a call's path: builtins only. It returns
# when the call should run cold (the launcher's next line); else it exits
# with the call's code. Cold: TST_CHECKPOINT_AGENT=0, no LTP_IPC_PATH (a
# new region's init), a relative LTP_IPC_PATH, `status` (it may read /proc
# for seconds, which in the agent would stall its other clients), a newline
# in what a call carries, no /proc, a channel that is not this user's (then
# no agent is started), an agent that does not answer or does not take the
# call, or limits the client or a new agent cannot work under (the cold
# path then says which). The request carries no working folder.
tc_nl='
'
tc_call() {
	[ "${TST_CHECKPOINT_AGENT-}" = 0 ] && return 1
	tc_p=${LTP_IPC_PATH-}
	[ -n "$tc_p" ] || return 1
	# a relative path needs the caller's working folder, which a call does not carry
	case $tc_p in /*) ;; *) return 1 ;; esac
	for tc_a do
		[ "$tc_a" = status ] && return 1
	done
	# a running agent needs no Deno start here, but the client writes its claim (a few bytes), and its shell saves the
	# descriptors it redirects above 9
	tc_limits
	case $tc_lf in unlimited) ;; '' | *[!0-9]*) return 1 ;; *) [ "$tc_lf" -ge 512 ] || return 1 ;; esac
	case $tc_ln in unlimited) ;; '' | *[!0-9]*) return 1 ;; *) [ "$tc_ln" -ge 16 ] || return 1 ;; esac
	for tc_a in "$tc_p" "$@"; do
		case $tc_a in *"$tc_nl"*) return 1 ;; esac
	done
	tc_e= tc_n=0
	for tc_v in $tc_vars; do
		eval "[ -n \"\${$tc_v+x}\" ]" || continue
		eval "tc_a=\$$tc_v"
		case $tc_a in *"$tc_nl"*) return 1 ;; esac
		tc_e=$tc_e$tc_v=$tc_a$tc_nl tc_n=$((tc_n + 1))
	done
	# the effective uid, from the shell's own status (no `id`)
	tc_u=
	{ while read -r tc_k tc_r tc_a tc_x; do
		[ "$tc_k" = Uid: ] && { tc_u=$tc_a; break; }
	done </proc/self/status; } 2>/dev/null
	case $tc_u in '' | *[!0-9]*) return 1 ;; esac
	tc_b=/tmp/tst_checkpoint-$tc_u
	# the region's key: its path with each / spelt %
	tc_k= tc_r=$tc_p
	while :; do
		case $tc_r in
		*/*) tc_k=$tc_k${tc_r%%/*}% tc_r=${tc_r#*/} ;;
		*) tc_k=$tc_k$tc_r && break ;;
		esac
	done
	[ ${#tc_k} -le 200 ] || return 1
	tc_d=$tc_b/$tc_k
	if ! tc_ours; then
		# another user's BASE or folder (or a symlink): no agent could start there
		{ [ -e "$tc_b" ] || [ -h "$tc_b" ]; } && { [ -h "$tc_b" ] || [ ! -d "$tc_b" ] || [ ! -O "$tc_b" ]; } && return 1
		{ [ -e "$tc_d" ] || [ -h "$tc_d" ]; } && { [ -h "$tc_d" ] || [ ! -d "$tc_d" ] || [ ! -O "$tc_d" ]; } && return 1
		# an agent starting (its pid, written first, names a live process) needs no other
		tc_r=
		[ -d "$tc_d" ] && { IFS= read -r tc_r <"$tc_d/pid"; } 2>/dev/null
		case $tc_r in '' | *[!0-9]*) tc_start ;; *) kill -0 "$tc_r" 2>/dev/null || tc_start ;; esac
		return 1
	fi
	tc_talk "$@"
	# no answer: the agent has died (SIGKILL leaves its folder) or is ending; a fresh one clears what it left
	[ $? = 2 ] && tc_start
	return 1
}
# starts the region's agent in the background, in this process group, and does not wait for it: this call runs cold
# meanwhile, which parks a first wait sooner than waiting for the agent would, and the next call finds the agent; not
# under limits a Deno cannot start under
tc_start() {
	tc_low && return
	# the limit under which an agent refuses to start: the same number it uses
	case $tc_ln in unlimited) ;; *) [ "$tc_ln" -ge "$tc_nofile" ] || return ;; esac
	tc_agent "$tc_b" "$tc_k" "$tc_p" "${TST_CHECKPOINT_AGENT_IDLE:-60}" "$tc_id" "$tc_ln" </dev/null >/dev/null 2>&1 &
}
# one call through the agent: exits with its code; returns 1 to run cold, 2 when the agent did not answer or is of
# another install (which then has moved its folder away)
tc_talk() {
	# claim a slot: an O_EXCL create (set -C) holding this shell's pid
	tc_i=$(($$ % tc_m)) tc_j=0
	set -C
	while [ $tc_j -lt $tc_m ]; do
		{ printf '%s\n' $$ >"$tc_d/$tc_i.lock"; } 2>/dev/null && break
		tc_i=$(((tc_i + 1) % tc_m)) tc_j=$((tc_j + 1))
	done
	set +C
	[ $tc_j -lt $tc_m ] || return 1
	tc_f=$tc_d/$tc_i
	# opens that cannot block: the reply's read end through a read-write one, closed at once
	[ -p "$tc_f.req" ] && [ -p "$tc_f.rep" ] &&
		{ command exec 9<>"$tc_f.rep" 8<"$tc_f.rep" 9<&- 7<>"$tc_f.req"; } 2>/dev/null || return 2
	printf '%s\n' "TCA3 $tc_id" $$ "$PPID" $# "$@" $tc_n "$tc_e." >&7
	tc_a=
	while IFS= read -r tc_r; do
		case $tc_r in
		o*) printf '%s\n' "${tc_r#o}" ;;
		e*) printf '%s\n' "${tc_r#e}" >&2 ;;
		O*) printf '%s' "${tc_r#O}" ;;
		E*) printf '%s' "${tc_r#E}" >&2 ;;
		a) tc_a=1 ;;
		x*) exit "${tc_r#x}" ;;
		c) tc_a=0 && break ;;
		n) [ -z "$tc_a" ] && break ;;
		*) tc_a=${tc_a:-0} && break ;;
		esac
	done <&8
	exec 7>&- 8<&-
	case $tc_a in
	'') return 2 ;;
	0) return 1 ;;
	esac
	printf '%s\n' "tst_checkpoint: TBROK: its agent (${tc_d}) ended during the call: run it again, or with TST_CHECKPOINT_AGENT=0" >&2
	exit 2
}
# whether the agent's folder is there and this user's, and how many slots it has
tc_ours() {
	[ -d "$tc_b" ] && [ ! -h "$tc_b" ] && [ -O "$tc_b" ] && [ -d "$tc_d" ] && [ ! -h "$tc_d" ] && [ -O "$tc_d" ] &&
		{ IFS= read -r tc_m <"$tc_d/slots"; } 2>/dev/null && case $tc_m in '' | 0 | *[!0-9]*) false ;; esac
}
tc_call "$@"
