"""Issue 5's benchmark (``python bench/run.py``; see bench/README.md), as a package.

run        arguments and the order of the phases (the entry point)
plan       how long and how hard a run is, where its files go, how it logs
procs      child processes (start, wait until ready, stop by pid) and the delivery sink
tools      wrk, Alertmanager, py-spy: found or installed; facts about the machine
measure    CPU and RSS of a process tree, the disk's fsync, latency statistics, perf stat
load       request files (signed events, Alertmanager alerts) and the wrk/loadgen drivers
servers    the targets measured side by side: baseline, Alertmanager, the daemon
pg         fresh PostgreSQL databases (and a throw-away server) for the daemon
profiling  py-spy and perf stat on a fresh daemon under load
stacks     where the time goes in py-spy's collapsed stacks
report     the printed tables
targets    regression floors and goals, checked against a run's figures (--check)

Kept as they were: loadgen.py, sink.py, baseline_app.py and container.py (scripts, run as
child processes or by hand) and reqfile.py (the request files load.py writes and
loadgen.py reads).
"""
