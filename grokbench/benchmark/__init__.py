"""The fair benchmark (`grokbench benchmark SUITE`): every arm tuned alike on every workload of a suite file, under
the paper and open rulesets, in studies of quasi-random trials, confirmed on fresh seeds and scored with
performance profiles. `suite` reads the suite files, `plan` expands them into trials and estimates their cost,
`score` holds the math of the score and `stopper` the r_max Tune stopper.
"""
