"""What both studies share: training runs, statistics, figure helpers, workdir, command line."""
