# bench/stats.sh: the figures the benchmark scripts (bench/*/run) report, sourced by them.

# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# The ratios of two servers' figures round by round, "a1 a2 ..." over "b1 b2 ...", and
# their median: a shared machine's speed drifts between rounds more than between two
# servers measured in the same round.
paired() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		n = split(a, x, " "); split(b, y, " ")
		for (i = 1; i <= n; i++) { r[i] = y[i] > 0 ? x[i] / y[i] : 0; s = s sprintf(" %.2f", r[i]) }
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
		m = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
		printf "%.2fx (rounds:%s)", m, s }'
}

# The CPU ticks of a process and its children (nginx's workers), "user system" (utime and
# stime of /proc/<pid>/stat). lem's threads are counted in its own.
cpu_ticks() {
	local user=0 sys=0 p
	for p in "$1" $(pgrep -P "$1"); do
		[ -r /proc/$p/stat ] || continue
		# fields after the command name (which may hold spaces): 14 utime, 15 stime
		set -- $(sed 's/^.*) //' /proc/$p/stat)
		user=$((user + ${12})) sys=$((sys + ${13}))
	done
	echo $user $sys
}

# Microseconds a request from CPU ticks and a count of requests (0 for none); TICK is
# the ticks a second (getconf CLK_TCK).
per_req() {
	awk -v d="$1" -v n="$2" -v hz="$TICK" 'BEGIN {if (n > 0) printf "%.2f", d / hz / n * 1e6; else print 0}'
}
